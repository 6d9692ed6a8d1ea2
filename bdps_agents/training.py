"""From a config to a trained checkpoint, with Tianshou's own Collector and OffPolicyTrainer.

``build_run`` wires the pieces (vector envs, policy, algorithm, replay, collectors); ``train``
runs them and writes TensorBoard + CSV logs, a learning-curve PNG and a checkpoint; ``evaluate``
reloads a checkpoint and plays greedy episodes.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tianshou.algorithm.algorithm_base import policy_within_training_step
from tianshou.algorithm.optim import AdamOptimizerFactory
from tianshou.data import Collector
from tianshou.env import BaseVectorEnv, DummyVectorEnv, SubprocVectorEnv
from tianshou.trainer import OffPolicyTrainerParams

from bdps_agents.bdps import BDPS, BDPSPolicy
from bdps_agents.config import ConfigError, EnvConfig, ExperimentConfig, build_config
from bdps_agents.exploration import LinearSchedule
from bdps_agents.joint_env import JointEnv
from bdps_agents.networks import GroupSelector, RecurrentAgent, RoleSelector, make_mixer
from bdps_agents.policy import AgentInputs, MultiAgentQPolicy
from bdps_agents.qmix import QMIX
from bdps_agents.replay import EpisodeReplayBuffer
from bdps_agents.run_logger import RunLogger, plot_learning_curve


def make_joint(env_cfg: EnvConfig) -> JointEnv:
    """One joint env from the config (called inside vector-env workers)."""
    from bdps_agents.adapters import make_env

    return JointEnv(make_env(env_cfg.adapter, **env_cfg.kwargs), env_cfg.reward_aggregation)


def _worker_env(env_cfg: EnvConfig) -> JointEnv:
    torch.set_num_threads(1)  # tiny nets and envs: extra threads only contend for the 2 cores
    return make_joint(env_cfg)


def make_vector_env(env_cfg: EnvConfig, num: int, seed: int) -> BaseVectorEnv:
    fns = [lambda c=env_cfg: _worker_env(c) for _ in range(num)]
    if env_cfg.vector_env == "subproc":
        # a forked copy of a process whose jax runtime is running (e.g. SMAX was probed here)
        # can deadlock inside jax: start fresh interpreters then
        context = "spawn" if "jax" in sys.modules else None
        venv: BaseVectorEnv = SubprocVectorEnv(fns, context=context)
    else:
        venv = DummyVectorEnv(fns)
    venv.seed(seed)
    return venv


@dataclass
class EnvSpec:
    """Sizes read off one joint env."""

    n_agents: int
    n_actions: int
    obs_dim: int
    state_dim: int
    episode_limit: int | None
    observation_space: Any = field(repr=False)
    action_space: Any = field(repr=False)

    @classmethod
    def of(cls, env: JointEnv) -> EnvSpec:
        return cls(
            env.n_agents,
            env.n_actions,
            env.obs_dim,
            env.state_dim,
            env.episode_limit,
            env.observation_space,
            env.action_space,
        )


def build_policy(cfg: ExperimentConfig, spec: EnvSpec) -> MultiAgentQPolicy:
    """QMIX policy for ``full``/``none`` sharing, BDPS policy for ``individual``/``bilevel``."""
    net, b = cfg.network, cfg.bdps
    inputs = AgentInputs(
        spec.n_agents, spec.obs_dim, spec.n_actions, net.last_action_input, net.agent_id_input
    )
    groups = {"full": 1, "none": spec.n_agents}.get(net.sharing, b.n_roles)
    common = {
        "agent": RecurrentAgent(inputs.dim, spec.n_actions, net.hidden_dim, groups=groups),
        "inputs": inputs,
        "action_space": spec.action_space,
        "observation_space": spec.observation_space,
        "eps_training": cfg.exploration.eps_start,
        "eps_inference": cfg.exploration.eps_test,
        "seed": cfg.training.seed,
    }
    if not cfg.uses_selectors:
        return MultiAgentQPolicy(**common)
    role_selector = RoleSelector(
        spec.n_actions, b.n_roles, b.role_interval, b.role_gru_dim, b.vae_hidden_dim
    )
    bilevel = {}
    if net.sharing == "bilevel":
        bilevel = {
            # group networks also read the role network's hidden state h^U (Sec. 3.2)
            "group_agent": RecurrentAgent(
                inputs.dim + net.hidden_dim, spec.n_actions, net.hidden_dim, groups=b.n_groups
            ),
            "group_selector": GroupSelector(
                b.n_roles, b.n_groups, b.group_embed_dim, b.gat_dim, b.group_gru_dim
            ),
            "group_interval": b.group_interval,
        }
    return BDPSPolicy(
        **common, role_selector=role_selector, role_interval=b.role_interval, **bilevel
    )


def build_algorithm(cfg: ExperimentConfig, spec: EnvSpec) -> QMIX:
    """QMIX (``full``/``none``) or BDPS (``individual``/``bilevel``) with its policy."""
    cfg.check_env(spec.n_agents, spec.episode_limit)
    net, alg = cfg.network, cfg.algorithm
    policy = build_policy(cfg, spec)

    def mixer():
        return make_mixer(
            net.mixer, spec.n_agents, spec.state_dim, net.mixing_embed_dim, net.hypernet_hidden_dim
        )

    common = {
        "policy": policy,
        "mixer": mixer(),
        "optim": AdamOptimizerFactory(lr=alg.lr),
        "gamma": alg.gamma,
        "td_lambda": alg.td_lambda,
        "double_q": alg.double_q,
        "target_update_interval": alg.target_update_interval,
        "max_grad_norm": alg.max_grad_norm,
        "reward_scale": alg.reward_scale,
    }
    if not cfg.uses_selectors:
        return QMIX(**common)
    b = cfg.bdps
    return BDPS(
        **common,
        group_mixer=mixer() if net.sharing == "bilevel" else None,
        kl_weight=b.kl_weight,
        role_loss_weight=b.role_loss_weight,
        group_loss_weight=b.group_loss_weight,
    )


# Episode metrics logged under another name: the mean of SMAC's final battle_won is the win rate.
EPISODE_METRIC_NAMES = {"battle_won": "win_rate"}


class EpisodeMetrics:
    """A Collector ``on_episode_done_hook`` that keeps each finished episode's final value of the
    env's ``metric_keys`` (read from the last step's info), e.g. SMAC's ``battle_won``."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        self.keys = keys
        self.values: dict[str, list[float]] = {key: [] for key in keys}

    def __call__(self, episode: Any) -> None:
        for key in self.keys:
            self.values[key].append(float(episode.info[key][-1]))
        return None  # nothing added to the buffer

    def pop_means(self) -> dict[str, float]:
        """Mean per metric (named by ``EPISODE_METRIC_NAMES``) since the last call; clears."""
        means = {
            EPISODE_METRIC_NAMES.get(key, key): float(np.mean(values))
            for key, values in self.values.items()
            if values
        }
        for values in self.values.values():
            values.clear()
        return means


