"""SMAC adapter against the StarCraft2Env contract (with a stand-in), and live when SC2 exists."""

from __future__ import annotations

import csv
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest

import bdps_agents.adapters as adapters
from bdps_agents.adapters import BUILTIN_ADAPTERS, AdapterRegistry, make_env, register_adapter
from bdps_agents.adapters.smac import SMACParallelEnv, make_smac_env
from bdps_agents.joint_env import JointEnv
from bdps_agents.training import build_run, greedy_return, train
from tests.adapters.smac_standin import ReseedableStandIn, StandInStarCraft2Env

STOP, NORTH = 1, 2


def attack(j: int) -> int:
    return 6 + j


def adapter(**kwargs) -> SMACParallelEnv:
    return SMACParallelEnv(StandInStarCraft2Env(seed=0, **kwargs))


def test_spaces_masks_and_state_follow_the_wrapped_env() -> None:
    env = adapter(n_agents=4, n_enemies=3)
    obs, infos = env.reset()
    assert env.possible_agents == ["agent_0", "agent_1", "agent_2", "agent_3"]
    assert env.action_space("agent_0").n == 9 and env.episode_limit == 12
    np.testing.assert_array_equal(obs["agent_2"], env.env.get_obs_agent(2))
    np.testing.assert_array_equal(env.state(), env.env.get_state())
    for i, agent in enumerate(env.possible_agents):
        mask = infos[agent]["action_mask"]
        assert mask.dtype == np.int8
        np.testing.assert_array_equal(mask, env.env.get_avail_agent_actions(i))
        assert mask[0] == 0  # live agents never have the no-op
        assert infos[agent]["battle_won"] == 0.0


def test_actions_reach_the_env_in_smac_numbering_with_noop_for_dead() -> None:
    env = adapter(n_agents=3, n_enemies=1, enemy_damage=1.0, ally_damage=0.1)
    env.reset()
    step = {"agent_0": NORTH, "agent_1": attack(0), "agent_2": STOP}
    obs, rewards, terms, truncs, infos = env.step(step)
    assert env.env.last_actions == [NORTH, attack(0), STOP]
    assert rewards == dict.fromkeys(step, pytest.approx(0.1))
    # the enemy killed agent_0: terminated now, zero observation, only the no-op afterwards
    assert terms == {"agent_0": True, "agent_1": False, "agent_2": False}
    assert not any(truncs.values()) and not obs["agent_0"].any()
    np.testing.assert_array_equal(infos["agent_0"]["action_mask"], [1, 0, 0, 0, 0, 0, 0])
    assert env.agents == ["agent_1", "agent_2"] and infos["agent_1"]["dead_allies"] == 1.0
    env.step({"agent_1": STOP, "agent_2": STOP})
    assert env.env.last_actions == [0, STOP, STOP]  # the dead agent's no-op is filled in
    with pytest.raises(ValueError, match="agent_0.*finished"):
        env.step({"agent_0": STOP, "agent_2": STOP})


def test_unavailable_action_is_replaced_before_the_env_asserts() -> None:
    env = adapter(n_enemies=2, ally_damage=1.0, enemy_damage=0.0)
    env.reset()
    # the no-op is for the dead: the live agent_1 stops instead
    *_, infos = env.step({"agent_0": attack(0), "agent_1": 0, "agent_2": NORTH})
    assert env.env.last_actions == [attack(0), STOP, NORTH]
    assert {a: i["action_replaced"] for a, i in infos.items()} == {
        "agent_0": False,
        "agent_1": True,
        "agent_2": False,
    }
    # enemy 0 died: attacking it is unavailable and stops too; outside the space still raises
    assert infos["agent_2"]["action_mask"][attack(0)] == 0
    with pytest.raises(ValueError, match="action 8 for agent 'agent_0' is outside"):
        env.step({"agent_0": 8, "agent_1": STOP, "agent_2": attack(0)})
    *_, infos = env.step({"agent_0": attack(1), "agent_1": STOP, "agent_2": attack(0)})
    assert env.env.last_actions == [attack(1), STOP, STOP]
    assert [i["action_replaced"] for i in infos.values()] == [False, False, True]
    assert infos["agent_0"]["battle_won"] == 1.0  # agent_0's attack ran: enemy 1 died


