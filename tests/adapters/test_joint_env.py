"""JointEnv over real PettingZoo envs (LBF, mpe2, PettingZoo classic) and under Tianshou."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from mpe2 import simple_adversary_v3, simple_spread_v3
from pettingzoo import ParallelEnv
from pettingzoo.classic import rps_v2, tictactoe_v3
from pettingzoo.utils.conversions import turn_based_aec_to_parallel
from pettingzoo.utils.wrappers import BaseParallelWrapper
from tianshou.algorithm.algorithm_base import Policy
from tianshou.data import Batch, Collector, VectorReplayBuffer
from tianshou.env import DummyVectorEnv

from bdps_agents.adapters.base import ArrayStep
from bdps_agents.adapters.lbf import LBFParallelEnv
from bdps_agents.joint_env import JointEnv, make_joint_env

LOAD = 5


def random_available(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    """One uniformly random available action per row of an ``(n, A)`` mask."""
    return np.array([rng.choice(np.flatnonzero(row)) for row in mask], dtype=np.int64)


def greedy_available(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    """LOAD where available (so that LBF food gets collected), else random available."""
    act = random_available(rng, mask)
    act[mask[:, LOAD] == 1] = LOAD
    return act


def assert_joint_obs(env: JointEnv, obs: dict[str, np.ndarray]) -> None:
    assert set(obs) == {"obs", "state", "mask", "alive"}
    assert obs["alive"].dtype == np.int8 and obs["alive"].shape == (env.n_agents,)
    assert obs["obs"].dtype == np.float32 and obs["obs"].shape == (env.n_agents, env.obs_dim)
    assert obs["state"].dtype == np.float32 and obs["state"].shape == (env.state_dim,)
    assert obs["mask"].dtype == np.int8 and obs["mask"].shape == (env.n_agents, env.n_actions)
    assert env.observation_space.contains(obs)
    assert (obs["mask"].sum(axis=1) >= 1).all()


# ----------------------------------------------------------------------------- LBF
LBF_TASKS = ["8x8-2p-2f-coop", "15x15-4p-5f", "10x10-3p-3f-2s"]


@pytest.mark.parametrize("task", LBF_TASKS)
def test_lbf_spaces(task: str) -> None:
    env = make_joint_env("lbf", task=task)
    lbf = env.env
    n = len(lbf.possible_agents)
    d = lbf.observation_space("agent_0").shape[0]
    assert (env.n_agents, env.n_actions, env.obs_dim) == (n, 6, d)
    assert env.agents == lbf.possible_agents
    assert env.state_dim == lbf.state_space.shape[0]
    assert env.episode_limit == 50 and env.noop_action == 0
    assert env.action_space.nvec.tolist() == [6] * n
    assert env.observation_space["mask"].dtype == np.int8
    obs, _info = env.reset(seed=0)
    assert_joint_obs(env, obs)


@pytest.mark.parametrize("aggregation", ["sum", "mean"])
@pytest.mark.parametrize("task", ["8x8-2p-2f", "15x15-4p-5f", "10x10-3p-3f-2s"])
def test_lbf_rollout_matches_underlying_env(task: str, aggregation: str) -> None:
    joint = make_joint_env("lbf", task=task, reward_aggregation=aggregation)
    raw = LBFParallelEnv(task=task)
    rng = np.random.default_rng(0)
    team_return = 0.0
    for seed in range(4):
        obs, _ = joint.reset(seed=seed)
        raw_obs, raw_infos = raw.reset(seed=seed)
        done = False
        while not done:
            assert_joint_obs(joint, obs)
            for i, agent in enumerate(raw.possible_agents):
                np.testing.assert_array_equal(obs["obs"][i], raw_obs[agent])
                np.testing.assert_array_equal(obs["mask"][i], raw_infos[agent]["action_mask"])
            np.testing.assert_array_equal(obs["state"], raw.state())
            act = greedy_available(rng, obs["mask"])
            previous = {k: v.copy() for k, v in obs.items()}
            kept = obs
            obs, reward, terminated, truncated, _info = joint.step(act)
            for key in previous:  # the arrays handed out before are not reused
                np.testing.assert_array_equal(kept[key], previous[key])
                assert not np.shares_memory(kept[key], obs[key])
            raw_obs, raw_rewards, raw_terms, raw_truncs, raw_infos = raw.step(
                {a: int(act[i]) for i, a in enumerate(raw.possible_agents)}
            )
            rewards = list(raw_rewards.values())
            expected = sum(rewards) if aggregation == "sum" else sum(rewards) / len(rewards)
            assert isinstance(reward, float) and reward == pytest.approx(expected)
            team_return += reward
            done = terminated or truncated
            assert done == (not raw.agents)
            assert terminated == all(raw_terms.values())
            assert truncated == all(raw_truncs.values())
        for i, agent in enumerate(raw.possible_agents):
            if truncated:  # the last observation is genuine: learners bootstrap from it
                np.testing.assert_array_equal(obs["obs"][i], raw_obs[agent])
                np.testing.assert_array_equal(obs["mask"][i], raw_infos[agent]["action_mask"])
            else:  # terminated agents are finished: zeros and the no-op only
                np.testing.assert_array_equal(obs["obs"][i], 0.0)
                np.testing.assert_array_equal(obs["mask"][i], np.eye(6)[0])
    assert team_return > 0  # food was collected, so the sums above compared real rewards


def test_lbf_info_keys_are_constant() -> None:
    env = make_joint_env("lbf", task="8x8-2p-2f", max_episode_steps=12)
    rng = np.random.default_rng(0)
    keys = {"n_alive", "food_collected"}
    for seed in range(3):
        obs, info = env.reset(seed=seed)
        assert set(info) == keys and info["n_alive"] == 2 and info["food_collected"] == 0.0
        done = False
        while not done:
            obs, _, terminated, truncated, info = env.step(greedy_available(rng, obs["mask"]))
            assert set(info) == keys
            assert all(np.isscalar(v) for v in info.values())
            done = terminated or truncated
        assert info["n_alive"] == 0


def test_lbf_truncated_at_time_limit() -> None:
    env = make_joint_env("lbf", task="8x8-2p-2f", max_episode_steps=3)
    env.reset(seed=0)
    flags = [env.step(np.zeros(2, dtype=np.int64))[2:4] for _ in range(3)]
    assert flags == [(False, False), (False, False), (False, True)]
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(2, dtype=np.int64))


def test_lbf_terminated_when_food_is_collected() -> None:
    env = make_joint_env("lbf", field_size=6, players=2, max_num_food=1, max_episode_steps=1)
    env.reset(seed=0)
    lbf = env.env.foraging_env
    # Put both level-1 agents next to the only level-2 food (test-only use of internals).
    lbf.field[:] = 0
    lbf.field[3, 3] = 2
    lbf._food_spawned = 2
    for player, position in zip(lbf.players, [(3, 2), (3, 4)], strict=True):
        player.position, player.level = position, 1
    lbf._gen_valid_moves()
    env._mask[:, LOAD] = 1  # the joint env's mask was computed before the layout change
    obs, reward, terminated, truncated, info = env.step(np.array([LOAD, LOAD]))
    np.testing.assert_array_equal(obs["obs"], 0.0)  # finished by termination: nothing to see
    np.testing.assert_array_equal(obs["mask"], np.eye(6, dtype=np.int8)[[0, 0]])
    # the time limit is hit on the same step: collecting all food still counts as terminal
    assert (reward, terminated, truncated) == (1.0, True, False)
    assert info == {"n_alive": 0, "food_collected": 1.0}


# ----------------------------------------------------------------------------- validation
@pytest.fixture
def lbf_joint() -> JointEnv:
    env = make_joint_env("lbf", task="8x8-2p-2f")
    env.reset(seed=0)
    return env


@pytest.mark.parametrize(
    ("action", "match"),
    [
        (np.array([0, 0, 0]), "shape"),
        (np.array([[0, 0]]), "shape"),
        (0, "shape"),
        (np.array([0.0, 0.0]), "integers"),
        (np.array([True, False]), "integers"),
        (np.array([6, 0]), "agent_0"),
        (np.array([0, -1]), "agent_1"),
    ],
)
def test_bad_joint_actions(lbf_joint: JointEnv, action: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        lbf_joint.step(action)
    lbf_joint.step([0, 0])  # nothing was consumed by the failed calls


def test_unavailable_action_of_live_agent_raises(lbf_joint: JointEnv) -> None:
    obs, *_ = lbf_joint.step([0, 0])
    mask = obs["mask"]
    agent, action = (int(x[0]) for x in np.nonzero(mask == 0))
    act = np.zeros(2, dtype=np.int64)
    act[agent] = action
    with pytest.raises(ValueError) as excinfo:
        lbf_joint.step(act)
    message = str(excinfo.value)
    assert f"agent_{agent}" in message and f"action {action}" in message
    assert str(np.flatnonzero(mask[agent]).tolist()) in message


def test_step_before_reset_raises() -> None:
    env = make_joint_env("lbf")
    with pytest.raises(RuntimeError, match="reset"):
        env.step([0, 0])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"reward_aggregation": "max"}, ValueError, "reward_aggregation"),
        ({"noop_action": 6}, ValueError, "noop_action"),
    ],
)
def test_bad_constructor_args(kwargs: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        JointEnv(LBFParallelEnv(), **kwargs)


def test_continuous_actions_are_rejected() -> None:
    env = simple_spread_v3.parallel_env(N=2, continuous_actions=True)
    with pytest.raises(TypeError, match="agent_0.*Box"):
        JointEnv(env)


# ----------------------------------------------------------------------------- third-party envs
def test_mpe2_simple_spread() -> None:
    def make() -> ParallelEnv:
        return simple_spread_v3.parallel_env(N=3, max_cycles=10, continuous_actions=False)

    env, raw = JointEnv(make()), make()
    assert (env.n_agents, env.n_actions, env.obs_dim, env.state_dim) == (3, 5, 18, 54)
    assert env.episode_limit == 10 and env.metric_keys == ()  # max_cycles of the raw env
    rng = np.random.default_rng(0)
    obs, info = env.reset(seed=1)
    raw_obs, _ = raw.reset(seed=1)
    assert info == {"n_alive": 3}
    for t in range(10):
        assert_joint_obs(env, obs)
        assert (obs["mask"] == 1).all()  # no masks in mpe2: every action is available
        np.testing.assert_array_equal(obs["state"], raw.state())
        np.testing.assert_array_equal(obs["obs"][2], raw_obs["agent_2"])
        act = random_available(rng, obs["mask"])
        obs, reward, terminated, truncated, info = env.step(act)
        raw_obs, raw_rewards, *_ = raw.step({f"agent_{i}": int(a) for i, a in enumerate(act)})
        assert reward == pytest.approx(sum(raw_rewards.values()))
        assert (terminated, truncated) == (False, t == 9)  # max_cycles is a truncation


def test_mpe2_heterogeneous_obs_are_zero_padded() -> None:
    env = JointEnv(simple_adversary_v3.parallel_env(N=2, max_cycles=5, continuous_actions=False))
    raw = simple_adversary_v3.parallel_env(N=2, max_cycles=5, continuous_actions=False)
    assert env.agents == ["adversary_0", "agent_0", "agent_1"]
    assert (env.obs_dim, env.state_dim) == (10, 28)
    obs, _ = env.reset(seed=2)
    raw_obs, _ = raw.reset(seed=2)
    rng = np.random.default_rng(0)
    done = False
    while not done:
        np.testing.assert_array_equal(obs["obs"][0, :8], raw_obs["adversary_0"])
        np.testing.assert_array_equal(obs["obs"][0, 8:], 0.0)
        np.testing.assert_array_equal(obs["obs"][1], raw_obs["agent_0"])
        act = random_available(rng, obs["mask"])
        obs, _, terminated, truncated, _ = env.step(act)
        raw_obs, *_ = raw.step(dict(zip(env.agents, act.tolist(), strict=True)))
        done = terminated or truncated
    assert truncated


def test_env_without_state_uses_padded_observations() -> None:
    # rps_v2 has no state_space (and its state() is broken: its `state` attribute is a dict);
    # its observations are Discrete(4), flattened one-hot.
    env = JointEnv(rps_v2.parallel_env(max_cycles=3))
    assert (env.obs_dim, env.state_dim, env.n_actions) == (4, 8, 3)
    obs, _ = env.reset(seed=0)
    for _ in range(3):
        np.testing.assert_array_equal(obs["state"], obs["obs"].reshape(-1))
        assert (obs["obs"].sum(axis=1) == 1).all()
        obs, reward, terminated, truncated, _ = env.step(np.array([0, 1]))
        assert reward == 0.0  # zero-sum game: the team reward is the sum
    assert truncated and not terminated


def test_dict_observation_with_action_mask() -> None:
    # tic-tac-toe through PettingZoo's turn-based conversion: masks come from obs["action_mask"];
    # the waiting player has an all-zero mask, so JointEnv offers it only the no-op.
    env = JointEnv(turn_based_aec_to_parallel(tictactoe_v3.env()))
    assert (env.obs_dim, env.n_actions) == (18, 9)
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    done, turn = False, 0
    while not done:
        mover, waiter = turn % 2, 1 - turn % 2
        np.testing.assert_array_equal(obs["mask"][waiter], np.eye(9, dtype=np.int8)[0])
        assert obs["mask"][mover].sum() == 9 - turn  # one cell fewer per move
        obs, reward, terminated, truncated, _ = env.step(random_available(rng, obs["mask"]))
        done, turn = terminated or truncated, turn + 1
    assert terminated and not truncated and reward == 0.0


# ----------------------------------------------------------------------------- dead agents
class KillAgentWrapper(ParallelEnv):
    """Test double around a real LBF env: ``victims`` die (terminated) after ``kill_at`` steps.

    Dead agents leave ``agents``; the inner LBF env, which has no death, gets NONE for them.
    Every joint action received is recorded in ``received``.
    """

    def __init__(self, env: LBFParallelEnv, victims: list[str], kill_at: int) -> None:
        self.env, self.victims, self.kill_at = env, victims, kill_at
        self.possible_agents = env.possible_agents
        self.state_space = env.state_space
        self.noop_action, self.metric_keys = env.noop_action, env.metric_keys
        self.episode_limit = env.episode_limit
        self.metadata = env.metadata
        self.received: list[dict[str, int]] = []
        self.closed = False
        self.agents: list[str] = []

    def observation_space(self, agent: str) -> Any:
        return self.env.observation_space(agent)

    def action_space(self, agent: str) -> Any:
        return self.env.action_space(agent)

    def state(self) -> np.ndarray:
        return self.env.state()

    def reset(self, seed: int | None = None, options: dict | None = None) -> Any:
        self.t, self.received = 0, []
        obs, infos = self.env.reset(seed=seed, options=options)
        self.agents = list(self.env.agents)
        return obs, infos

    def step(self, actions: dict[str, int]) -> Any:
        self.received.append(dict(actions))
        self.t += 1
        full = {a: actions.get(a, 0) for a in self.env.agents}
        obs, rewards, terms, truncs, infos = self.env.step(full)
        live = [a for a in self.agents if a in actions]
        out = [{a: d[a] for a in live} for d in (obs, rewards, terms, truncs, infos)]
        if self.t == self.kill_at:
            for a in self.victims:
                if a in live:
                    out[2][a] = True
        self.agents = [a for a in live if not (out[2][a] or out[3][a])]
        return tuple(out)

    def close(self) -> None:
        self.closed = True


def test_dead_agent_gets_zero_obs_noop_mask_and_is_not_forwarded() -> None:
    wrapper = KillAgentWrapper(
        LBFParallelEnv(task="8x8-3p-2f", max_episode_steps=8), ["agent_1"], 3
    )
    env = JointEnv(wrapper)
    rng = np.random.default_rng(0)
    obs, info = env.reset(seed=5)
    noop_only = np.eye(6, dtype=np.int8)[0]
    for t in range(1, 9):
        act = random_available(rng, obs["mask"])
        if t > 3:
            act[1] = 4  # whatever a dead agent "does" is dropped
        obs, _reward, terminated, truncated, info = env.step(act)
        assert set(wrapper.received[-1]) == (
            {"agent_0", "agent_1", "agent_2"} if t <= 3 else {"agent_0", "agent_2"}
        )
        if t >= 3:
            np.testing.assert_array_equal(obs["obs"][1], 0.0)
            np.testing.assert_array_equal(obs["mask"][1], noop_only)
            assert obs["alive"][1] == 0 and obs["alive"][[0, 2]].all()
            if not terminated:  # live and truncated agents show real observations
                assert obs["obs"][0].any() and obs["obs"][2].any()
        if terminated or truncated:
            break
        assert info["n_alive"] == (3 if t < 3 else 2)
    # LBF's time limit ended the episode: the agents that were still live were truncated
    assert (t, terminated, truncated, info["n_alive"]) == (8, False, True, 0)
    env.close()
    assert wrapper.closed


def test_unavailable_action_of_live_agent_raises_after_a_death() -> None:
    env = JointEnv(KillAgentWrapper(LBFParallelEnv(task="8x8-3p-2f"), ["agent_1"], 1))
    env.reset(seed=3)
    obs, *_ = env.step([0, 0, 0])
    env.step([0, 5, 0])  # agent_1 is dead: even LOAD, masked for it, is accepted and dropped
    obs, *_ = env.step([0, 0, 0])
    agent, action = next((i, int(np.flatnonzero(obs["mask"][i] == 0)[0])) for i in (0, 2))
    act = np.zeros(3, dtype=np.int64)
    act[agent] = action
    with pytest.raises(ValueError, match=f"agent_{agent}"):
        env.step(act)


def test_all_agents_dying_is_a_termination() -> None:
    wrapper = KillAgentWrapper(LBFParallelEnv(task="8x8-2p-2f"), ["agent_0", "agent_1"], 2)
    env = JointEnv(wrapper)
    env.reset(seed=0)
    assert env.step([0, 0])[2:4] == (False, False)
    _, _, terminated, truncated, info = env.step([0, 0])
    assert (terminated, truncated, info["n_alive"]) == (True, False, 0)


# ----------------------------------------------------------------------------- array-native path
class DictOnly(BaseParallelWrapper):
    """Hides an adapter's ``step_arrays`` from ``JointEnv``, which then takes the dict path."""