@dataclass
class Run:
    cfg: ExperimentConfig
    spec: EnvSpec
    algorithm: QMIX
    buffer: EpisodeReplayBuffer
    train_envs: BaseVectorEnv
    test_envs: BaseVectorEnv
    train_collector: Collector
    test_collector: Collector
    schedule: LinearSchedule
    test_metrics: EpisodeMetrics

    @property
    def policy(self) -> MultiAgentQPolicy:
        return self.algorithm.policy

    def close(self) -> None:
        self.train_envs.close()
        self.test_envs.close()


def seed_everything(seed: int) -> None:
    np.random.seed(seed)
    torch.manual_seed(seed)


def replay_bytes_per_step(spec: EnvSpec) -> int:
    """Approximate bytes one stored env step takes in the replay buffer: the joint observation
    (obs, state, mask, alive), the joint action, reward, flags and a few info scalars."""
    obs = sum(int(np.prod(sp.shape)) * sp.dtype.itemsize for sp in spec.observation_space.values())
    return obs + 8 * spec.n_agents + 64


def check_replay_memory(capacity_episodes: int, episode_limit: int, spec: EnvSpec) -> None:
    """Refuse a replay buffer that cannot fit in this machine's memory (Tianshou allocates it
    in full on the first write, so the run would die later, or swap)."""
    need = capacity_episodes * episode_limit * replay_bytes_per_step(spec)
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not POSIX: no check
        return
    if need > 0.75 * total:
        fits = int(0.75 * total / (episode_limit * replay_bytes_per_step(spec)))
        raise ConfigError(
            f"replay.capacity_episodes={capacity_episodes} needs about {need / 2**30:.1f} GiB "
            f"({capacity_episodes} episodes x {episode_limit} steps x "
            f"{replay_bytes_per_step(spec)} bytes per step) but this machine has "
            f"{total / 2**30:.1f} GiB; at most {fits} episodes fit in 75% of it"
        )


