"""From a config to a trained checkpoint, with Tianshou's own Collector and OffPolicyTrainer.

``build_run`` wires the pieces (vector envs, policy, algorithm, replay, collectors); ``train``
runs them and writes TensorBoard + CSV logs, a learning-curve PNG and checkpoints; ``evaluate``
reloads a checkpoint and plays greedy episodes.

Checkpoints and resuming
------------------------
``<logdir>/checkpoint.pt`` is rewritten every ``training.checkpoint_interval`` env steps (at the
end of an epoch, before its test) and at the end of the run. Each write is atomic: a temporary
file in the same directory, fsynced, renamed over the old one (``os.replace``), then the directory
fsynced, so a kill at any moment leaves either the old or the new checkpoint, never a mix.
The file is a small header (magic, format version, payload length, SHA-256 of the payload) and a
``torch.save`` payload; :func:`load_checkpoint` refuses a truncated or altered file with a
:class:`CheckpointError`. The payload holds the config, the algorithm's ``state_dict`` (policy,
mixers, target networks and -- Tianshou's ``Algorithm.state_dict`` adds it -- the Adam state),
the gradient-step count, the trainer's counters (epoch, env steps, training steps), the logger's
state (test history, warm-up steps, length of ``metrics.csv``) and the random generators (Python,
numpy, torch, the policy's own, the replay sampler's).

Opening a checkpoint runs no code. The SHA-256 only detects damage -- a crafted file carries a
valid one -- so the payload is read with ``torch.load(weights_only=True)``, which builds tensors
and plain Python data (dicts, lists, tuples, numbers, strings) and refuses any other object
(a pickled ``os.system`` call, a class) with a one-line :class:`CheckpointError` that names it.
Format 3 (this version) stores only such data: the config as the plain dict of its JSON dump,
numpy's legacy generator state with its key array as a list. Format 2 (the previous version,
and the bare format 1) kept that key array as a numpy array: those files are still read, with
exactly numpy's ``ndarray``, its ``dtype`` (uint32) and ``_reconstruct`` allowed for that one
load (``torch.serialization.safe_globals``; needs torch >= 2.5) -- building an array runs no
code of the file's -- and a numpy object anywhere but that key array is refused. They resume
and evaluate as before; the next checkpoint of a resumed run is written in format 3.
A state dict that does not fit the networks its config builds (an edited file, another version
of the env) is refused by :func:`load_algorithm_state` with one line naming the file and the
first differing entries (missing or unexpected keys, tensor shapes, Adam moments), for
``bdps eval``, ``bdps render`` and ``--resume`` alike.

``train(cfg, logdir, resume=True)`` (``bdps train ... --resume``) continues a killed run from it:
the config must match the checkpoint's except ``training.total_steps`` (and the cosmetic
``training.progress``, ``training.logdir``, ``training.checkpoint_interval``); ``metrics.csv`` is
cut back to its length at the checkpoint and appended to; the trainer continues from the saved
epoch / env step / training step through Tianshou's own ``resume_from_log`` (the logger's
``restore_data``), so the ε schedule, a function of the trainer's env step, goes on where it was.
A finished run (no epoch of the budget left, and ``metrics.csv`` holds its ``final`` rows) is
not resumed: :func:`check_resume_progress` refuses it, saying to pass a larger ``--steps``
(resuming with the same budget would only evaluate it again and replace its final result); a run
killed after its last epoch but before its final evaluation is resumed to that evaluation.
The replay buffer is *not* saved (it can take GBs on big maps): a resumed run first refills it
with ``replay.warmup_episodes`` episodes played at the current ε; these env steps are counted in
the total (``metrics.csv``'s ``step``, like the warm-up) but not in the trainer's budget of
``training.total_steps``. Rows of scope ``resume`` (``eps``, ``refill_steps``) at the
checkpoint's env step mark each resume in ``metrics.csv``. The env workers' own random state is
not saved either: they are reseeded from (seed, env step), so a resumed run is a faithful
continuation, not a bitwise replay of an uninterrupted one.

With ``training.overlap_learning`` the gradient steps run in a child process
(:mod:`bdps_agents.learner_process`); the run waits for the step in flight and copies the
child's whole learner back (:meth:`Run.sync_learner`) before each test and checkpoint and at the
end, so tests and checkpoints see the latest networks, optimiser and update count.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import functools
import hashlib
import io
import json
import os
import random
import secrets
import struct
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tianshou.algorithm.algorithm_base import policy_within_training_step
from tianshou.algorithm.optim import AdamOptimizerFactory
from tianshou.data import Collector
from tianshou.env import BaseVectorEnv
from tianshou.trainer import OffPolicyTrainerParams

from bdps_agents.bdps import BDPS, BDPSPolicy, group_feature_dim
from bdps_agents.config import (
    ConfigError,
    EnvConfig,
    ExperimentConfig,
    build_config,
    default_vector_env,
)
from bdps_agents.exploration import LinearSchedule, warmup
from bdps_agents.joint_env import JointEnv
from bdps_agents.learner_process import LearnerProcess
from bdps_agents.networks import GroupSelector, RecurrentAgent, RoleSelector, make_mixer
from bdps_agents.policy import AgentInputs, MultiAgentQPolicy
from bdps_agents.qmix import QMIX, NonFiniteError
from bdps_agents.replay import EpisodeReplayBuffer
from bdps_agents.run_logger import RunLogger, fsync_dir, plot_learning_curve
from bdps_agents.vector_envs import StackedDummyVectorEnv, StackedSubprocVectorEnv


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
    return JointEnv(env, env_cfg.reward_aggregation)


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
        spec.n_actions,
        b.n_roles,
        b.role_interval,
        b.role_gru_dim,
        b.vae_hidden_dim,
        standardize=b.standardize_advantages,
    )
    group_agent: RecurrentAgent | None = None
    group_selector: GroupSelector | None = None
    group_interval: int | None = None
    if net.sharing == "bilevel":
        # group networks also read the role network's hidden state h^U (Sec. 3.2)
        group_agent = RecurrentAgent(
            inputs.dim + net.hidden_dim, spec.n_actions, net.hidden_dim, groups=b.n_groups
        )
        group_selector = GroupSelector(
            b.n_roles,
            b.n_groups,
            b.group_embed_dim,
            b.gat_dim,
            b.group_gru_dim,
            agent_feature_dim=group_feature_dim(
                b.group_selector_input, spec.n_agents, net.hidden_dim
            ),
        )
        group_interval = b.group_interval
    return BDPSPolicy(
        **common,
        role_selector=role_selector,
        role_interval=b.role_interval,
        sample_roles_at_test=b.sample_roles_at_test,
        group_input=b.group_selector_input,
        episode_limit=spec.episode_limit,
        group_agent=group_agent,
        group_selector=group_selector,
        group_interval=group_interval,
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

    def __call__(self, episode_batch: Any) -> None:  # named as in EpisodeRolloutHookProtocol
        for key in self.keys:
            self.values[key].append(float(episode_batch.info[key][-1]))
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

    def sync_learner(self, full_state: bool = False) -> None:
        """With ``training.overlap_learning``: wait for the gradient step in flight and adopt its
        networks (``full_state``: also the optimiser and target networks, for a checkpoint)."""
        if self.algorithm.learner_process is not None:
            self.algorithm.learner_process.sync(full_state)

    def close(self, quietly: bool = False) -> None:
        """Close both vector envs (once) and the learner process. ``quietly``: ignore errors
        from workers that already died, so that they do not hide the error that killed them."""
        if self.algorithm.learner_process is not None:
            self.algorithm.learner_process.close()
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


def reuse_freed_memory() -> bool:
    """Make glibc keep freed memory blocks of up to 64 MiB for reuse; True if it applied.

    An update allocates and frees tensors of a few MB each (input gates of every step, their
    gradients). glibc serves such blocks with ``mmap`` and unmaps them when freed, so every new
    one is fresh pages: one page fault per 4 KiB. Raising the mmap and trim thresholds keeps them
    in the heap for reuse: ≈ 15% less time per update on LBF (``benchmarks/throughput.py``), at
    the price of a process that holds its peak memory. No effect off Linux/glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # musl or another libc
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    mmap_ok = libc.mallopt(m_mmap_threshold, 64 << 20)
    return bool(mmap_ok and libc.mallopt(m_trim_threshold, 1 << 30))


