"""QMIX and BDPS inside a plain Tianshou pipeline (issue 18): replay that never splices episodes,
the public warm-up and builder, constructors that check sizes and Def. 1, defaults equal to the
config's, and a ``state_dict`` that resumes a hand-built pipeline exactly."""

from __future__ import annotations

import inspect
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from mpe2 import simple_spread_v3
from tianshou.algorithm.algorithm_base import policy_within_training_step
from tianshou.data import Collector
from tianshou.env import DummyVectorEnv
from tianshou.trainer import OffPolicyTrainerParams

from bdps_agents import config as config_module
from bdps_agents.adapters import make_env
from bdps_agents.algorithms.bdps.learner import BDPS
from bdps_agents.algorithms.bdps.policy import BDPSPolicy
from bdps_agents.algorithms.qmix.algorithm import QMIX
from bdps_agents.config import ConfigError, ExperimentConfig
from bdps_agents.joint_env import JointEnv
from bdps_agents.networks import GroupSelector, QMixer, RecurrentAgent, RoleSelector
from bdps_agents.pipeline import EpisodeMetrics, Learner, build_learner, warmup
from bdps_agents.policy import AgentInputs, MultiAgentQPolicy

SPREAD_STEPS = 25  # simple_spread episodes always last max_cycles steps
N_ENVS = 4
SMALL = {"replay": {"capacity_episodes": 64}}


def spread_env() -> JointEnv:
    return JointEnv(simple_spread_v3.parallel_env(N=3, max_cycles=SPREAD_STEPS))


def spread_learner(algo: str, **sections) -> Learner:
    return build_learner(spread_env(), algo, num_envs=N_ENVS, seed=0, **{**SMALL, **sections})


def spread_collector(learner: Learner, n: int = N_ENVS) -> Collector:
    envs = DummyVectorEnv([spread_env] * n)
    envs.seed(0)
    return Collector(learner.policy, envs, learner.buffer)


def stored_lengths(learner: Learner) -> np.ndarray:
    buffer = learner.buffer
    return buffer._episode_len[buffer.sample_indices(0)].astype(int)


# -- replay never splices ------------------------------------------------------------------------
@pytest.mark.parametrize("algo", ["qmix", "bdps"])
def test_an_episode_cut_by_a_collector_reset_is_discarded(algo):
    learner = spread_learner(algo)
    collector = spread_collector(learner)
    collector.reset()
    collector.collect(n_step=7 * N_ENVS)  # 7 steps into every env's first episode
    collector.reset(reset_buffer=False)  # new episodes, old steps kept
    stats = collector.collect(n_episode=N_ENVS)
    assert (stats.lens == SPREAD_STEPS).all()  # the Collector's own statistics, too
    assert learner.buffer.num_episodes == N_ENVS
    assert (stored_lengths(learner) == SPREAD_STEPS).all()  # was 32 = 7 + 25
    assert learner.buffer.interrupted_episodes == N_ENVS
    # what is replayed starts at the reset: its first observation is the episode's first
    batch = learner.buffer.episode_batch(learner.buffer.sample_indices(0))
    assert batch.valid.all()
    assert (batch.policy.get("role", np.zeros(1)) >= 0).all()


def test_an_episode_whose_start_was_cleared_is_not_replayed():
    learner = spread_learner("qmix")
    collector = spread_collector(learner)
    collector.reset()
    collector.collect(n_step=7 * N_ENVS)
    collector.reset_buffer()  # the envs go on mid-episode, their first 7 steps are gone
    collector.collect(n_episode=N_ENVS)  # the rest of those episodes: no start, not replayable
    assert learner.buffer.num_episodes == 0
    collector.collect(n_episode=N_ENVS)
    assert learner.buffer.num_episodes == N_ENVS
    assert (stored_lengths(learner) == SPREAD_STEPS).all()