def test_win_is_a_termination_with_battle_won() -> None:
    env = adapter(n_enemies=1, ally_damage=0.5, enemy_damage=0.0)
    env.reset()
    _, rewards, terms, truncs, infos = env.step({a: attack(0) for a in env.agents})
    assert all(terms.values()) and not any(truncs.values()) and env.agents == []
    assert infos["agent_0"]["battle_won"] == 1.0 and infos["agent_0"]["dead_enemies"] == 1.0
    assert rewards["agent_2"] == pytest.approx(2.0)  # health 1 taken + win bonus


def test_loss_is_a_termination() -> None:
    env = adapter(n_agents=2, n_enemies=2, enemy_damage=0.6)
    env.reset()
    terms: dict[str, bool] = {}
    while env.agents:
        _, _, terms, truncs, infos = env.step(dict.fromkeys(env.agents, STOP))
        assert not any(truncs.values())
    assert all(terms.values()) and infos[next(iter(terms))]["battle_won"] == 0.0


@pytest.mark.parametrize("continuing_episode", [False, True])
def test_time_limit_is_a_truncation(continuing_episode: bool) -> None:
    env = adapter(episode_limit=5, enemy_damage=0.0, continuing_episode=continuing_episode)
    env.reset()
    for t in range(1, 6):
        _, _, terms, truncs, _ = env.step(dict.fromkeys(env.agents, STOP))
        assert not any(terms.values())
        assert all(truncs.values()) == (t == 5)
    assert env.agents == []
    with pytest.raises(RuntimeError, match="reset"):
        env.step({"agent_0": STOP})


def test_win_on_the_last_step_is_a_termination() -> None:
    env = adapter(n_enemies=1, episode_limit=2, ally_damage=0.2, enemy_damage=0.0)
    env.reset()
    for _ in (1, 2):  # 3 attackers x 0.2 per step: the enemy dies on step 2 = the limit
        _, _, terms, truncs, infos = env.step({a: attack(0) for a in env.agents})
    assert infos["agent_0"]["battle_won"] == 1.0
    assert all(terms.values()) and not any(truncs.values())


def test_failed_game_connection_ends_as_truncation_with_warning() -> None:
    env = adapter(fail_at_step=2, enemy_damage=0.0)
    env.reset()
    env.step(dict.fromkeys(env.agents, STOP))
    with pytest.warns(UserWarning, match="without an info dict"):
        _, _, terms, truncs, infos = env.step(dict.fromkeys(env.agents, STOP))
    assert all(truncs.values()) and not any(terms.values())
    assert infos["agent_0"]["battle_won"] == 0.0 and env.agents == []