# slots per episode when the env does not say how long its episodes last
DEFAULT_EPISODE_SLOTS = 1000


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
    seed_everything(tc.seed)
    probe = make_joint(cfg.env)
    spec = EnvSpec.of(probe)
    metric_keys = probe.metric_keys
    probe.close()
    buffer = make_replay_buffer(cfg, spec)
    algorithm = build_algorithm(cfg, spec)
    if tc.overlap_learning:
        algorithm.learner_process = LearnerProcess(
            algorithm,
            functools.partial(build_algorithm, cfg, spec),
            torch_threads=tc.torch_threads,
            reuse_freed_memory=tc.reuse_freed_memory,
        )
    # the replay buffer stores no info: the training envs need not hand it over
    train_envs = make_vector_env(cfg.env, cfg.env.num_train_envs, tc.seed, keep_info=False)
    # more test envs than test episodes would idle (and Tianshou warns at every test)
    n_test = min(cfg.env.num_test_envs, tc.test_episodes)
    test_envs = make_vector_env(cfg.env, n_test, tc.seed + 10_000)
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


CHECKPOINT_NAME = "checkpoint.pt"
# 1: a bare torch.save dict (config, algorithm, env_step, num_updates); 2: the checksummed file,
# numpy's legacy generator state as an ndarray; 3: tensors and plain Python data only
CHECKPOINT_FORMAT = 3
_MAGIC = b"BDPS-CHECKPOINT\n"
_HEADER = struct.Struct(">IQ32s")  # format version, payload length, SHA-256 of the payload
# config fields a resumed run may change: the budget, and what does not touch learning
RESUMABLE_CHANGES = frozenset(
    {
        "training.total_steps",
        "training.progress",
        "training.logdir",
        "training.checkpoint_interval",
        "training.reuse_freed_memory",
        "training.overlap_learning",
    }
)


class EnvWorkerError(RuntimeError):
    """An environment in a vector-env worker process failed (the worker died)."""


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: truncated, corrupt, not a checkpoint, or one a run
    cannot be resumed from."""


def _write_bytes(f: Any, data: bytes | memoryview) -> None:
    f.write(data)


def atomic_write(path: Path, *parts: bytes | memoryview) -> None:
    """Write ``parts`` to ``path`` atomically: a temporary file beside it, flushed and fsynced,
    renamed over ``path``, and the directory fsynced. On error nothing is left behind and an
    existing ``path`` is untouched."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    # os.open applies the umask (tempfile.mkstemp would make the file private: 0600)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            for part in parts:
                _write_bytes(f, part)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def remove_stale_temp_files(path: Path) -> None:
    """Temporary files of a write that a kill interrupted (``atomic_write`` could not clean up)."""
    for tmp in Path(path).parent.glob(f".{Path(path).name}.*.tmp"):
        tmp.unlink(missing_ok=True)