@pytest.mark.parametrize("algo", ["qmix", "bdps"])
def test_two_run_training_calls_on_one_buffer_store_whole_episodes(algo):
    learner = spread_learner(algo, replay={"capacity_episodes": 64, "batch_episodes": 4})
    collector = spread_collector(learner)
    warmup(collector, n_episode=N_ENVS)
    params = OffPolicyTrainerParams(
        training_collector=collector,
        max_epochs=1,
        epoch_num_steps=60,  # not a multiple of 25: each run stops mid-episode
        collection_step_num_env_steps=20,
        update_step_num_gradient_steps_per_sample=1 / 20,
        batch_size=4,
        verbose=False,
        show_progress=False,
    )
    learner.algorithm.run_training(params)
    learner.algorithm.run_training(params)  # resets the collector, keeps the buffer
    assert learner.algorithm.num_updates > 0
    assert learner.buffer.interrupted_episodes >= N_ENVS
    assert (stored_lengths(learner) == SPREAD_STEPS).all()


# -- prefills ------------------------------------------------------------------------------------
def test_warmup_stores_roles_and_groups_and_plays_only_available_actions():
    env_kwargs = {"task": "8x8-2p-2f"}
    learner = build_learner(
        JointEnv(make_env("lbf", **env_kwargs)), "bdps", num_envs=2, seed=0, **SMALL
    )
    learner.policy.set_eps_training(0.3)
    # JointEnv refuses an unavailable action with a ValueError: a masked prefill raises none
    envs = DummyVectorEnv([lambda: JointEnv(make_env("lbf", **env_kwargs))] * 2)
    stats = warmup(Collector(learner.policy, envs, learner.buffer), n_episode=4)
    assert stats.n_collected_episodes >= 4
    assert learner.policy.eps_training == 0.3  # restored
    assert {"role", "group"} <= set(learner.buffer._meta.policy.get_keys())
    starts = learner.buffer.sample_indices(0)
    batch = learner.buffer.episode_batch(starts)
    roles = batch.policy.role[batch.valid]
    assert set(np.unique(roles).tolist()) == {0, 1}  # t = 0: agent i in role i mod k


def test_random_collection_is_refused_next_to_bdps_steps_and_by_the_bdps_learner():
    learner = spread_learner("bdps")
    collector = spread_collector(learner)
    collector.reset()
    collector.collect(n_episode=N_ENVS, random=True)  # no roles or groups stored
    with (
        pytest.raises(ValueError, match="no stored role and group"),
        policy_within_training_step(learner.policy),
    ):
        learner.algorithm.update(learner.buffer, 4)
    collector.reset(reset_buffer=False)
    with pytest.raises(ValueError, match=r"random=True.*warmup"):
        collector.collect(n_episode=N_ENVS)  # BDPS steps next to steps without assignments

    learner = spread_learner("bdps")
    collector = spread_collector(learner)
    warmup(collector, n_episode=N_ENVS)
    with pytest.raises(ValueError, match=r"random=True.*warmup"):
        collector.collect(n_step=N_ENVS, random=True)


# -- the builder and the constructors ------------------------------------------------------------
def test_build_learner_takes_config_sections_and_names_bad_ones():
    learner = spread_learner("bdps", bdps={"n_roles": 3, "role_interval": 4})
    assert learner.policy.role_selector.n_roles == 3 and learner.policy.role_interval == 4
    assert learner.config.network.sharing == "roles" and learner.buffer.buffer_num == N_ENVS
    assert isinstance(spread_learner("qmix").algorithm, QMIX)
    assert not spread_learner("bdps", bdps={"levels": 1}).policy.bilevel
    with pytest.raises(ConfigError, match="bdps.n_rolez"):
        spread_learner("bdps", bdps={"n_rolez": 3})
    with pytest.raises(ConfigError, match=r"bdps.role_interval \(T_U\) = 30 .* below .* \(25\)"):
        spread_learner("bdps", bdps={"role_interval": 30})
    with pytest.raises(ConfigError, match="roles is not a mode of algorithm 'qmix'"):
        spread_learner("qmix", network={"sharing": "roles"})
    with pytest.raises(ConfigError, match="bilevel .BDPS. contradicts algorithm.name=qmix"):
        spread_learner("qmix", network={"sharing": "bilevel"})  # the old spelling of BDPS
    with pytest.raises(TypeError, match="unknown config section"):
        spread_learner("bdps", bpds={"n_roles": 3})
    with pytest.raises(TypeError, match="JointEnv"):
        build_learner(simple_spread_v3.parallel_env(N=3), "bdps")