class KillAgentArrayEnv(KillAgentWrapper):
    """``KillAgentWrapper`` that is also array-native: ``step_arrays`` = ``step`` as arrays."""

    def step_arrays(self, actions: Any) -> ArrayStep:
        live = list(self.agents)
        obs, rewards, terms, truncs, infos = self.step(
            {a: int(x) for a, x in zip(self.possible_agents, actions, strict=True) if a in live}
        )
        agents = self.possible_agents
        first_info = next(iter(infos.values()), {})
        return ArrayStep(
            obs=np.array([obs.get(a, np.zeros(self.env._obs_space.shape)) for a in agents]),
            rewards=np.array([rewards.get(a, 0.0) for a in agents]),
            terminated=np.array([terms.get(a, False) for a in agents]),
            truncated=np.array([truncs.get(a, False) for a in agents]),
            masks=np.array(
                [infos[a]["action_mask"] if a in infos else np.zeros(6, np.int8) for a in agents]
            ),
            metrics={k: first_info.get(k, 0.0) for k in self.metric_keys},
        )


def run_both_paths(
    native: JointEnv, dict_path: JointEnv, seed: int, rng_seed: int = 0
) -> tuple[int, bool, bool]:
    """Step both joint envs with the same actions; assert equal outputs; (steps, term, trunc)."""
    rng = np.random.default_rng(rng_seed)
    obs_a, info_a = native.reset(seed=seed)
    obs_b, info_b = dict_path.reset(seed=seed)
    for t in range(1, 1000):
        for key in obs_b:
            np.testing.assert_array_equal(obs_a[key], obs_b[key], err_msg=f"{key} at step {t}")
            assert obs_a[key].dtype == obs_b[key].dtype
        assert info_a == info_b
        act = greedy_available(rng, obs_a["mask"])
        *out_a, info_a = native.step(act)
        *out_b, info_b = dict_path.step(act)
        obs_a, obs_b = out_a[0], out_b[0]
        assert out_a[1:] == out_b[1:] and type(out_a[1]) is float
        if out_a[2] or out_a[3]:
            for key in obs_b:
                np.testing.assert_array_equal(obs_a[key], obs_b[key])
            assert info_a == info_b
            return t, out_a[2], out_a[3]
    raise AssertionError("no episode end")


