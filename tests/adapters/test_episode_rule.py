"""The joint-episode rule (bdps_agents.episode_rule) on its own: a table of cases, one planted
per branch. JointEnv (both paths) and SMAXVectorEnv use it; their equality tests
(test_joint_env.py, test_smax_vector.py) check that they still agree with each other."""

from __future__ import annotations

import numpy as np
import pytest

from bdps_agents.episode_rule import JointEnd, joint_action_mask, joint_episode_end

T, F = True, False

# (case, was_live, terminated, truncated, present, observed,
#  live, visible, joint terminated, joint truncated)
CASES = [
    ("nobody ends", [T, T], [F, F], [F, F], None, None, [T, T], [T, T], F, F),
    ("one dies, the other lives", [T, T], [T, F], [F, F], None, None, [F, T], [F, T], F, F),
    ("the last live agent dies", [F, T], [F, T], [F, F], None, None, [F, F], [F, F], T, F),
    ("all die on one step", [T, T], [T, T], [F, F], None, None, [F, F], [F, F], T, F),
    (
        "time limit: all truncated, all shown",
        [T, T],
        [F, F],
        [T, T],
        None,
        None,
        [F, F],
        [T, T],
        F,
        T,
    ),
    ("one dies as time runs out", [T, T], [T, F], [F, T], None, None, [F, F], [F, T], F, T),
    (
        "one truncated early, the other lives",
        [T, T],
        [F, F],
        [T, F],
        None,
        None,
        [F, T],
        [T, T],
        F,
        F,
    ),
    (
        "terminated and truncated: not a termination, hidden",
        [T],
        [T],
        [T],
        None,
        None,
        [F],
        [F],
        F,
        T,
    ),
    (
        "an agent dead before the step does not count",
        [F, T],
        [T, T],
        [F, F],
        None,
        None,
        [F, F],
        [F, F],
        T,
        F,
    ),
    (
        "a dead agent's late truncation is not shown",
        [F, T],
        [F, T],
        [T, F],
        None,
        None,
        [F, F],
        [F, F],
        T,
        F,
    ),
    # present: the dict path's "still in env.agents"
    (
        "departed without a report: not live",
        [T, T],
        [F, F],
        [F, F],
        [F, T],
        None,
        [F, T],
        [F, T],
        F,
        F,
    ),
    (
        "the last agent departs unreported: truncated",
        [T, F],
        [F, F],
        [F, F],
        [F, F],
        None,
        [F, F],
        [F, F],
        F,
        T,
    ),
    (
        "dict path: a present agent is live whatever it was",
        [F, T],
        [F, F],
        [F, F],
        [T, T],
        None,
        [T, T],
        [T, T],
        F,
        F,
    ),
    # observed: a truncated agent without an observation is hidden
    (
        "truncated without an observation: hidden",
        [T, T],
        [F, F],
        [T, T],
        None,
        [T, F],
        [F, F],
        [T, F],
        F,
        T,
    ),
]


@pytest.mark.parametrize(
    ("was", "term", "trunc", "present", "observed", "live", "visible", "joint_term", "joint_trunc"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_joint_episode_end(
    was, term, trunc, present, observed, live, visible, joint_term, joint_trunc
) -> None:
    end = joint_episode_end(was, term, trunc, present=present, observed=observed)
    assert isinstance(end, JointEnd)
    np.testing.assert_array_equal(end.live, live)
    np.testing.assert_array_equal(end.visible, visible)
    assert end.live.dtype == end.visible.dtype == np.bool_
    assert bool(end.terminated) is joint_term and bool(end.truncated) is joint_trunc
    assert not (end.terminated and end.truncated)
    assert bool(end.terminated or end.truncated) is (not end.live.any())


def test_batch_axes_give_the_rows_of_single_calls() -> None:
    rows = [case for case in CASES if case[4] is None and case[5] is None and len(case[1]) == 2]
    was, term, trunc = (np.array([case[i] for case in rows]) for i in (1, 2, 3))
    end = joint_episode_end(was, term, trunc)
    assert end.terminated.shape == end.truncated.shape == (len(rows),)
    for k, case in enumerate(rows):
        single = joint_episode_end(*case[1:4])
        np.testing.assert_array_equal(end.live[k], single.live)
        np.testing.assert_array_equal(end.visible[k], single.visible)
        assert end.terminated[k] == single.terminated and end.truncated[k] == single.truncated


def test_action_mask_shows_visible_agents_and_the_noop_otherwise() -> None:
    available = np.array([[1, 0, 1], [0, 1, 1], [0, 0, 0], [1, 1, 0]], dtype=np.int8)
    visible = np.array([T, F, T, T])
    mask = joint_action_mask(available, visible, noop_action=2)
    assert mask.dtype == np.int8
    np.testing.assert_array_equal(
        mask,
        [
            [1, 0, 1],  # visible: the env's mask
            [0, 0, 1],  # hidden: the no-op alone
            [0, 0, 1],  # visible with nothing available: the no-op
            [1, 1, 0],  # visible: the no-op is not added to an agent that can act
        ],
    )


def test_action_mask_takes_bool_masks_and_batch_axes() -> None:
    available = np.zeros((2, 2, 3), dtype=bool)
    available[0, 0, 1] = True
    mask = joint_action_mask(available, np.array([[T, T], [F, T]]), noop_action=0)
    np.testing.assert_array_equal(mask, [[[0, 1, 0], [1, 0, 0]], [[1, 0, 0], [1, 0, 0]]])
    assert not available[0, 1].any()  # the input is not written