def test_joint_env_reads_the_episode_length_of_pettingzoo_envs():
    assert spread_env().episode_limit == SPREAD_STEPS  # max_cycles of the unwrapped env
    env = JointEnv(simple_spread_v3.parallel_env(N=3, max_cycles=25), episode_limit=40)
    assert env.episode_limit == 40
    with pytest.raises(ValueError, match="episode_limit must be an integer >= 1"):
        JointEnv(simple_spread_v3.parallel_env(N=3), episode_limit=0)


N, OBS, A, H = 3, 5, 4, 8
D = OBS + A + N  # agent input: observation, last action, id


def _bdps_parts(**change):
    """Keyword arguments of a valid bilevel BDPSPolicy (k = 3, m = 2, T_U = 2, T_V = 4),
    with ``change`` applied."""
    inputs = AgentInputs(N, OBS, A, last_action=True, agent_id=True)
    parts = {
        "agent": RecurrentAgent(inputs.dim, A, H, groups=3),
        "inputs": inputs,
        "action_space": gym.spaces.MultiDiscrete([A] * N),
        "role_selector": RoleSelector(A, 3, 2),
        "role_interval": 2,
        "group_agent": RecurrentAgent(inputs.dim + H, A, H, groups=2),
        "group_selector": GroupSelector(3, 2),
        "group_interval": 4,
        "episode_limit": 20,
        "seed": 0,
    }
    parts.update(change)
    return parts


def test_a_consistent_bdps_policy_builds():
    policy = BDPSPolicy(**_bdps_parts())
    assert policy.bilevel and policy.episode_limit == 20


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"agent": RecurrentAgent(D, A, H, groups=2)}, r"2 role networks .*n_roles is k=3"),
        ({"group_agent": RecurrentAgent(D + H, A, H, groups=3)}, r"3 group networks .* m=2"),
        ({"group_agent": RecurrentAgent(D + H, A, H, groups=1)}, r"1 group networks .* m=2"),
        ({"role_selector": RoleSelector(A, 3, 3)}, r"role_selector.window \(3\) .* T_U \(2\)"),
        ({"group_agent": RecurrentAgent(D, A, H, groups=2)}, r"group_agent.input_dim \(12\)"),
        ({"agent": RecurrentAgent(19, A, H, groups=3)}, r"agent.input_dim \(19\)"),
        ({"group_selector": GroupSelector(2, 2)}, r"group_selector.n_roles \(2\)"),
        ({"group_interval": 5}, r"multiple e\*T_U"),
        ({"group_interval": None}, "go together"),
        ({"episode_limit": 4}, r"group_interval \(T_V\) = 4 must be below .* \(4\)"),
        ({"episode_limit": 2}, r"role_interval \(T_U\) = 2 must be below"),
        ({"action_space": gym.spaces.MultiDiscrete([A] * 2)}, "action_space must be"),
        ({"role_selector": RoleSelector(5, 3, 2)}, r"role_selector.n_actions \(5\)"),
    ],
)
def test_bdps_policy_names_the_inconsistent_argument(change, message):
    with pytest.raises(ValueError, match=message):
        BDPSPolicy(**_bdps_parts(**change))


def test_definition_1_n_ge_k_ge_m_ge_2():
    inputs = AgentInputs(2, OBS, A, last_action=True, agent_id=True)
    with pytest.raises(ValueError, match=r"role_selector.n_roles \(k=3\) exceeds .* \(n=2\)"):
        BDPSPolicy(
            **_bdps_parts(
                inputs=inputs,
                agent=RecurrentAgent(inputs.dim, A, H, groups=3),
                group_agent=RecurrentAgent(inputs.dim + H, A, H, groups=2),
                action_space=gym.spaces.MultiDiscrete([A] * 2),
            )
        )
    with pytest.raises(ValueError, match=r"group_selector.n_groups \(m=4\) exceeds"):
        BDPSPolicy(
            **_bdps_parts(
                group_selector=GroupSelector(3, 4),
                group_agent=RecurrentAgent(D + H, A, H, groups=4),
            )
        )