def build_run(cfg: ExperimentConfig) -> Run:
    tc = cfg.training
    torch.set_num_threads(tc.torch_threads)
    seed_everything(tc.seed)
    probe = make_joint(cfg.env)
    spec = EnvSpec.of(probe)
    metric_keys = probe.metric_keys
    probe.close()
    limit = spec.episode_limit or 1000
    if cfg.replay.capacity_episodes < cfg.env.num_train_envs:
        raise ConfigError(
            f"replay.capacity_episodes ({cfg.replay.capacity_episodes}) must be >= "
            f"env.num_train_envs ({cfg.env.num_train_envs}): each env writes its own sub-buffer"
        )
    check_replay_memory(cfg.replay.capacity_episodes, limit, spec)
    algorithm = build_algorithm(cfg, spec)
    buffer = EpisodeReplayBuffer(
        cfg.replay.capacity_episodes * limit, cfg.env.num_train_envs, seed=tc.seed
    )
    train_envs = make_vector_env(cfg.env, cfg.env.num_train_envs, tc.seed)
    test_envs = make_vector_env(cfg.env, cfg.env.num_test_envs, tc.seed + 10_000)
    ex = cfg.exploration
    test_metrics = EpisodeMetrics(metric_keys)
    return Run(
        cfg=cfg,
        spec=spec,
        algorithm=algorithm,
        buffer=buffer,
        train_envs=train_envs,
        test_envs=test_envs,
        train_collector=Collector(algorithm.policy, train_envs, buffer),
        test_collector=Collector(algorithm.policy, test_envs, on_episode_done_hook=test_metrics),
        schedule=LinearSchedule(ex.eps_start, ex.eps_end, ex.anneal_steps),
        test_metrics=test_metrics,
    )


@dataclass
class TrainResult:
    logdir: Path
    checkpoint: Path
    env_steps: int
    final_greedy_return: float
    test_history: list[tuple[int, float, float]]
    steps_per_second: float
    final_metrics: dict[str, float] = field(default_factory=dict)  # e.g. win_rate


def save_checkpoint(path: Path, run: Run, env_step: int) -> None:
    torch.save(
        {
            "config": run.cfg.model_dump(mode="json"),
            "algorithm": run.algorithm.state_dict(),
            "env_step": env_step,
            "num_updates": run.algorithm.num_updates,
        },
        path,
    )


def greedy_return(run: Run, episodes: int) -> tuple[float, float]:
    """Mean and std of the team return over greedy (ε = eps_test) test episodes.

    The episodes' metric means (e.g. ``win_rate``) wait in ``run.test_metrics.pop_means()``.
    """
    run.test_metrics.pop_means()  # drop values from episodes collected before this call
    run.test_collector.reset()
    stats = run.test_collector.collect(n_episode=episodes)
    return float(np.mean(stats.returns)), float(np.std(stats.returns))


