"""What :class:`~bdps_agents.joint_env.JointEnv` reads off the env it wraps (its inner
observation space, whether it steps on arrays, its episode limit), and what it tells the author
of a script about that env: a wrong kind of env at once (not later, inside ``reset``), and, once
each, two settings that would otherwise change learning silently: a ``state()`` that no
``state_space`` declares, and a shared team reward that ``reward_aggregation="sum"`` would count
once per agent."""

from __future__ import annotations

import warnings
from typing import Any

from gymnasium import spaces
from pettingzoo import ParallelEnv

from bdps_agents.adapters import not_a_parallel_env


def inner_obs_space(space: spaces.Space) -> spaces.Space:
    if isinstance(space, spaces.Dict) and "observation" in space.spaces:
        return space["observation"]
    return space


def is_array_native(env: ParallelEnv) -> bool:
    """Whether ``env`` has a ``step_arrays`` defined no higher in its class hierarchy than its
    ``step``.

    Looked up on the class, not the instance: PettingZoo wrappers forward unknown attributes to
    the env they wrap, so the inner ``step_arrays`` would bypass the wrapper's ``step``. For the
    same reason a subclass that overrides ``step`` alone is stepped through its ``step``."""
    mro = type(env).__mro__

    def depth(name: str) -> int:  # position of the class that defines ``name``
        return next((i for i, c in enumerate(mro) if name in vars(c)), len(mro))

    return depth("step_arrays") <= depth("step") < len(mro)


def episode_limit_of(env: ParallelEnv) -> int | None:
    """The env's ``episode_limit``, else the unwrapped env's ``max_cycles``, else None."""
    limit = getattr(env, "episode_limit", None)
    if limit is None:
        try:
            limit = getattr(env.unwrapped, "max_cycles", None)
        except AttributeError:
            limit = None
    return None if limit is None else int(limit)


def check_wrapped_env(env: Any) -> None:
    """``TypeError`` with the fix unless ``env`` is a PettingZoo ParallelEnv (an AEC env, a
    Gymnasium env and other objects are named as such)."""
    problem = not_a_parallel_env(env)
    if problem is not None:
        raise TypeError(f"JointEnv needs a PettingZoo ParallelEnv: {problem}")


def warn_undeclared_state(env: Any) -> None:
    """Warn if ``env.state()`` answers although the env declares no ``state_space``: JointEnv then
    gives the mixer the concatenated observations, not that state (it needs the size up front).
    Called after the first reset, when ``state()`` can answer."""
    try:
        env.state()
    except Exception:  # not implemented (PettingZoo's default raises), or not usable: no state
        return
    warnings.warn(
        f"{type(env).__name__} has a state() but declares no state_space, so JointEnv gives the "
        "mixer the concatenated observations instead; declare state_space (a gymnasium Box of "
        "state()'s size) on the env to use its state",
        stacklevel=3,
    )


class SharedRewardWatch:
    """Warns once when ``reward_aggregation`` was left to its default (``"sum"``) and, over a
    whole episode, every agent got the same reward on every step, some of them nonzero: the
    signature of a shared team reward (MPE's speaker-listener, SMAX), which a sum counts once per
    agent. Stops watching at the first step whose rewards differ, or after warning."""

    def __init__(self, active: bool) -> None:
        self.active = active
        self._nonzero = False

    def step(self, rewards: list[float], episode_over: bool) -> None:
        if not self.active:
            return
        if len(rewards) > 1 and any(r != rewards[0] for r in rewards):
            self.active = False  # individual rewards: the sum is meant
            return
        self._nonzero = self._nonzero or any(r != 0 for r in rewards)
        if episode_over and self._nonzero:
            self.active = False
            warnings.warn(
                "every agent got the same reward on every step of the first episode: if the env "
                "gives one shared team reward, the default reward_aggregation='sum' counts it "
                "once per agent; pass JointEnv(env, reward_aggregation='mean') (or 'sum' to "
                "keep the sum and silence this)",
                stacklevel=4,
            )