@pytest.mark.parametrize("aggregation", ["sum", "mean"])
@pytest.mark.parametrize("task", [*LBF_TASKS, "5x5-2p-1f", "5x5-3p-1f-coop"])
def test_lbf_array_path_equals_dict_path(task: str, aggregation: str) -> None:
    native = make_joint_env("lbf", task=task, reward_aggregation=aggregation, max_episode_steps=25)
    dict_path = JointEnv(DictOnly(LBFParallelEnv(task=task, max_episode_steps=25)), aggregation)
    assert native._step_arrays is not None and dict_path._step_arrays is None
    ends = {run_both_paths(native, dict_path, seed)[1:] for seed in range(6)}
    assert (False, True) in ends  # time limit: truncated agents keep their last view
    if task.startswith("5x5"):  # small enough that random play collects all food
        assert (True, False) in ends


def test_array_path_only_when_step_and_step_arrays_come_together() -> None:
    class OwnStep(LBFParallelEnv):  # overrides step alone: its step must run, not step_arrays
        def step(self, actions):  # type: ignore[no-untyped-def]
            self.calls = getattr(self, "calls", 0) + 1
            return super().step(actions)

    class OwnBoth(OwnStep):
        def step_arrays(self, actions):  # type: ignore[no-untyped-def]
            return super().step_arrays(actions)

    for cls, native in [(LBFParallelEnv, True), (OwnStep, False), (OwnBoth, True)]:
        env = JointEnv(cls(task="8x8-2p-2f"))
        assert (env._step_arrays is not None) == native, cls
    env = JointEnv(OwnStep(task="8x8-2p-2f"))
    env.reset(seed=0)
    env.step([0, 0])
    assert env.env.calls == 1
    assert JointEnv(DictOnly(LBFParallelEnv()))._step_arrays is None  # forwarded, not used