def train(cfg: ExperimentConfig, logdir: str | Path | None = None) -> TrainResult:
    tc = cfg.training
    logdir = Path(logdir or Path(tc.logdir) / f"{cfg.scenario.replace('/', '_')}-seed{tc.seed}")
    logdir.mkdir(parents=True, exist_ok=True)
    (logdir / "config.json").write_text(json.dumps(cfg.model_dump(mode="json"), indent=2))
    run = build_run(cfg)
    policy = run.policy
    logger = RunLogger(
        logdir,
        tc.total_steps,
        eps_fn=run.schedule,
        progress=tc.progress,
        training_interval=tc.log_interval,
        update_interval=max(1, tc.log_interval // tc.steps_per_update),  # counted in updates
        test_metrics_fn=run.test_metrics.pop_means,
    )

    # warm-up with uniformly random *available* actions (collect(random=True) ignores masks)
    with policy_within_training_step(policy):
        policy.set_eps_training(1.0)
        run.train_collector.reset()
        warm = run.train_collector.collect(n_episode=cfg.replay.warmup_episodes)
    logger.step_offset = warm.n_collected_steps

    def training_fn(epoch: int, env_step: int) -> None:
        policy.set_eps_training(run.schedule(env_step))

    # one gradient step per collect step; collect whole vector steps (a multiple of the env
    # count), so steps_per_update is rounded up to that multiple
    n_envs = cfg.env.num_train_envs
    steps_per_collect = -(-tc.steps_per_update // n_envs) * n_envs
    epoch_steps = tc.test_interval
    start = time.time()
    run.algorithm.run_training(
        OffPolicyTrainerParams(
            training_collector=run.train_collector,
            test_collector=run.test_collector,
            max_epochs=max(1, -(-tc.total_steps // epoch_steps)),
            epoch_num_steps=epoch_steps,
            collection_step_num_env_steps=steps_per_collect,
            update_step_num_gradient_steps_per_sample=1.0 / steps_per_collect,
            batch_size=cfg.replay.batch_episodes,
            test_step_num_episodes=tc.test_episodes,
            training_fn=training_fn,
            logger=logger,
            verbose=False,
            show_progress=False,
            test_in_training=False,
        )
    )
    elapsed = time.time() - start
    env_steps = logger.env_steps + warm.n_collected_steps
    final_mean, _ = greedy_return(run, tc.test_episodes)  # fresh episodes, after training
    final_metrics = run.test_metrics.pop_means()
    logger.log_metric("final", env_steps, "greedy_return", final_mean)
    for name, value in final_metrics.items():
        logger.log_metric("final", env_steps, name, value)
    checkpoint = logdir / "checkpoint.pt"
    save_checkpoint(checkpoint, run, env_steps)
    title = f"{cfg.scenario} ({cfg.network.sharing} sharing, seed {tc.seed})"
    plot_learning_curve(logger.test_history, logdir / "learning_curve.png", title, tc.test_episodes)
    steps_per_second = (env_steps - warm.n_collected_steps) / max(elapsed, 1e-9)
    logger.finalize()
    run.close()
    return TrainResult(
        logdir,
        checkpoint,
        env_steps,
        final_mean,
        logger.test_history,
        steps_per_second,
        final_metrics,
    )


def load_checkpoint(path: str | Path) -> tuple[ExperimentConfig, dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    data = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(data, dict) or "config" not in data or "algorithm" not in data:
        raise ValueError(f"{path} is not a bdps-agents checkpoint (no config/algorithm entries)")
    return build_config(data["config"], source=str(path)), data


def evaluate(
    checkpoint: str | Path, episodes: int = 32, seed: int | None = None
) -> dict[str, float]:
    """Greedy episodes with a trained checkpoint: mean/std team return and episode metrics
    (e.g. ``win_rate``)."""
    cfg, data = load_checkpoint(checkpoint)
    if seed is not None:
        cfg.training.seed = seed
    run = build_run(cfg)
    run.algorithm.load_state_dict(data["algorithm"])
    mean, std = greedy_return(run, episodes)
    metrics = run.test_metrics.pop_means()
    run.close()
    return {"episodes": episodes, "return_mean": mean, "return_std": std, **metrics}
