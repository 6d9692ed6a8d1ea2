"""Level-Based Foraging adapter: the env (:mod:`.env`), task names and argument checks
(:mod:`.tasks`, :mod:`.placement`) and its frame drawer (:mod:`.render`, imported only when
frames are drawn)."""

from bdps_agents.adapters.lbf.env import N_ACTIONS, LBFParallelEnv
from bdps_agents.adapters.lbf.tasks import parse_task

__all__ = ["N_ACTIONS", "LBFParallelEnv", "parse_task"]
