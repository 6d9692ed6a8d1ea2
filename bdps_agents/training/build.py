"""From a config to a :class:`Run`: vector envs, algorithm, replay buffer, collectors.

With ``training.overlap_learning`` the gradient steps run in a child process, and with a
``training.device`` other than the CPU on a copy of the algorithm there
(:mod:`bdps_agents.learner_process`); the run copies that learner back
(:meth:`Run.sync_learner`) before each test and checkpoint and at the end, so tests and
checkpoints see the latest networks, optimiser and update count. Acting is always on the CPU.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tianshou.data import Collector
from tianshou.env import BaseVectorEnv

from bdps_agents.algorithms import build_algorithm
from bdps_agents.algorithms.assignments import ASSIGNMENT_KEYS, distinct_per_env
from bdps_agents.algorithms.value_decomposition import ValueDecomposition
from bdps_agents.config import ConfigError, EnvConfig, ExperimentConfig, default_vector_env
from bdps_agents.device import resolve_device
from bdps_agents.env_spec import EnvSpec
from bdps_agents.exploration import LinearSchedule
from bdps_agents.joint_env import JointEnv
from bdps_agents.learner_process import DeviceLearner, LearnerProcess
from bdps_agents.memory import DEFAULT_EPISODE_SLOTS, check_replay_memory, reuse_freed_memory
from bdps_agents.policy import MultiAgentQPolicy
from bdps_agents.replay import EpisodeReplayBuffer
from bdps_agents.vector_envs import StackedDummyVectorEnv, StackedSubprocVectorEnv

__all__ = [
    "EnvSpec",
    "EpisodeMetrics",
    "Run",
    "build_run",
    "make_joint",
    "make_replay_buffer",
    "make_vector_env",
    "seed_everything",
]


def make_joint(env_cfg: EnvConfig, factory: Callable[..., Any] | None = None) -> JointEnv:
    """One joint env from the config; ``factory`` is the adapter's, if already resolved."""
    from bdps_agents.adapters import adapter_factory, check_parallel_env

    factory = factory or adapter_factory(env_cfg.adapter)
    try:
        made = factory(**env_cfg.kwargs)
    except TypeError as err:  # e.g. a keyword that a pass-through factory hands to a simulator
        raise ConfigError(
            f"env.kwargs {env_cfg.kwargs} do not fit adapter {env_cfg.adapter!r}: {err}"
        ) from err
    env = check_parallel_env(made, env_cfg.adapter)
    joint = JointEnv(env, env_cfg.reward_aggregation)
    joint.source = {
        "adapter": env_cfg.adapter,
        "kwargs": dict(env_cfg.kwargs),
        "reward_aggregation": env_cfg.reward_aggregation,
    }
    return joint


def _worker_env(env_cfg: EnvConfig, factory: Callable[..., Any]) -> JointEnv:
    torch.set_num_threads(1)  # tiny nets and envs: extra threads only contend for the 2 cores
    return make_joint(env_cfg, factory)


def make_vector_env(
    env_cfg: EnvConfig, num: int, seed: int, keep_info: bool = True
) -> BaseVectorEnv:
    """``num`` envs of ``env_cfg`` as the vector env ``env_cfg.vector_env`` names, seeded.

    ``keep_info=False``: ``step`` returns empty ``info`` dicts (for training envs, whose replay
    buffer stores none; see :mod:`bdps_agents.vector_envs`)."""
    from bdps_agents.adapters import adapter_factory

    # resolved here: a worker process (spawned, or a Ray actor) does not see adapters that
    # were registered at run time in this one
    factory = adapter_factory(env_cfg.adapter)
    fns = [lambda c=env_cfg, f=factory: _worker_env(c, f) for _ in range(num)]
    kind: str = env_cfg.vector_env
    if kind == "auto":  # only if set to auto after validation: resolved as validation would
        kind = default_vector_env(env_cfg.adapter)
    if kind == "subproc":
        # a forked copy of a process whose jax runtime is running (e.g. SMAX was probed here)
        # can deadlock inside jax: start fresh interpreters then
        context = "spawn" if "jax" in sys.modules else None
        venv: BaseVectorEnv = StackedSubprocVectorEnv(fns, context=context, keep_info=keep_info)
    elif kind == "ray":
        venv = _ray_vector_env(fns)
    elif kind == "smax_batched":
        from bdps_agents.adapters.smax.vector import SMAXVectorEnv

        # one jitted step for all envs; observations handed over as one Batch (cheaper for
        # the Collector than per-env dicts)
        venv = SMAXVectorEnv.from_env_config(env_cfg, num, seed, obs_format="batch")
    else:
        venv = StackedDummyVectorEnv(fns, keep_info=keep_info)
    venv.seed(seed)
    return venv


def _ray_vector_env(fns: list) -> BaseVectorEnv:
    """Tianshou's ``RayVectorEnv``: one Ray actor per env (a running Ray, or a local one)."""
    try:
        import ray
        from tianshou.env import RayVectorEnv
    except ImportError as exc:
        raise ImportError('env.vector_env=ray needs ray: pip install "bdps-agents[ray]"') from exc
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False)
    return RayVectorEnv(fns)


