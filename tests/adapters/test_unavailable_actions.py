"""Unavailable actions, across the built-in adapters: an adapter runs a replacement and reports
it in ``infos[agent]["action_replaced"]`` (so PettingZoo's ``parallel_api_test`` passes without a
wrapper); ``JointEnv``, the learner's boundary, refuses them on both of its paths.

SMAX and GRF cases are skipped without jaxmarl / gfootball; SMAC runs on the StarCraft2Env
stand-in. (``SMAXVectorEnv``'s refusal is tested in test_smax_vector.py; that
``parallel_api_test`` passes unwrapped, and that its uniform samples get replaced where masks
forbid them, in test_adapter_conformance.py for every adapter.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from pettingzoo import ParallelEnv
from pettingzoo.utils.wrappers import BaseParallelWrapper

from bdps_agents.adapters import make_env
from bdps_agents.adapters.base import ACTION_REPLACED, replacement_action
from bdps_agents.adapters.smac import SMACParallelEnv
from bdps_agents.joint_env import JointEnv
from tests.adapters.smac_standin import ReseedableStandIn

SEED = 3


def _lbf() -> ParallelEnv:
    return make_env("lbf", task="15x15-4p-5f")


def _smax() -> ParallelEnv:
    return make_env("smax", map_name="3m", seed=0)


def _smac() -> ParallelEnv:
    return SMACParallelEnv(ReseedableStandIn(seed=0))  # reseedable: reset(seed=...) repeats


def _grf() -> ParallelEnv:
    return make_env("grf", env_name="academy_3_vs_1_with_keeper")


@dataclass(frozen=True)
class Case:
    make: Callable[[], ParallelEnv]
    replacement: int | None  # what a live agent's unavailable action runs; None: all available


SMAX = [pytest.mark.requires(module="jaxmarl", extra="smax")]
CASES = [
    pytest.param(Case(_lbf, replacement=0), id="lbf-15x15-4p-5f"),  # NONE
    pytest.param(Case(_smax, replacement=1), id="smax-3m", marks=SMAX),  # stop
    pytest.param(Case(_smac, replacement=1), id="smac-standin"),  # stop
    pytest.param(
        Case(_grf, replacement=None),
        id="grf-academy_3_vs_1_with_keeper",
        marks=pytest.mark.requires(module="gfootball", extra="grf"),
    ),
]
MASKED = [case for case in CASES if case.values[0].replacement is not None]


@contextmanager
def opened(case: Case) -> Iterator[ParallelEnv]:
    env = case.make()
    try:
        yield env
    finally:
        env.close()


def _drop_flag(infos: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {a: {k: v for k, v in info.items() if k != ACTION_REPLACED} for a, info in infos.items()}


@pytest.mark.parametrize("pick", ["lowest", "highest"])
@pytest.mark.parametrize("case", MASKED)
def test_unavailable_action_runs_the_replacement(same_nested, case: Case, pick: str) -> None:
    with opened(case) as env, opened(case) as twin:
        _, infos = env.reset(seed=SEED)
        twin.reset(seed=SEED)
        rng = np.random.default_rng(0)
        actions = {a: int(rng.choice(np.flatnonzero(infos[a]["action_mask"]))) for a in env.agents}
        agent = next(a for a in env.agents if not infos[a]["action_mask"].all())
        mask = infos[agent]["action_mask"]
        unavailable = np.flatnonzero(mask == 0)
        action = int(unavailable[0] if pick == "lowest" else unavailable[-1])
        assert mask[case.replacement] == 1  # the documented replacement is available

        got = env.step({**actions, agent: action})
        expected = twin.step({**actions, agent: case.replacement})

        assert same_nested(got[:4], expected[:4])  # same observations, rewards, ends
        assert same_nested(_drop_flag(got[4]), _drop_flag(expected[4]))
        np.testing.assert_array_equal(env.state(), twin.state())
        assert {a: info[ACTION_REPLACED] for a, info in got[4].items()} == {
            a: a == agent for a in got[4]
        }
        assert not any(info[ACTION_REPLACED] for info in expected[4].values())


@pytest.mark.parametrize("case", MASKED)
def test_actions_outside_the_space_still_raise(case: Case) -> None:
    with opened(case) as env:
        env.reset(seed=SEED)
        n = env.action_space("agent_0").n
        live = dict.fromkeys(env.agents, case.replacement)
        with pytest.raises(ValueError, match=rf"action {n} for agent 'agent_0' is outside"):
            env.step({**live, "agent_0": n})
        with pytest.raises(ValueError, match="agent_0.*integer"):
            env.step({**live, "agent_0": 1.0})
        with pytest.raises(ValueError, match="no action given"):
            env.step({a: x for a, x in live.items() if a != "agent_0"})


def test_replacement_rule() -> None:
    assert replacement_action("a", np.array([1, 0, 1], np.int8), noop_action=0) == 0
    assert replacement_action("a", np.array([0, 0, 1, 1], np.int8), noop_action=0) == 2
    assert replacement_action("a", np.array([1, 0, 1], np.int8), noop_action=2) == 2
    with pytest.raises(RuntimeError, match="'a' no available action"):
        replacement_action("a", np.zeros(3, np.int8), noop_action=0)


# ----------------------------------------------------------------------------- JointEnv refuses
class DictOnly(BaseParallelWrapper):
    """Hides an adapter's ``step_arrays`` from ``JointEnv``, which then takes the dict path."""


JOINT = [
    pytest.param(lambda: JointEnv(_lbf()), True, id="lbf-step_arrays"),
    pytest.param(lambda: JointEnv(DictOnly(_lbf())), False, id="lbf-dict"),
    pytest.param(lambda: JointEnv(_smax()), False, id="smax-dict", marks=SMAX),
    pytest.param(lambda: JointEnv(_smac()), False, id="smac-standin-dict"),
]


@pytest.mark.parametrize(("make", "native"), JOINT)
def test_joint_env_refuses_unavailable_actions(
    same_nested, make: Callable[[], JointEnv], native: bool
) -> None:
    env, twin = make(), make()
    assert (env._step_arrays is not None) == native  # both of JointEnv's paths are covered
    obs, _ = env.reset(seed=SEED)
    twin.reset(seed=SEED)
    mask = obs["mask"]
    allowed = mask.argmax(axis=1)  # the lowest available action of every agent
    i = next(i for i in range(env.n_agents) if obs["alive"][i] and not mask[i].all())
    action = int(np.flatnonzero(mask[i] == 0)[-1])
    bad = allowed.copy()
    bad[i] = action
    with pytest.raises(ValueError, match=rf"^action {action} is unavailable for agent 'agent_{i}'"):
        env.step(bad)
    # nothing reached the adapter: the next step is the twin's first one
    got, expected = env.step(allowed), twin.step(allowed)
    assert same_nested(got, expected)
    env.close()
    twin.close()