def test_reset_seed_uses_reseed_hook_or_warns_once() -> None:
    env = SMACParallelEnv(ReseedableStandIn(seed=0))
    first, _ = env.reset(seed=5)
    env.reset(seed=6)
    again, _ = env.reset(seed=5)
    np.testing.assert_array_equal(first["agent_0"], again["agent_0"])

    plain = adapter()
    with pytest.warns(UserWarning, match="only be seeded when it is constructed"):
        plain.reset(seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plain.reset(seed=4)  # warned once only


def test_joint_env_over_smac_adapter() -> None:
    joint = JointEnv(adapter(n_agents=2, n_enemies=1, enemy_damage=1.0, ally_damage=0.1), "mean")
    obs, info = joint.reset()
    assert info["battle_won"] == 0.0 and info["n_alive"] == 2
    obs, reward, _terminated, _truncated, info = joint.step(np.array([STOP, attack(0)]))
    assert reward == pytest.approx(0.1)  # the mean of a shared reward is that reward
    assert info["n_alive"] == 1 and info["dead_allies"] == 1.0
    np.testing.assert_array_equal(obs["alive"], [0, 1])
    np.testing.assert_array_equal(obs["mask"][0], [1, 0, 0, 0, 0, 0, 0])


def test_wrapped_object_must_have_the_starcraft2env_api() -> None:
    with pytest.raises(TypeError, match="get_avail_actions"):
        SMACParallelEnv(types.SimpleNamespace(get_env_info=dict, reset=None))

    class BadInfo(StandInStarCraft2Env):
        def get_env_info(self):
            return {**super().get_env_info(), "n_actions": 0}

    with pytest.raises(ValueError, match="n_actions"):
        SMACParallelEnv(BadInfo())


# ------------------------------------------------------------------ win rate in training logs
# 2 agents vs 1 enemy: a win adds 1 to the damage dealt (at most 1), so return >= 2 <=> win
STANDIN_KWARGS = {
    "n_agents": 2,
    "n_enemies": 1,
    "ally_damage": 0.5,
    "enemy_damage": 0.25,
    "episode_limit": 6,
}


@pytest.fixture
def standin_adapter(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(adapters, "_registry", AdapterRegistry(dict(BUILTIN_ADAPTERS)))
    register_adapter("smac-standin", lambda **kw: SMACParallelEnv(ReseedableStandIn(**kw)))
    return "smac-standin"


@pytest.fixture
def standin_cfg(config_with):
    """``standin_cfg(adapter_name, **training)``: a tiny run on the SMAC stand-in."""

    def _standin_cfg(adapter_name: str, **training):
        return config_with(
            {
                "env": {
                    "adapter": adapter_name,
                    "kwargs": STANDIN_KWARGS,
                    "reward_aggregation": "mean",
                    "num_train_envs": 2,
                    "num_test_envs": 2,
                },
                "replay": {"capacity_episodes": 50, "batch_episodes": 4, "warmup_episodes": 4},
                "network": {"hidden_dim": 16},
            },
            training={"progress": False, "test_episodes": 6, **training},
        )

    return _standin_cfg


def test_win_rate_is_the_fraction_of_test_episodes_won(standin_cfg, standin_adapter: str) -> None:
    run = build_run(standin_cfg(standin_adapter))
    run.policy.set_eps_inference(1.0)  # random available actions: some wins, some losses
    try:
        run.test_collector.reset()
        stats = run.test_collector.collect(n_episode=24)
        won = [float(r >= 2.0) for r in stats.returns]
        assert run.test_metrics.values["battle_won"] == won
        assert 0 < sum(won) < len(won)
        means = run.test_metrics.pop_means()
        assert means["win_rate"] == pytest.approx(np.mean(won))
        assert means["dead_enemies"] == pytest.approx(np.mean(won))  # one enemy: dead <=> won
        assert run.test_metrics.pop_means() == {}  # popped
        greedy_return(run, 4)
        assert len(run.test_metrics.values["battle_won"]) >= 4
    finally:
        run.close()


def test_training_logs_win_rate(standin_cfg, standin_adapter: str, tmp_path: Path) -> None:
    cfg = standin_cfg(standin_adapter, total_steps=300, test_interval=150, steps_per_update=20)
    result = train(cfg, tmp_path)
    assert 0.0 <= result.final_metrics["win_rate"] <= 1.0
    with (tmp_path / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    tests = [r for r in rows if r["scope"] == "test" and r["metric"] == "win_rate"]
    assert len(tests) == len(result.test_history) >= 2
    assert any(r["scope"] == "final" and r["metric"] == "win_rate" for r in rows)


# ------------------------------------------------------------------ make_smac_env / registry
@pytest.fixture
def fake_smac_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``smac.env.StarCraft2Env`` resolve to the stand-in (for the factory's plumbing)."""
    smac = types.ModuleType("smac")
    env_module = types.ModuleType("smac.env")
    env_module.StarCraft2Env = StandInStarCraft2Env
    smac.env = env_module
    monkeypatch.setitem(sys.modules, "smac", smac)
    monkeypatch.setitem(sys.modules, "smac.env", env_module)


def test_factory_passes_map_and_seed(fake_smac_package, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SC2PATH", str(tmp_path))
    env = make_env("smac", map_name="3m", seed=7, n_agents=2)
    assert isinstance(env, SMACParallelEnv)
    assert env.env.map_name == "3m" and env.env.seed() == 7 and env.n_agents == 2


def test_factory_reports_missing_starcraft(fake_smac_package, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SC2PATH", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="StarCraft II not found.*SC2PATH"):
        make_smac_env("3m")


def test_factory_reports_missing_smac_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "smac", None)
    monkeypatch.setitem(sys.modules, "smac.env", None)
    with pytest.raises(ImportError, match="git\\+https://github.com/oxwhirl/smac.git.*SMAC3"):
        make_smac_env("3m")
    with pytest.raises(ValueError, match="version"):
        make_smac_env("3m", version="smac3")