def write_checkpoint(path: str | Path, data: dict[str, Any]) -> None:
    """``data`` (a dict with at least ``config`` and ``algorithm``) to ``path``, atomically, in
    the checksummed format :func:`load_checkpoint` reads."""
    buf = io.BytesIO()
    torch.save({**data, "format_version": CHECKPOINT_FORMAT}, buf)
    payload = buf.getbuffer()
    header = _MAGIC + _HEADER.pack(
        CHECKPOINT_FORMAT, len(payload), hashlib.sha256(payload).digest()
    )
    atomic_write(Path(path), header, payload)


def _rng_states(run: Run) -> dict[str, Any]:
    # the policy's own generators travel in the algorithm's state_dict (QMIX.get_extra_state);
    # all plain data (numpy's key array as a list), so that torch.load(weights_only=True) reads it
    state = np.random.get_state()  # legacy=True: a tuple for the legacy MT19937 generator
    if not isinstance(state, tuple):
        raise TypeError("numpy's global generator is not the legacy MT19937; cannot save it")
    kind, key, pos, has_gauss, gauss = state
    return {
        "python": random.getstate(),
        "numpy": (kind, key.tolist(), pos, has_gauss, gauss),
        "torch": torch.get_rng_state(),
        "replay_sampler": run.buffer._sample_rng.bit_generator.state,
    }


def _set_rng_states(run: Run, states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    kind, key, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, np.asarray(key, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(states["torch"])
    run.buffer._sample_rng.bit_generator.state = states["replay_sampler"]
    if "policy" in states:  # written before the algorithm's state_dict carried them
        legacy = {"numpy": states["policy"]}
        if "policy_torch" in states:
            legacy["torch"] = states["policy_torch"]
        run.policy.set_generator_states(legacy)


def save_checkpoint(
    path: Path, run: Run, env_step: int, progress: dict[str, Any] | None = None
) -> None:
    """Atomically write a checkpoint of ``run`` at total env step ``env_step``.

    ``progress``: the logger's :meth:`RunLogger.epoch_end` note (trainer counters, test history,
    length of metrics.csv); without it the checkpoint can be evaluated but not resumed.
    """
    algorithm = run.algorithm
    data: dict[str, Any] = {
        "config": run.cfg.model_dump(mode="json"),
        # policy, mixers, target networks, and (Tianshou adds it) "_optimizers": Adam's state
        "algorithm": algorithm.state_dict(),
        "lr_schedulers": [s.state_dict() for s in algorithm.lr_schedulers],
        "env_step": env_step,  # total, warm-up included
        "num_updates": algorithm.num_updates,  # for reading; restored from "algorithm"
        "eps_training": run.policy.eps_training,
        "rng": _rng_states(run),
        "saved_at": time.time(),
    }
    if progress is not None:
        data["progress"] = progress
    write_checkpoint(path, data)


def _payload_of(path: Path) -> tuple[int, bytes | None]:
    """Format version and verified payload of a checksummed checkpoint; ``(1, None)`` for an
    older, bare torch file."""
    with path.open("rb") as f:
        head = f.read(len(_MAGIC) + _HEADER.size)
        if not head.startswith(_MAGIC):
            if _MAGIC.startswith(head[: len(_MAGIC)]):  # cut inside the header
                raise CheckpointError(f"checkpoint {path} is truncated or corrupt: no header")
            return 1, None
        if len(head) < len(_MAGIC) + _HEADER.size:
            raise CheckpointError(f"checkpoint {path} is truncated or corrupt: header cut short")
        version, length, digest = _HEADER.unpack(head[len(_MAGIC) :])
        if version > CHECKPOINT_FORMAT:
            raise CheckpointError(
                f"checkpoint {path} has format version {version}; this bdps-agents reads up to "
                f"{CHECKPOINT_FORMAT} (upgrade bdps-agents)"
            )
        payload = f.read(length + 1)
    if len(payload) != length:
        what = "truncated" if len(payload) < length else "longer than its header says"
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt: {what} "
            f"({len(payload)} of {length} payload bytes)"
        )
    if hashlib.sha256(payload).digest() != digest:
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt: SHA-256 mismatch (the file was altered)"
        )
    return version, payload


def greedy_return(run: Run, episodes: int) -> tuple[float, float]:
    """Mean and std of the team return over greedy (ε = eps_test) test episodes.

    The episodes' metric means (e.g. ``win_rate``) wait in ``run.test_metrics.pop_means()``.
    """
    run.test_metrics.pop_means()  # drop values from episodes collected before this call
    run.test_collector.reset()
    stats = run.test_collector.collect(n_episode=episodes)
    return float(np.mean(stats.returns)), float(np.std(stats.returns))


def default_logdir(cfg: ExperimentConfig) -> Path:
    """``<training.logdir>/<scenario>-<sharing>-seed<S>``: methods and seeds of one scenario
    never share a directory."""
    name = f"{cfg.scenario.replace('/', '_')}-{cfg.network.sharing}-seed{cfg.training.seed}"
    return Path(cfg.training.logdir) / name


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and key != "kwargs":
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def check_resumable(saved: ExperimentConfig, cfg: ExperimentConfig, path: Path) -> None:
    """Refuse to resume with a config that differs from the checkpoint's beyond
    :data:`RESUMABLE_CHANGES`, naming the differing fields."""
    old = _flatten(saved.model_dump(mode="json"))
    new = _flatten(cfg.model_dump(mode="json"))
    differ = sorted(
        k
        for k in old.keys() | new.keys()
        if k not in RESUMABLE_CHANGES and old.get(k) != new.get(k)
    )
    if differ:
        lines = "\n".join(f"  {k}: checkpoint {old.get(k)!r}, now {new.get(k)!r}" for k in differ)
        raise ConfigError(
            f"cannot resume from {path}: the config differs from the checkpoint's in "
            f"{', '.join(differ)} (only {', '.join(sorted(RESUMABLE_CHANGES))} may change):\n"
            f"{lines}"
        )