def test_an_unknown_episode_length_is_stated():
    with pytest.warns(UserWarning, match="episode length is unknown"):
        BDPSPolicy(**_bdps_parts(episode_limit=None))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        BDPSPolicy(**_bdps_parts())  # known: checked, nothing to state


def test_qmix_parts_are_checked():
    inputs = AgentInputs(N, OBS, A, last_action=True, agent_id=True)
    space = gym.spaces.MultiDiscrete([A] * N)
    with pytest.raises(ValueError, match=r"agent.groups = 2"):
        MultiAgentQPolicy(
            agent=RecurrentAgent(inputs.dim, A, groups=2), inputs=inputs, action_space=space
        )
    with pytest.raises(ValueError, match=r"agent.n_actions \(5\)"):
        MultiAgentQPolicy(agent=RecurrentAgent(inputs.dim, 5), inputs=inputs, action_space=space)
    policy = MultiAgentQPolicy(
        agent=RecurrentAgent(inputs.dim, A), inputs=inputs, action_space=space
    )
    with pytest.raises(ValueError, match=r"mixer.n_agents \(2\)"):
        QMIX(policy=policy, mixer=QMixer(2, 10))
    bdps = BDPSPolicy(**_bdps_parts())
    with pytest.raises(ValueError, match=r"group_mixer.n_agents \(4\)"):
        BDPS(policy=bdps, mixer=QMixer(N, 10), group_mixer=QMixer(4, 10))


# -- defaults and state ------------------------------------------------------------------------
# constructor argument -> the config field with the same meaning
DEFAULTS = {
    QMIX: {
        "gamma": "algorithm.gamma",
        "td_lambda": "algorithm.td_lambda",
        "double_q": "algorithm.double_q",
        "target_update_interval": "algorithm.target_update_interval",
        "max_grad_norm": "algorithm.max_grad_norm",
        "reward_scale": "algorithm.reward_scale",
    },
    BDPS: {
        "kl_weight": "bdps.kl_weight",
        "role_loss_weight": "bdps.role_loss_weight",
        "group_loss_weight": "bdps.group_loss_weight",
    },
    BDPSPolicy: {
        "sample_roles_at_test": "bdps.sample_roles_at_test",
        "group_input": "bdps.group_selector_input",
    },
    MultiAgentQPolicy: {
        "eps_training": "exploration.eps_start",
        "eps_inference": "exploration.eps_test",
    },
    RecurrentAgent: {"hidden_dim": "network.hidden_dim"},
    RoleSelector: {
        "hidden_dim": "bdps.role_gru_dim",
        "vae_hidden_dim": "bdps.vae_hidden_dim",
        "standardize": "bdps.standardize_advantages",
    },
    GroupSelector: {
        "embed_dim": "bdps.group_embed_dim",
        "gat_dim": "bdps.gat_dim",
        "hidden_dim": "bdps.group_gru_dim",
    },
    QMixer: {
        "embed_dim": "network.mixing_embed_dim",
        "hypernet_dim": "network.hypernet_hidden_dim",
    },
}


@pytest.mark.parametrize("cls", list(DEFAULTS), ids=lambda c: c.__name__)
def test_constructor_defaults_equal_the_config_defaults(cls):
    defaults = ExperimentConfig()
    params = inspect.signature(cls.__init__).parameters
    for arg, field in DEFAULTS[cls].items():
        section, name = field.split(".")
        options = (
            getattr(defaults, section)
            if section in ExperimentConfig.model_fields
            else defaults.section(section)  # an algorithm's own section
        )
        assert params[arg].default == getattr(options, name), (cls, arg)
    assert config_module.AlgorithmConfig().lr == 5e-4  # QMIX's default Adam(lr=5e-4)


def _fill_and_update(learner: Learner, updates: int) -> None:
    collector = spread_collector(learner)
    warmup(collector, n_episode=8)
    with policy_within_training_step(learner.policy):
        learner.policy.set_eps_training(0.5)
        collector.collect(n_step=40)
    with policy_within_training_step(learner.policy):
        for _ in range(updates):
            learner.algorithm.update(learner.buffer, 4)


