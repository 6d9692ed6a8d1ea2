"""SMAC adapter: oxwhirl/smac's ``StarCraft2Env`` (or anything with its interface, such as
:class:`~bdps_agents.adapters.smax.SMAXStarCraft2Env`) as a PettingZoo parallel env
(:mod:`.env`)."""

from bdps_agents.adapters.smac.env import SMACParallelEnv, StarCraft2EnvLike, make_smac_env

__all__ = ["SMACParallelEnv", "StarCraft2EnvLike", "make_smac_env"]