class EpisodeMetrics:
    """A Collector ``on_episode_done_hook`` that keeps each finished episode's final value of the
    env's ``metric_keys`` (read from the last step's info), e.g. SMAC's ``battle_won``, and
    reports their means under the env's ``metric_names`` (SMAC's and SMAX's ``battle_won`` ->
    ``win_rate``; a key without a name keeps its own)."""

    def __init__(self, keys: tuple[str, ...], names: Mapping[str, str] | None = None) -> None:
        self.keys = keys
        self.names = dict(names or {})
        self.values: dict[str, list[float]] = {key: [] for key in keys}

    def __call__(self, episode_batch: Any) -> None:  # named as in EpisodeRolloutHookProtocol
        for key in self.keys:
            self.values[key].append(float(episode_batch.info[key][-1]))
        # greedy play's assignments (roles, groups): distinct ones per env, mean over the steps
        policy_out = episode_batch.get("policy", None)
        for key, name in ASSIGNMENT_KEYS.items():
            if policy_out is not None and key in policy_out.get_keys():
                count = distinct_per_env(policy_out[key], episode_batch.obs.alive)
                self.values.setdefault(name, []).append(float(np.mean(count)))
        return  # nothing added to the buffer

    def pop_means(self) -> dict[str, float]:
        """Mean per metric (under its display name) since the last call; clears. With a
        role-based policy also ``roles_per_env``/``groups_per_env`` of its episodes."""
        means = {
            self.names.get(key, key): float(np.mean(values))
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
    algorithm: ValueDecomposition
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

    def sync_learner(self, full_state: bool = False) -> None:
        """With a learner elsewhere (``training.overlap_learning``, ``training.device``): wait for
        the gradient step in flight and adopt its networks (``full_state``: also the optimiser
        and target networks, for a checkpoint)."""
        if self.algorithm.remote_learner is not None:
            self.algorithm.remote_learner.sync(full_state)

    def close(self, quietly: bool = False) -> None:
        """Close both vector envs (once) and the learner process. ``quietly``: ignore errors
        from workers that already died, so that they do not hide the error that killed them."""
        if self.algorithm.remote_learner is not None:
            self.algorithm.remote_learner.close()
        for venv in (self.train_envs, self.test_envs):
            if venv.is_closed:
                continue
            try:
                venv.close()
            except Exception:
                if not quietly:
                    raise


def seed_everything(seed: int) -> None:
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_replay_buffer(cfg: ExperimentConfig, spec: EnvSpec) -> EpisodeReplayBuffer:
    """``replay.capacity_episodes`` episodes of ``spec.episode_limit`` steps (else
    :data:`DEFAULT_EPISODE_SLOTS`), one sub-buffer per training env, checked against memory."""
    limit = spec.episode_limit or DEFAULT_EPISODE_SLOTS
    if cfg.replay.capacity_episodes < cfg.env.num_train_envs:
        raise ConfigError(
            f"replay.capacity_episodes ({cfg.replay.capacity_episodes}) must be >= "
            f"env.num_train_envs ({cfg.env.num_train_envs}): each env writes its own sub-buffer"
        )
    check_replay_memory(cfg.replay.capacity_episodes, limit, spec)
    return EpisodeReplayBuffer(
        cfg.replay.capacity_episodes * limit, cfg.env.num_train_envs, seed=cfg.training.seed
    )


def build_run(cfg: ExperimentConfig) -> Run:
    tc = cfg.training
    torch.set_num_threads(tc.torch_threads)
    if tc.reuse_freed_memory:
        reuse_freed_memory()
    device = resolve_device(tc.device)  # before anything is built: a missing GPU is one line
    seed_everything(tc.seed)
    probe = make_joint(cfg.env)
    spec = EnvSpec.of(probe)
    metric_keys, metric_names = probe.metric_keys, probe.metric_names
    probe.close()
    buffer = make_replay_buffer(cfg, spec)
    algorithm = build_algorithm(cfg, spec)
    if tc.overlap_learning:
        algorithm.remote_learner = LearnerProcess(
            algorithm,
            functools.partial(build_algorithm, cfg, spec),
            torch_threads=tc.torch_threads,
            reuse_freed_memory=tc.reuse_freed_memory,
            device=str(device),
        )
    elif device.type != "cpu":
        algorithm.remote_learner = DeviceLearner(
            algorithm, functools.partial(build_algorithm, cfg, spec), str(device)
        )
    # the replay buffer stores no info: the training envs need not hand it over
    train_envs = make_vector_env(cfg.env, cfg.env.num_train_envs, tc.seed, keep_info=False)
    # more test envs than test episodes would idle (and Tianshou warns at every test)
    n_test = min(cfg.env.num_test_envs, tc.test_episodes)
    test_envs = make_vector_env(cfg.env, n_test, tc.seed + 10_000)
    ex = cfg.exploration
    test_metrics = EpisodeMetrics(metric_keys, metric_names)
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