def test_state_dict_resumes_a_hand_built_pipeline_exactly():
    learner = spread_learner("bdps", algorithm={"target_update_interval": 3})
    _fill_and_update(learner, 5)
    state = learner.state_dict()
    assert state["algorithm"]["_extra_state"]["num_updates"] == 5
    other = build_learner(
        spread_env(),
        "bdps",
        num_envs=N_ENVS,
        seed=1,
        **SMALL,
        algorithm={"target_update_interval": 3},
    )
    other.algorithm.load_state_dict(dict(state["algorithm"]))
    assert other.algorithm.num_updates == 5  # the next target copy comes after update 6
    # the same random draws from here on: exploration and role sampling
    assert np.array_equal(learner.policy.rng.random(5), other.policy.rng.random(5))
    a = torch.rand(3, generator=learner.policy.torch_rng)
    assert torch.equal(a, torch.rand(3, generator=other.policy.torch_rng))
    restored = Learner.from_state_dict(spread_env(), state)
    assert restored.algorithm.num_updates == 5 and restored.config == learner.config


def test_a_state_dict_without_the_extra_state_still_loads():
    learner = spread_learner("qmix")
    state = learner.algorithm.state_dict()
    del state["_extra_state"]  # as written before it existed
    spread_learner("qmix").algorithm.load_state_dict(state)


def test_an_unseeded_bdps_policy_draws_fresh_role_noise():
    first = BDPSPolicy(**_bdps_parts(seed=None))
    second = BDPSPolicy(**_bdps_parts(seed=None))
    draw = torch.rand(4, generator=first.torch_rng)
    assert not torch.equal(draw, torch.rand(4, generator=second.torch_rng))
    seeded = [BDPSPolicy(**_bdps_parts(seed=3)) for _ in range(2)]
    assert torch.equal(*(torch.rand(4, generator=p.torch_rng) for p in seeded))


def test_group_loss_follows_double_q():
    learner = spread_learner("bdps")
    _fill_and_update(learner, 0)
    batch = learner.buffer.episode_batch(learner.buffer.sample_indices(4))
    alg = learner.algorithm

    def group_loss(double_q: bool) -> float:
        alg.double_q = double_q
        ep = alg.episode_tensors(batch)
        return float(alg.group_loss(ep, alg.agent_q_values(ep))[0].detach())

    assert group_loss(True) == pytest.approx(group_loss(False))  # target = online
    head = alg.target_group_selector.module.head
    with torch.no_grad():  # the target ranks groups the other way round: other choices
        head.weight.neg_()
        head.bias.neg_()
    assert group_loss(True) != pytest.approx(group_loss(False))


def test_episode_metrics_outside_bdps_train():
    make = lambda: JointEnv(make_env("lbf", task="8x8-2p-2f"))  # noqa: E731
    env = make()
    learner = build_learner(env, "qmix", seed=0, **SMALL)
    metrics = EpisodeMetrics(env.metric_keys, env.metric_names)
    envs = DummyVectorEnv([make] * 2)
    envs.seed(0)
    collector = Collector(learner.policy, envs, on_episode_done_hook=metrics)
    collector.reset()
    collector.collect(n_episode=4)
    means = metrics.pop_means()
    assert set(means) == {"food_collected"} and 0.0 <= means["food_collected"] <= 1.0
    assert metrics.pop_means() == {}


def test_api_misuse_gets_a_message_not_internals(monkeypatch):
    """Issue 33: each of these raised an AttributeError or KeyError from deep inside."""
    with pytest.raises(TypeError, match="config section algorithm must be a dict, got str"):
        spread_learner("qmix", algorithm="x")
    learner = spread_learner("qmix")
    emptied = {"config": learner.state_dict()["config"], "algorithm": {}}
    with pytest.raises(ValueError, match=r"does not fit the networks its config builds.*missing"):
        Learner.from_state_dict(spread_env(), emptied)
    collector = spread_collector(learner, 1)
    for n_episode in (-1, 0):
        with pytest.raises(ValueError, match=rf"warmup needs n_episode >= 1 .*got {n_episode}"):
            warmup(collector, n_episode=n_episode)
    # the CLI refuses a CUDA device this machine lacks; so does the API (no CPU learner whose
    # config says cuda)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"training.device='cuda' but this machine has no CUDA"):
        spread_learner("qmix", training={"device": "cuda"})