def test_array_step_of_the_wrong_shape_is_refused() -> None:
    class Truncating(LBFParallelEnv):
        def step_arrays(self, actions):  # type: ignore[no-untyped-def]
            return super().step_arrays(actions)._replace(masks=np.ones((2, 5), np.int8))

    env = JointEnv(Truncating(task="8x8-2p-2f"))
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"Truncating.step_arrays returned .*masks \(2, 5\)"):
        env.step([0, 0])


@pytest.mark.parametrize(("victims", "kill_at"), [(["agent_1"], 3), (["agent_0", "agent_2"], 1)])
def test_array_path_equals_dict_path_with_deaths(victims: list[str], kill_at: int) -> None:
    def make(cls: type) -> JointEnv:
        return JointEnv(
            cls(LBFParallelEnv(task="8x8-3p-2f", max_episode_steps=8), victims, kill_at)
        )

    native, dict_path = make(KillAgentArrayEnv), make(KillAgentWrapper)
    assert native._step_arrays is not None and dict_path._step_arrays is None
    steps, terminated, truncated = run_both_paths(native, dict_path, seed=5)
    assert (steps, terminated, truncated) == (8, False, True)  # the survivors were truncated


# ----------------------------------------------------------------------------- Tianshou
class RandomMaskedPolicy(Policy):
    """Picks a uniformly random available action for every agent from ``batch.obs.mask``."""

    def __init__(self, action_space: Any, seed: int = 0) -> None:
        super().__init__(action_space=action_space)
        self.rng = np.random.default_rng(seed)

    def forward(self, batch: Batch, state: Any = None, **kwargs: Any) -> Batch:
        mask = np.asarray(batch.obs.mask)  # (R, n, A)
        act = np.stack([random_available(self.rng, m) for m in mask])
        return Batch(act=act, state=state)


