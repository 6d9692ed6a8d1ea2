"""Host-side (NumPy) pieces of :class:`~bdps_agents.adapters.smax.vector.SMAXVectorEnv`: the
checks of a batch of joint actions, ``SMACParallelEnv``'s per-agent ends and metrics computed
from a batch of SMAX step outputs, and the ``JointEnv`` observations and infos of several envs.
The joint-episode rule itself is :mod:`bdps_agents.episode_rule`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, cast

import numpy as np
from tianshou.data import Batch

from bdps_agents.adapters.smax.core import SMAXStepOutput

__all__ = ["AgentEnds", "agent_ends", "check_actions", "format_obs", "info_dicts"]


def check_actions(
    action: Any,
    ids: np.ndarray,
    running: np.ndarray,
    live: np.ndarray,
    masks: np.ndarray,
    agents: Sequence[str],
    n_actions: int,
) -> np.ndarray:
    """``action`` (one row per env id) as int64, or ``ValueError``/``RuntimeError`` naming the
    env (and the agent and action): wrong shape or dtype, a finished episode (``running`` of
    the envs ``ids``), an action out of range, or one the mask (``masks`` of ``ids``) forbids
    for a live agent (``live`` of ``ids``)."""
    arr = np.asarray(action)
    n_agents = len(agents)
    if arr.shape != (len(ids), n_agents):
        raise ValueError(
            f"actions must have shape ({len(ids)}, {n_agents}) (one row per env id, "
            f"one action per agent), got shape {arr.shape}"
        )
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"actions must be integers, got dtype {arr.dtype}")
    finished = ids[~running]
    if finished.size:
        raise RuntimeError(
            f"env {int(finished[0])}: the episode is over (or never started): call "
            "reset(env_id=...) first"
        )
    out_of_range = (arr < 0) | (arr >= n_actions)
    if out_of_range.any():
        k, i = np.argwhere(out_of_range)[0]
        raise ValueError(
            f"env {int(ids[k])}: action {int(arr[k, i])} of agent {agents[i]!r} is "
            f"outside [0, {n_actions})"
        )
    chosen = np.take_along_axis(masks, arr[..., None].astype(np.int64), axis=-1)[..., 0]
    illegal = live & (chosen == 0)
    if illegal.any():
        k, i = np.argwhere(illegal)[0]
        raise ValueError(
            f"env {int(ids[k])}: action {int(arr[k, i])} is unavailable for agent "
            f"{agents[i]!r}; available actions: {np.flatnonzero(masks[k, i]).tolist()}"
        )
    return arr.astype(np.int64)


class AgentEnds(NamedTuple):
    """What ``SMACParallelEnv.step`` reports for a batch of envs (rows of ``ids``)."""

    avail: np.ndarray  # (B, n, A) the env's action masks
    terminated: np.ndarray  # (B, n) bool, per agent
    truncated: np.ndarray  # (B, n) bool, per agent
    metrics: dict[str, np.ndarray]  # battle_won, dead_allies, dead_enemies: (B,) float64


def agent_ends(
    host: SMAXStepOutput,
    ids: np.ndarray,
    was_live: np.ndarray,
    steps: np.ndarray,
    episode_limit: int,
    n_agents: int,
    n_enemies: int,
) -> AgentEnds:
    """``SMACParallelEnv``'s per-agent ends and metrics of the envs ``ids`` from the host copy
    of a batch of SMAX step outputs (``steps``: the envs' step counts after the step): a
    time-out is a truncation, agents that died are terminated."""
    n = n_agents
    # host is jax.device_get's copy of the step outputs: its leaves are numpy arrays
    avail = cast(np.ndarray, host.avail)[ids]
    unit_alive = host.unit_alive[ids]
    battle_won = host.battle_won[ids].astype(bool)
    dead_allies = n - np.count_nonzero(unit_alive[:, :n], axis=1)
    dead_enemies = n_enemies - np.count_nonzero(unit_alive[:, n:], axis=1)
    env_terminated = host.terminated[ids].astype(bool)

    dead = (avail[..., 0] == 1) & (avail[..., 1:].sum(axis=-1) == 0)
    timed_out = (env_terminated & host.timed_out[ids].astype(bool)) | (steps >= episode_limit)
    decided = battle_won | (dead_allies >= n)
    env_truncated = env_terminated & timed_out & ~decided
    over = env_terminated | env_truncated
    terms = was_live & ((over & ~env_truncated)[:, None] | dead)
    truncs = was_live & env_truncated[:, None] & ~terms
    metrics = {
        "battle_won": battle_won.astype(np.float64),
        "dead_allies": dead_allies.astype(np.float64),
        "dead_enemies": dead_enemies.astype(np.float64),
    }
    return AgentEnds(avail, terms, truncs, metrics)


def info_dicts(
    n_alive: list[int],
    metrics: dict[str, np.ndarray],
    metric_keys: Sequence[str],
    env_ids: Sequence[Any] | np.ndarray,
) -> np.ndarray:
    """``JointEnv``'s step infos of several envs as an object array of dicts (``n_alive``, the
    metrics in ``metric_keys`` order, ``env_id`` as given: Tianshou writes int or np.int64)."""
    columns = [(key, metrics[key].tolist()) for key in metric_keys]
    infos = np.empty(len(n_alive), dtype=object)
    for k, j in enumerate(env_ids):
        info: dict[str, Any] = {"n_alive": n_alive[k]}
        for key, values in columns:
            info[key] = values[k]
        info["env_id"] = j
        infos[k] = info
    return infos


def format_obs(
    obs_format: str, obs: np.ndarray, state: np.ndarray, mask: np.ndarray, alive: np.ndarray
) -> Any:
    """``JointEnv`` observations of several envs: a 1-D object array of dicts, as ``np.stack``
    makes them (``obs_format="dicts"``), or one ``Batch`` (``"batch"``).

    ``obs_format="batch"`` hands the observations over as one Tianshou ``Batch`` of the stacked
    arrays (``obs (B, n, d)``, ``state (B, S)``, ``mask``, ``alive``) instead: the Collector turns
    the object array into exactly that ``Batch`` on every step (twice: as ``obs_next``, then as the
    next ``obs``), which costs more than the batched SMAX step itself at 32 envs; the replay buffer
    receives the same data either way (tested). Infos stay object arrays of dicts (the Collector
    requires them).
    """
    obs = np.array(obs, dtype=np.float32)
    state = np.array(state, dtype=np.float32)
    mask = np.array(mask, dtype=np.int8)
    alive = np.array(alive, dtype=np.int8)
    if obs_format == "batch":
        return Batch(obs=obs, state=state, mask=mask, alive=alive)
    out = np.empty(len(obs), dtype=object)
    for k in range(len(obs)):
        out[k] = {"obs": obs[k], "state": state[k], "mask": mask[k], "alive": alive[k]}
    return out
