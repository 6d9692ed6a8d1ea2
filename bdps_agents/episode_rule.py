"""The rule that ends a joint episode, once, on arrays: used by every path that turns per-agent
ends into one joint transition (:meth:`JointEnv.step <bdps_agents.joint_env.JointEnv.step>` on
dicts and on ``step_arrays``, and :class:`~bdps_agents.adapters.smax.vector.SMAXVectorEnv` on a
batch of envs).

Pure NumPy, no env object. Arrays are per agent along the last axis (``possible_agents``
order); leading axes (e.g. one row per env) are batch axes. On one step:

* an agent is **live** afterwards if it is *present* (in ``env.agents`` after the step; for
  array-native adapters, which report every departure, that is "was live") and reported neither
  terminated nor truncated;
* the joint episode **ends** when no agent is live; it is **terminated** if every agent that was
  live before the step reported ``terminated`` and not ``truncated``, otherwise **truncated**;
* an agent is **visible** (its real observation and mask shown, ``alive = 1``) if it is live,
  or if it was live, is truncated and not terminated (a learner bootstraps from a truncated
  agent's last observation) and has an observation (*observed*);
* the **action mask** (:func:`joint_action_mask`) is the env's mask for visible agents and the
  no-op alone for hidden ones; a visible agent with no available action gets the no-op too.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

__all__ = ["JointEnd", "joint_action_mask", "joint_episode_end"]


class JointEnd(NamedTuple):
    """What :func:`joint_episode_end` returns (bool arrays; ``terminated``/``truncated`` have the
    batch shape, a 0-d array for one env). ``live`` and ``visible`` may be the ``was_live``
    (or ``present``) array itself: copy before writing into them."""

    live: np.ndarray  # (..., n): live after the step
    visible: np.ndarray  # (..., n): shown (observation, mask, alive = 1)
    terminated: np.ndarray  # (...): the joint episode ended by termination
    truncated: np.ndarray  # (...): the joint episode ended otherwise (time limit, departure)


def joint_episode_end(
    was_live: npt.ArrayLike,
    terminated: npt.ArrayLike,
    truncated: npt.ArrayLike,
    *,
    present: npt.ArrayLike | None = None,
    observed: npt.ArrayLike | None = None,
) -> JointEnd:
    """Apply the joint-episode rule (module docstring) to one step.

    Args:
        was_live: ``(..., n)`` bool, the agents live before the step.
        terminated, truncated: ``(..., n)`` bool, what the env reported for each agent (agents
            it did not report: False).
        present: ``(..., n)`` bool, agents still in the env's ``agents`` after the step; None
            (array-native adapters, which report every agent that leaves): ``was_live``.
        observed: ``(..., n)`` bool, agents the env returned an observation for; None: all.
    """
    was = np.asarray(was_live, dtype=bool)
    term = np.asarray(terminated, dtype=bool)
    trunc = np.asarray(truncated, dtype=bool)
    here = was if present is None else np.asarray(present, dtype=bool)
    if not (term.any() or trunc.any()) and here.any(axis=-1).all():
        # the common step: nobody reported an end (the same values as below, faster)
        no_end = np.zeros(here.shape[:-1], dtype=bool)
        return JointEnd(here, here, no_end, no_end)
    live = here & ~(term | trunc)
    ended = ~live.any(axis=-1)
    all_terminated = np.all(~was | (term & ~trunc), axis=-1)
    kept = was & trunc & ~term  # truncated agents keep their last view
    if observed is not None:
        kept &= np.asarray(observed, dtype=bool)
    return JointEnd(live, live | kept, ended & all_terminated, ended & ~all_terminated)


def joint_action_mask(
    available: npt.ArrayLike, visible: npt.ArrayLike, noop_action: int
) -> np.ndarray:
    """``(..., n, A)`` int8 masks: ``available`` (nonzero = available) for visible agents, the
    no-op alone for hidden ones, and the no-op for a visible agent with nothing available."""
    mask = np.array(available, dtype=bool)  # a copy: the input is not written
    shown = np.asarray(visible, dtype=bool)
    if not shown.all():
        mask &= shown[..., None]
    mask[..., noop_action] |= ~mask.any(axis=-1)
    return mask.view(np.int8)
