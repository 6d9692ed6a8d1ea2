"""Google Research Football adapter: the env (:mod:`.env`), BDPS's restricted per-agent view and
the global state (:mod:`.view`, free of gfootball) and the frame drawer (:mod:`.render`).
Importing this package does not import gfootball."""

from bdps_agents.adapters.grf.env import ACTION_NAMES, GRF_INSTALL_HINT, GRFParallelEnv

__all__ = ["ACTION_NAMES", "GRF_INSTALL_HINT", "GRFParallelEnv"]
