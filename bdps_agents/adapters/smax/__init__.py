"""SMAX (jaxmarl) adapter: SMAX maps behind SMAC's interface (:mod:`.env`, on the jitted pure
functions of :mod:`.core`), the batched vector env (:mod:`.vector`, with :mod:`.batched`,
:mod:`.host` and :mod:`.workerless`) and the frame drawer (:mod:`.render`). Importing this
package imports neither jax nor the vector env (which needs Tianshou)."""

from bdps_agents.adapters.smax.core import (
    DEFAULT_JAX_CACHE_DIR,
    JAX_CACHE_DIR_ENV,
    SMAC_EPISODE_LIMITS,
    SMAXStepOutput,
    enable_compilation_cache,
    smac_to_smax_actions,
    smax_reset,
    smax_step,
)
from bdps_agents.adapters.smax.env import SMAXStarCraft2Env, make_smax_env

__all__ = [
    "DEFAULT_JAX_CACHE_DIR",
    "JAX_CACHE_DIR_ENV",
    "SMAC_EPISODE_LIMITS",
    "SMAXStarCraft2Env",
    "SMAXStepOutput",
    "enable_compilation_cache",
    "make_smax_env",
    "smac_to_smax_actions",
    "smax_reset",
    "smax_step",
]