def test_tianshou_collector_and_buffer() -> None:
    n_envs = 2
    venv = DummyVectorEnv(
        [lambda: make_joint_env("lbf", task="8x8-2p-2f", max_episode_steps=10)] * n_envs
    )
    probe = make_joint_env("lbf", task="8x8-2p-2f", max_episode_steps=10)
    policy = RandomMaskedPolicy(probe.action_space)
    buffer = VectorReplayBuffer(total_size=400, buffer_num=n_envs)
    collector = Collector(policy, venv, buffer)
    collector.reset(gym_reset_kwargs={"seed": 0})
    stats = collector.collect(n_step=60)
    assert stats.n_collected_steps == 60
    stats = collector.collect(n_episode=4)
    assert stats.n_collected_episodes == 4

    data = buffer[buffer.sample_indices(0)]  # 0 = every stored transition
    steps = len(data)
    assert data.obs.obs.shape == (steps, 2, probe.obs_dim)
    assert data.obs.mask.shape == (steps, 2, 6) and data.obs.mask.dtype == np.int8
    assert data.obs.state.shape == (steps, probe.state_dim)
    assert data.act.shape == (steps, 2)
    chosen = np.take_along_axis(data.obs.mask, data.act[..., None], axis=2)
    assert (chosen == 1).all()  # every stored action was available
    # Tianshou adds env_id; the rest is JointEnv's constant info
    assert set(data.info.keys()) == {"env_id", "n_alive", "food_collected"}
    assert data.truncated.any() and not (data.terminated & data.truncated).any()
    # what a learner bootstraps from at a time limit is every agent's genuine last observation
    assert data.obs_next.obs[data.truncated].any(axis=-1).all()
    venv.close()