# what RunLogger reads back from a checkpoint's progress note
_PROGRESS_COUNTERS = (
    "epoch",
    "env_step",
    "update_step",
    "total_env_step",
    "step_offset",
    "csv_bytes",
    "episodes",
)


def _has_final_row(metrics: Path) -> bool:
    """Whether ``metrics.csv`` holds a run's final evaluation (as ``experiment.is_finished``)."""
    if not metrics.is_file():
        return False
    with metrics.open(newline="", errors="replace") as f:
        return any(line.startswith("final,") for line in f)


def check_resume_progress(
    saved: dict[str, Any], cfg: ExperimentConfig, logdir: Path, path: Path
) -> None:
    """Refuse to resume from a checkpoint whose progress note is malformed, or a run that is
    finished: no epoch of ``cfg``'s budget is left and ``metrics.csv`` holds its final result
    (resuming would only evaluate it again and replace that result). A run killed between its
    last epoch and its final evaluation is not finished: resuming evaluates it."""
    note = saved["progress"]

    def is_int(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    if not isinstance(note, dict):
        bad = ["progress"]
    else:
        bad = [k for k in _PROGRESS_COUNTERS if not is_int(note.get(k))]
        last_log = note.get("last_log")
        if not isinstance(last_log, dict) or not all(
            is_int(last_log.get(k)) for k in ("training", "test", "update", "info")
        ):
            bad.append("last_log")
        history = note.get("test_history")
        if not isinstance(history, list) or not all(
            isinstance(t, list | tuple) and len(t) == 3 for t in history
        ):
            bad.append("test_history")
    if bad:
        raise CheckpointError(
            f"cannot resume from {path}: its progress note lacks or garbles {', '.join(bad)} "
            "(the file was not written by bdps train); it can still be evaluated"
        )
    tc = cfg.training
    plan = EpochPlan.of(
        tc.total_steps,
        tc.test_interval,
        collect_step(tc.steps_per_update, cfg.env.num_train_envs),
        done_steps=note["env_step"],
        done_epochs=note["epoch"],
    )
    if plan.epochs_left > 0 or not _has_final_row(logdir / "metrics.csv"):
        return
    raise CheckpointError(
        f"cannot resume {logdir}: the run is finished ({note['env_step']} training env steps "
        f"done for training.total_steps={tc.total_steps}, final result in metrics.csv); to "
        f"train it further, resume with --steps (training.total_steps) greater than "
        f"{note['env_step']}"
    )


def restore_run(run: Run, data: dict[str, Any], path: str | Path = "(in memory)") -> None:
    """Load a checkpoint's learner state into a freshly built ``run``: networks, target networks,
    optimiser (Adam moments), gradient-step count, ε, and random generators. Raises
    :class:`CheckpointError`, naming ``path``, for a state that does not fit ``run``."""
    algorithm = run.algorithm
    load_algorithm_state(algorithm, data["algorithm"], path)
    try:
        for scheduler, state in zip(
            algorithm.lr_schedulers, data.get("lr_schedulers", []), strict=False
        ):
            scheduler.load_state_dict(state)
        if "_extra_state" not in data["algorithm"]:  # older checkpoints kept the count beside it
            algorithm.num_updates = int(data.get("num_updates", 0))
        if "eps_training" in data:
            run.policy.set_eps_training(float(data["eps_training"]))
        if "rng" in data:
            _set_rng_states(run, data["rng"])
    except (KeyError, IndexError, OverflowError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(
            f"checkpoint {path} holds an unusable learner state (schedulers, ε or random "
            f"generators): {_first_line(err)}"
        ) from None


def _reseed_envs(run: Run, seed: int, env_step: int) -> None:
    """New env seeds for a resumed run: the killed run's env random state is lost, and
    reusing the initial seeds would replay the run's first episodes."""
    seq = np.random.SeedSequence([seed, env_step])
    train_seed, test_seed = (int(s) for s in seq.generate_state(2) % (2**31 - 2**16))
    run.train_envs.seed(train_seed)
    run.test_envs.seed(test_seed)


def train(
    cfg: ExperimentConfig,
    logdir: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> TrainResult:
    """Train ``cfg`` into ``logdir`` (default ``<training.logdir>/<scenario>-<sharing>-seed<S>``).

    ``resume=True`` continues the run from ``<logdir>/checkpoint.pt`` (see the module docstring:
    what is restored, the replay-buffer refill, how metrics.csv is continued). It raises
    ``FileNotFoundError`` when there is no checkpoint, :class:`CheckpointError` for an unusable
    one and ``ConfigError`` when ``cfg`` differs from the checkpoint's config.

    A log directory that holds a run is never replaced silently: without ``resume`` it raises
    :class:`RunDirError` unless ``overwrite=True``, which deletes that run's files (metrics,
    checkpoint, config, curve, TensorBoard events) once the new run is built. One run at a time
    writes to a directory (:func:`run_dir_lock`).
    """
    logdir = Path(logdir or default_logdir(cfg))
    if resume and overwrite:
        raise RunDirError("--resume continues the run in a log directory, --overwrite replaces it")
    with run_dir_lock(logdir):
        return _train_in(cfg, logdir, resume, overwrite)


def _train_in(cfg: ExperimentConfig, logdir: Path, resume: bool, overwrite: bool) -> TrainResult:
    """:func:`train` with the log directory locked."""
    checkpoint = logdir / CHECKPOINT_NAME
    saved: dict[str, Any] | None = None
    if resume:
        if not checkpoint.is_file():
            raise FileNotFoundError(
                f"cannot resume: no checkpoint at {checkpoint} (train without --resume first, "
                f"or pass the run's --logdir)"
            )
        saved_cfg, saved = load_checkpoint(checkpoint)
        if "progress" not in saved:
            raise CheckpointError(
                f"cannot resume from {checkpoint}: it holds no training progress (written by an "
                "older bdps-agents); it can still be evaluated"
            )
        check_resumable(saved_cfg, cfg, checkpoint)
        check_resume_progress(saved, cfg, logdir, checkpoint)
    else:
        existing = run_files(logdir)
        if existing and not overwrite:
            names = ", ".join(
                sorted({"TensorBoard events" if "tfevents" in p.name else p.name for p in existing})
            )
            raise RunDirError(
                f"{logdir} already holds a run ({names}): pass --resume to continue it, "
                "--overwrite to replace it, or another --logdir"
            )
    run = build_run(cfg)  # a config that cannot be built leaves the directory as it was
    try:
        if overwrite:
            for path in run_files(logdir):
                path.unlink()
        remove_stale_temp_files(checkpoint)
        atomic_write(
            logdir / "config.json", json.dumps(cfg.model_dump(mode="json"), indent=2).encode()
        )
        return _train(cfg, run, logdir, checkpoint, saved)
    except NonFiniteError as exc:
        steps = run.train_collector.collect_step
        kept = (
            f"the last good checkpoint {checkpoint} is kept"
            if checkpoint.is_file()
            else ("no checkpoint had been written yet")
        )
        raise NonFiniteError(
            f"training stopped at env step {steps}: {exc}; {kept}. Try a lower algorithm.lr "
            "or algorithm.max_grad_norm, or check the scale of the rewards."
        ) from exc
    except (EOFError, BrokenPipeError, ConnectionResetError) as exc:
        if cfg.env.vector_env == "dummy":
            raise
        run.close(quietly=True)  # the other workers; the dead one cannot be told to close
        raise EnvWorkerError(
            f"an environment worker ({cfg.env.vector_env}) died while the trainer waited on it "
            f"({type(exc).__name__}): the env raised inside the worker process, whose traceback "
            "is printed above on stderr. Rerun with --set env.vector_env=dummy to get the "
            f"error in this process. The last checkpoint ({checkpoint}) is kept."
        ) from exc
    finally:
        run.close(quietly=True)


# what a run writes into its log directory (RunDirError, --overwrite)
RUN_FILE_PATTERNS = (
    "metrics.csv",
    CHECKPOINT_NAME,
    "config.json",
    "learning_curve.png",
    "events.out.tfevents.*",
)


def run_files(logdir: Path) -> list[Path]:
    """The files of a run in ``logdir`` (none if it does not exist)."""
    if not logdir.is_dir():
        return []
    return [p for pattern in RUN_FILE_PATTERNS for p in logdir.glob(pattern) if p.is_file()]


class RunDirError(RuntimeError):
    """A log directory that cannot be used: it holds another run, another process is writing
    to it, or it cannot be created or written."""


@contextlib.contextmanager
def run_dir_lock(logdir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``logdir`` (created if needed) while a run writes to it.

    ``flock`` on ``<logdir>/.lock``: the kernel drops it when the process dies (kill -9
    included), so a crashed run never leaves a stale lock behind. The file keeps the holder's
    pid for the message. A directory made here that holds nothing else at the end (the run
    failed before writing) is removed again."""
    created = not logdir.exists()
    try:
        logdir.mkdir(parents=True, exist_ok=True)
        fd = os.open(logdir / ".lock", os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as err:
        raise RunDirError(
            f"cannot use {logdir} as the log directory ({err.strerror}): pick another --logdir"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise RunDirError(
                f"{logdir} is in use by another bdps run (pid {holder}): wait for it to end "
                "or pick another --logdir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        if created and [p.name for p in logdir.iterdir()] == [".lock"]:
            (logdir / ".lock").unlink()
            logdir.rmdir()
        os.close(fd)  # releases the lock


def _train(
    cfg: ExperimentConfig,
    run: Run,
    logdir: Path,
    checkpoint: Path,
    saved: dict[str, Any] | None,
) -> TrainResult:
    tc = cfg.training
    policy = run.policy
    note = saved["progress"] if saved is not None else None
    # one gradient step per collect step; collect whole vector steps (a multiple of the env
    # count), so steps_per_update is rounded up to that multiple
    steps_per_collect = collect_step(tc.steps_per_update, cfg.env.num_train_envs)
    plan = EpochPlan.of(
        tc.total_steps,
        tc.test_interval,
        steps_per_collect,
        done_steps=note["env_step"] if note else 0,
        done_epochs=note["epoch"] if note else 0,
    )
    if tc.progress:  # before the progress bar appears
        print(plan.describe(tc.total_steps, tc.steps_per_update), flush=True)
    logger = RunLogger(
        logdir,
        plan.total,
        eps_fn=run.schedule,
        progress=tc.progress,
        training_interval=tc.log_interval,
        update_interval=max(1, tc.log_interval // tc.steps_per_update),  # counted in updates
        test_metrics_fn=run.test_metrics.pop_means,
        checkpoint_interval=tc.checkpoint_interval,
        resume=note,
    )
    try:
        if saved is None:
            if tc.progress:
                print(
                    f"warm-up: {cfg.replay.warmup_episodes} episodes of random available actions "
                    "before learning (in metrics.csv's env steps, not in the budget) ...",
                    flush=True,
                )
            warm = warmup(run.train_collector, n_episode=cfg.replay.warmup_episodes)
            logger.step_offset = warm.n_collected_steps
        else:
            _resume(cfg, run, logger, saved, refill=plan.epochs_left > 0)

        def training_fn(epoch: int, env_step: int) -> None:
            policy.set_eps_training(run.schedule(env_step))

        def test_fn(epoch: int, env_step: int | None) -> None:
            run.sync_learner()  # test the networks of the last gradient step

        def save_checkpoint_fn(epoch: int, env_step: int, update_step: int) -> str:
            # called by RunLogger.save_data at an epoch end, right after it noted the progress
            run.sync_learner(full_state=True)
            progress = logger.epoch_end()
            save_checkpoint(checkpoint, run, progress["total_env_step"], progress)
            return str(checkpoint)

        start = time.time()
        run.algorithm.run_training(
            OffPolicyTrainerParams(
                training_collector=run.train_collector,
                test_collector=run.test_collector,
                max_epochs=plan.max_epochs,
                epoch_num_steps=plan.epoch_steps,
                collection_step_num_env_steps=steps_per_collect,
                update_step_num_gradient_steps_per_sample=1.0 / steps_per_collect,
                batch_size=cfg.replay.batch_episodes,
                test_step_num_episodes=tc.test_episodes,
                training_fn=training_fn,
                test_fn=test_fn,
                save_checkpoint_fn=save_checkpoint_fn,
                resume_from_log=saved is not None,
                logger=logger,
                verbose=False,
                show_progress=False,
                test_in_training=False,
            )
        )
        run.sync_learner(full_state=True)
        elapsed = time.time() - start
        steps_per_second = logger.new_env_steps / max(elapsed, 1e-9)
        env_steps = logger.total_env_steps
        final_mean, _ = greedy_return(run, tc.test_episodes)  # fresh episodes, after training
        final_metrics = run.test_metrics.pop_means()
        logger.log_metric("final", env_steps, "greedy_return", final_mean)
        for name, value in final_metrics.items():
            logger.log_metric("final", env_steps, name, value)
        # the learner as it was at the last epoch end (nothing learns after it): resuming from
        # this checkpoint with more total_steps cuts metrics.csv back to that epoch end
        save_checkpoint(checkpoint, run, env_steps, logger.epoch_end())
        title = f"{cfg.scenario} ({cfg.network.sharing} sharing, seed {tc.seed})"
        plot_learning_curve(
            logger.test_history, logdir / "learning_curve.png", title, tc.test_episodes
        )
    finally:
        logger.finalize()
    return TrainResult(
        logdir,
        checkpoint,
        env_steps,
        final_mean,
        logger.test_history,
        steps_per_second,
        final_metrics,
    )


def collect_step(steps_per_update: int, n_envs: int) -> int:
    """Env steps per collect step (one gradient step each): ``steps_per_update`` rounded up to
    a multiple of the env count, since every env steps at once."""
    return -(-steps_per_update // n_envs) * n_envs


@dataclass(frozen=True)
class EpochPlan:
    """How a budget of ``training.total_steps`` trainer env steps is cut into epochs (an epoch
    ends with a test and maybe a checkpoint). Tianshou runs whole epochs of whole collect steps,
    so the budget is met from above by less than one collect step per epoch: the
    remaining steps are split into ``ceil(remaining / test_interval)`` equal epochs of a whole
    number of collect steps. ``total`` is the exact count the trainer will reach."""

    max_epochs: int  # Tianshou's max_epochs (epochs done before a resume included)
    epoch_steps: int
    epochs_left: int
    total: int  # trainer env steps at the end (warm-up excluded)

    @classmethod
    def of(
        cls,
        total_steps: int,
        test_interval: int,
        steps_per_collect: int,
        done_steps: int = 0,
        done_epochs: int = 0,
    ) -> EpochPlan:
        remaining = total_steps - done_steps
        if remaining <= 0:
            return cls(done_epochs, steps_per_collect, 0, done_steps)
        epochs = -(-remaining // test_interval)
        per_epoch = -(-remaining // epochs)
        epoch_steps = -(-per_epoch // steps_per_collect) * steps_per_collect
        return cls(done_epochs + epochs, epoch_steps, epochs, done_steps + epochs * epoch_steps)

    def describe(self, total_steps: int, steps_per_update: int) -> str:
        rounded = (
            ""
            if self.total == total_steps
            else f" (training.total_steps {total_steps:,} rounded up to whole collect steps)"
        )
        return (
            f"budget: {self.total:,} env steps of training{rounded}: {self.epochs_left} "
            f"epoch(s) of {self.epoch_steps:,} steps, each ending with a test; one gradient "
            f"step per {steps_per_update:,} steps (rounded up to whole vector steps)"
        )


def _resume(
    cfg: ExperimentConfig, run: Run, logger: RunLogger, saved: dict[str, Any], refill: bool
) -> None:
    """Restore the learner from ``saved``, then refill the (unsaved) replay buffer with
    ``replay.warmup_episodes`` episodes at the current ε (skipped when no training is left)."""
    note = saved["progress"]
    # train() reads the checkpoint from logdir / CHECKPOINT_NAME, the logger's logdir
    restore_run(run, saved, logger.logdir / CHECKPOINT_NAME)
    _reseed_envs(run, cfg.training.seed, note["total_env_step"])
    eps = run.schedule(note["env_step"])  # what training_fn sets at this trainer env step
    refill_steps = 0
    if refill:
        with policy_within_training_step(run.policy):
            run.policy.set_eps_training(eps)
            run.train_collector.reset()
            stats = run.train_collector.collect(n_episode=cfg.replay.warmup_episodes)
        refill_steps = stats.n_collected_steps
        logger.step_offset += refill_steps
    total = note["total_env_step"]
    logger.log_metric("resume", total, "eps", eps)
    logger.log_metric("resume", total, "refill_steps", refill_steps)
    print(
        f"resumed from checkpoint at env step {total} (epoch {note['epoch']}, trainer env step "
        f"{note['env_step']}, {run.algorithm.num_updates} gradient steps), eps {eps:.4f}; "
        f"replay refilled with {refill_steps} env steps",
        flush=True,
    )


def _legacy_safe_globals() -> list[Any]:
    """What torch.load(weights_only=True) must allow, beyond tensors and plain data, to read a
    checkpoint of format <= 2: numpy's legacy generator state (an ndarray of uint32). Building an
    array and its dtype runs no code of the file's choosing; :func:`_plain_legacy_rng` then
    accepts such an array only where that state lives."""
    reconstruct = np.array(0).__reduce__()[0]  # numpy.(_)core.multiarray._reconstruct
    # the key array's dtype is built as numpy.dtype("u4"), whose class is UInt32DType
    allowed: list[Any] = [np.ndarray, np.dtype, type(np.dtype(np.uint32)), reconstruct]
    # (object, name) pairs: files written under numpy 1 and 2. (TorchVersion compares with
    # tuples; its comparisons are set at run time, so its stub has only str's.)
    if torch.__version__ >= (2, 6):  # type: ignore[operator]
        for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            allowed.append((reconstruct, f"{module}._reconstruct"))
    return allowed


def _unpickle_refusal(err: Exception) -> str | None:
    """What torch's weights-only unpickler refused to build (a Python global: a class or a
    function, which unpickling would call, or an object of such a class), or None for another
    error."""
    import re

    match = re.search(r"GLOBAL ([\w.]+)|but got <class '([\w.]+)'>", str(err))
    return (match.group(1) or match.group(2)) if match else None


def _first_line(err: BaseException) -> str:
    """``Type: message`` of ``err`` on one line; for torch's weights-only errors, whose first
    lines are boilerplate, the unpickler's own reason."""
    text = str(err).split("WeightsUnpickler error:", 1)[-1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


def _torch_load(source: Any, path: Path, version: int) -> Any:
    """``torch.load`` with ``weights_only=True``: tensors and plain Python data, never code."""
    safe_globals = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
    try:
        if version >= 3 or safe_globals is None:
            return torch.load(source, map_location="cpu", weights_only=True)
        with safe_globals(_legacy_safe_globals()):
            return torch.load(source, map_location="cpu", weights_only=True)
    except Exception as err:
        name = _unpickle_refusal(err)
        if name is None:
            raise
        if name.startswith("numpy.") and version < 3 and safe_globals is None:
            raise CheckpointError(
                f"checkpoint {path} (format {version}) keeps a random state as a numpy array, "
                f"which this torch {torch.__version__} cannot read safely: upgrade torch to "
                ">= 2.5, or resume/evaluate it with the bdps-agents that wrote it"
            ) from None
        raise CheckpointError(
            f"refusing to load {path}: it holds a {name} object, and building it could run "
            "code from the file; a bdps-agents checkpoint holds only tensors and plain data"
        ) from None


def _plain_legacy_rng(data: dict[str, Any], path: Path, version: int) -> None:
    """Format <= 2 kept numpy's legacy generator state as an ndarray: make it a list, as format 3
    writes it, and refuse a numpy object anywhere else (none was written there)."""
    rng = data.get("rng")
    if isinstance(rng, dict) and isinstance(rng.get("numpy"), tuple | list):
        state = list(rng["numpy"])
        key = state[1] if len(state) == 5 else None
        if isinstance(key, np.ndarray) and key.dtype == np.uint32 and key.shape == (624,):
            rng["numpy"] = (state[0], key.tolist(), *state[2:])

    def walk(node: Any, where: str) -> None:
        if isinstance(node, np.ndarray | np.generic | np.dtype):
            raise CheckpointError(
                f"refusing to load {path} (format {version}): it holds a numpy "
                f"{type(node).__name__} at {where or 'its top level'}, where bdps-agents never "
                "wrote one"
            )
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{where}/{key}")
        elif isinstance(node, list | tuple):
            for i, value in enumerate(node):
                walk(value, f"{where}/{i}")

    walk(data, "")


def load_checkpoint(path: str | Path) -> tuple[ExperimentConfig, dict[str, Any]]:
    """``(config, data)`` of a checkpoint; ``data["algorithm"]`` is the algorithm's state dict.

    Raises ``FileNotFoundError`` for a missing file and :class:`CheckpointError` (a
    ``ValueError``) for one that is truncated, corrupt or not a bdps-agents checkpoint, and for
    one that holds anything but tensors and plain data: it is read with
    ``torch.load(weights_only=True)``, which builds no other object, so opening a checkpoint runs
    no code. Reads the checksummed formats (2, 3) and the older bare ``torch.save`` dicts.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    version, payload = _payload_of(path)
    try:
        source: Any = io.BytesIO(payload) if payload is not None else path
        data = _torch_load(source, path, version)
    except CheckpointError:
        raise
    except Exception as err:
        if payload is not None:  # checksum verified: not damage, but e.g. a foreign payload
            raise CheckpointError(f"checkpoint {path} cannot be read: {_first_line(err)}") from None
        with path.open("rb") as f:
            magic = f.read(4)
        if magic == b"PK\x03\x04":  # a torch zip file, damaged
            raise CheckpointError(
                f"checkpoint {path} is truncated or corrupt: {_first_line(err)}"
            ) from None
        raise CheckpointError(
            f"{path} is not a bdps-agents checkpoint (unreadable: {_first_line(err)})"
        ) from None
    if not isinstance(data, dict) or "config" not in data or "algorithm" not in data:
        raise CheckpointError(
            f"{path} is not a bdps-agents checkpoint (no config/algorithm entries)"
        )
    if version < 3:
        _plain_legacy_rng(data, path, version)
    if not isinstance(data["algorithm"], dict):
        raise CheckpointError(
            f"{path} is not a bdps-agents checkpoint: its algorithm entry is a "
            f"{type(data['algorithm']).__name__}, not a state dict"
        )
    return build_config(data["config"], source=str(path)), data


def _tensor_shape(value: Any) -> str:
    return f"{list(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__


def _state_mismatches(algorithm: QMIX, state: dict[str, Any]) -> list[str]:
    """How ``state`` (a checkpoint's algorithm state dict) differs from what ``algorithm``
    expects: missing and unexpected entries, tensor shapes, the optimiser states."""
    expected = algorithm.state_dict()
    optimizers = expected.pop(algorithm._STATE_DICT_KEY_OPTIMIZERS)
    # older checkpoints lack the extra state (QMIX._load_from_state_dict allows that)
    missing = [k for k in expected if k not in state and not k.endswith("_extra_state")]
    problems = [f"missing {k}" for k in missing]
    for key, value in expected.items():
        if isinstance(value, torch.Tensor) and key in state:
            got = state[key]
            if not isinstance(got, torch.Tensor) or got.shape != value.shape:
                mine = _tensor_shape(value)
                problems.append(f"{key} is {_tensor_shape(got)} in the file, {mine} in the model")
    key = algorithm._STATE_DICT_KEY_OPTIMIZERS
    problems += [f"unexpected {k}" for k in state if k not in expected and k != key]
    saved = state.get(key)
    if not isinstance(saved, list) or len(saved) != len(optimizers):
        what = f"{len(saved)} states" if isinstance(saved, list) else _tensor_shape(saved)
        problems.append(f"{key}: {what} in the file, {len(optimizers)} optimisers in the model")
        return problems
    for i, (optim, entry) in enumerate(zip(algorithm._optimizers, saved, strict=True)):
        problems += [f"{key}[{i}] {p}" for p in _optimizer_mismatches(optim._optim, entry)]
    return problems


def _optimizer_mismatches(optim: torch.optim.Optimizer, saved: Any) -> list[str]:
    """How a saved optimiser state differs from ``optim``'s parameters (torch checks only the
    group sizes, and a moment of the wrong shape would fail at the first step)."""
    groups = saved.get("param_groups") if isinstance(saved, dict) else None
    states = saved.get("state") if isinstance(saved, dict) else None
    if not isinstance(groups, list) or not isinstance(states, dict):
        return ["is not an optimiser state (no param_groups/state)"]
    if len(groups) != len(optim.param_groups) or any(
        not isinstance(g, dict)
        or not isinstance(g.get("params"), list)
        or len(g["params"]) != len(mine["params"])
        for g, mine in zip(groups, optim.param_groups, strict=False)
    ):
        return ["has parameter groups of other sizes than the model's optimiser"]
    problems = []
    for group, mine in zip(groups, optim.param_groups, strict=True):
        for pid, param in zip(group["params"], mine["params"], strict=True):
            moments = states.get(pid) if isinstance(pid, int) else None
            if not isinstance(moments, dict):
                continue  # no state yet (or a garbled one, which torch's loader reports)
            for name, value in moments.items():
                if isinstance(value, torch.Tensor) and value.dim() and value.shape != param.shape:
                    problems.append(
                        f"{name} of parameter {pid} is {list(value.shape)}, the parameter "
                        f"{list(param.shape)}"
                    )
    return problems


def load_algorithm_state(algorithm: QMIX, state: dict[str, Any], path: str | Path) -> None:
    """Load a checkpoint's algorithm state dict into ``algorithm`` (built from the checkpoint's
    config), or raise :class:`CheckpointError` naming the file and what does not match."""
    problems = _state_mismatches(algorithm, state)
    if not problems:
        try:
            # Tianshou's Algorithm.load_state_dict pops "_optimizers" from the dict it is given
            algorithm.load_state_dict(dict(state))
            return
        except (AttributeError, KeyError, IndexError, RuntimeError, TypeError, ValueError) as err:
            problems = [_first_line(err)]
    more = f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
    raise CheckpointError(
        f"checkpoint {path} does not fit the networks its config builds (edited, or written "
        f"for another version of the env or of bdps-agents): {'; '.join(problems[:3])}{more}"
    )


def evaluate(
    checkpoint: str | Path, episodes: int = 32, seed: int | None = None
) -> dict[str, float]:
    """Greedy episodes with a trained checkpoint: mean/std team return and episode metrics
    (e.g. ``win_rate``)."""
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    cfg, data = load_checkpoint(checkpoint)
    if seed is not None:
        cfg.training.seed = seed
    run = build_run(cfg)
    try:
        load_algorithm_state(run.algorithm, data["algorithm"], checkpoint)
        mean, std = greedy_return(run, episodes)
        metrics = run.test_metrics.pop_means()
    finally:
        run.close()
    return {"episodes": episodes, "return_mean": mean, "return_std": std, **metrics}
