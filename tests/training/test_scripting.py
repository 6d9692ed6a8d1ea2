"""A Tianshou/PettingZoo user's steps from docs/scripting.md, each with the message it gets:
moving a run between a script and the CLI both ways, wrapping the wrong kind of env, the
warm-up and sizes of a hand-built pipeline, and the settings that used to be silent."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from mpe2 import simple_speaker_listener_v4, simple_spread_v3
from tianshou.algorithm.algorithm_base import policy_within_training_step
from tianshou.data import Collector
from tianshou.env import DummyVectorEnv

from bdps_agents.cli import main
from bdps_agents.joint_env import JointEnv, make_joint_env
from bdps_agents.pipeline import Learner, build_learner, warmup
from bdps_agents.training import load_checkpoint

SMALL = {"replay": {"capacity_episodes": 8, "batch_episodes": 2, "warmup_episodes": 2}}


def speaker_listener() -> JointEnv:
    return JointEnv(
        simple_speaker_listener_v4.parallel_env(max_cycles=10), reward_aggregation="mean"
    )


def lbf() -> JointEnv:
    return make_joint_env("lbf", task="6x6-2p-1f")


def test_script_learner_saved_then_evaluated_by_the_cli(tmp_path, capsys):
    learner = build_learner(lbf(), "qmix", num_envs=2, network={"hidden_dim": 8}, **SMALL)
    assert learner.config.env.adapter == "lbf"
    assert learner.config.env.kwargs == {"task": "6x6-2p-1f"}
    collector = learner.collector(DummyVectorEnv([lbf, lbf]))
    warmup(collector, n_episode=2)
    path = learner.save(tmp_path / "mine" / "checkpoint.pt")
    assert main(["eval", "--checkpoint", str(path), "--episodes", "2"]) == 0
    assert '"return_mean"' in capsys.readouterr().out


def test_cli_checkpoint_loaded_in_a_script(tmp_path):
    trained = build_learner(lbf(), "qmix", seed=3, network={"hidden_dim": 8}, **SMALL)
    path = trained.save(tmp_path / "checkpoint.pt")
    learner = Learner.from_checkpoint(path)  # the env rebuilt from the config
    config, data = load_checkpoint(path)
    assert config.training.seed == 3 and data["env"]["sizes"]["n_agents"] == 2
    for key, value in trained.policy.state_dict().items():
        assert np.array_equal(value, learner.policy.state_dict()[key]), key


def test_cli_refuses_a_learner_on_an_env_wrapped_by_hand(tmp_path, capsys):
    path = build_learner(speaker_listener(), "qmix", **SMALL).save(tmp_path / "checkpoint.pt")
    assert main(["eval", "--checkpoint", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path} was saved from a learner on an env wrapped by hand")
    assert "make_joint_env" in err and "does not fit" not in err
    # the script that has the env loads it
    assert Learner.from_checkpoint(path, env=speaker_listener()).config.algorithm.name == "qmix"


def test_state_of_another_env_is_refused_with_both_sizes():
    state = build_learner(speaker_listener(), "qmix", **SMALL).state_dict()
    spread = JointEnv(simple_spread_v3.parallel_env(N=3, max_cycles=10), reward_aggregation="mean")
    with pytest.raises(ValueError, match=r"saved for n=2 agents, obs 11, .*; this env has n=3"):
        Learner.from_state_dict(spread, state)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (lambda: simple_spread_v3.env(), r"AEC env .*parallel_env\(\)"),
        (lambda: gym.make("CartPole-v1"), "single-agent Gymnasium env"),
    ],
)
def test_wrong_kind_of_env_is_refused_when_wrapped(env, message):
    with pytest.raises(TypeError, match=message):
        JointEnv(env())


def test_vector_env_of_raw_parallel_envs_is_named():
    learner = build_learner(speaker_listener(), "qmix", num_envs=2, **SMALL)
    raw = DummyVectorEnv([lambda: simple_speaker_listener_v4.parallel_env() for _ in range(2)])
    with pytest.raises(TypeError, match="make each env of the vector env a JointEnv"):
        warmup(Collector(learner.policy, raw, learner.buffer), n_episode=2)


def test_random_collect_on_a_masked_env_points_to_warmup():
    learner = build_learner(lbf(), "qmix", **SMALL)
    collector = Collector(learner.policy, DummyVectorEnv([lbf]), learner.buffer)
    collector.reset()
    with pytest.raises(ValueError, match=r"unavailable.*use bdps_agents.pipeline.warmup"):
        for _ in range(50):  # LBF masks moves into walls and loading away from food
            collector.collect(n_step=10, random=True)


@pytest.mark.parametrize("n_envs", [1, 3])
def test_num_envs_other_than_the_vector_env_is_refused(n_envs):
    learner = build_learner(lbf(), "qmix", num_envs=2, **SMALL)
    envs = DummyVectorEnv([lbf] * n_envs)
    with pytest.raises(ValueError, match=rf"steps {n_envs} env\(s\) .* num_envs={n_envs}"):
        learner.collector(envs)
    if n_envs == 1:  # Tianshou takes fewer envs than sub-buffers silently; warmup does not
        with pytest.raises(ValueError, match="num_envs=1"):
            warmup(Collector(learner.policy, envs, learner.buffer), n_episode=1)


def test_update_without_a_whole_episode_warns():
    learner = build_learner(lbf(), "qmix", **SMALL)
    collector = learner.collector(DummyVectorEnv([lbf]))
    collector.collect(n_step=3, reset_before_collect=True)  # part of an episode
    with policy_within_training_step(learner.policy), pytest.warns(UserWarning, match="skipped"):
        stats = learner.algorithm.update(learner.buffer, sample_size=2)
    assert stats.loss is None


def test_shared_team_reward_summed_by_default_warns():
    env = JointEnv(simple_speaker_listener_v4.parallel_env(max_cycles=10))
    env.reset(seed=0)
    for _ in range(9):
        env.step(np.zeros(2, dtype=np.int64))
    with pytest.warns(UserWarning, match="reward_aggregation='mean'"):
        env.step(np.zeros(2, dtype=np.int64))  # the episode's last step (max_cycles)


def test_state_without_state_space_warns(monkeypatch):
    from tests.adapters.test_example_adapter import SRC

    monkeypatch.syspath_prepend(str(SRC))
    from bdps_example_adapter.env import CorridorEnv

    class NoStateSpace(CorridorEnv):
        def __init__(self) -> None:
            super().__init__()
            self.state_space = None  # type: ignore[assignment]

    env = JointEnv(NoStateSpace(), reward_aggregation="sum")
    with pytest.warns(UserWarning, match="has a state\\(\\) but declares no state_space"):
        env.reset(seed=0)
    assert env.state_dim == 2 * env.obs_dim  # the concatenated observations


def test_rode_start_steps_beyond_the_budget_warns():
    with pytest.warns(UserWarning, match=r"rode.start_steps \(50000\) is not below"):
        build_learner(lbf(), "rode", training={"total_steps": 2000}, **SMALL)


def test_options_lists_each_algorithms_settings(capsys):
    assert main(["options", "rode"]) == 0
    out = capsys.readouterr().out
    assert "rode.start_steps (int, default 50000): env steps of training" in out
    assert main(["options", "nope"]) == 2
    assert capsys.readouterr().err.startswith("error: no config section 'nope'")
