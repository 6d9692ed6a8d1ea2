"""Any registered algorithm (BDPS, QMIX, ...) for a plain Tianshou 2.0.1 script: a builder,
a masked warm-up and episode metrics, the same parts ``bdps train`` uses.

.. code-block:: python

    env = JointEnv(simple_spread_v3.parallel_env(N=3, max_cycles=25), reward_aggregation="mean")
    learner = build_learner(env, "bdps", num_envs=4, seed=0, bdps={"n_roles": 3})
    collector = learner.collector(train_envs)  # train_envs: 4 JointEnvs in a Tianshou vector env
    warmup(collector, n_episode=learner.config.replay.warmup_episodes)
    learner.algorithm.run_training(OffPolicyTrainerParams(training_collector=collector, ...))
    learner.save("runs/mine/checkpoint.pt")  # bdps eval/render read it (make_joint_env envs)

``Learner.from_checkpoint("runs/x/checkpoint.pt")`` goes the other way: a ``bdps train``
checkpoint (or a saved learner) as a learner in a script. docs/scripting.md has both.

``build_learner`` validates everything it builds: the config sections (pydantic; unknown keys and
bad values name the field), the sizes of every network against the env and each other, and BDPS's
Def. 1 against ``env.episode_limit`` (an unknown episode length is stated in a warning).
README.md, "BDPS in your own Tianshou script", runs it end to end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tianshou.data import Collector
from tianshou.env import BaseVectorEnv

from bdps_agents.algorithms import algorithm_spec, available_algorithms, build_algorithm
from bdps_agents.algorithms.value_decomposition import ValueDecomposition
from bdps_agents.config import CORE_SECTIONS, ExperimentConfig, build_config
from bdps_agents.device import resolve_device
from bdps_agents.env_spec import EnvSpec
from bdps_agents.exploration import LinearSchedule, check_sub_buffers, warmup
from bdps_agents.joint_env import JointEnv
from bdps_agents.legacy import upgrade_legacy_config
from bdps_agents.policy import MultiAgentQPolicy
from bdps_agents.replay import EpisodeReplayBuffer
from bdps_agents.training import EpisodeMetrics, make_joint, make_replay_buffer
from bdps_agents.training.checkpoint import (
    check_env_rebuildable,
    env_record,
    load_checkpoint,
    write_checkpoint,
)
from bdps_agents.training.learner_state import load_algorithm_state

__all__ = ["EpisodeMetrics", "Learner", "build_learner", "warmup"]


@dataclass
class Learner:
    """What :func:`build_learner` makes: use ``policy`` in Collectors, ``buffer`` as the
    training Collector's buffer, ``algorithm.run_training`` to train. ``eps_schedule(env_step)``
    is the config's ε schedule; ``config`` the whole validated configuration; ``env`` what
    :func:`~bdps_agents.training.checkpoint.env_record` says of the env it was built for (its
    sizes, and whether ``config.env`` rebuilds it)."""

    policy: MultiAgentQPolicy
    algorithm: ValueDecomposition
    buffer: EpisodeReplayBuffer
    config: ExperimentConfig
    eps_schedule: LinearSchedule
    env: dict[str, Any] = field(default_factory=dict)

    def state_dict(self) -> dict[str, Any]:
        """The config (as JSON-able data), the algorithm's ``state_dict`` (networks, targets,
        optimiser, update count, the policy's generators) and the env's record (``env``):
        plain data and tensors, so ``torch.load(path, weights_only=True)`` reads it back. The
        replay buffer is not in it."""
        return {
            "config": self.config.model_dump(mode="json"),
            "algorithm": self.algorithm.state_dict(),
            "env": dict(self.env),
        }

    def collector(self, envs: BaseVectorEnv, **kwargs: Any) -> Collector:
        """Tianshou's ``Collector(policy, envs, buffer, **kwargs)`` for the training envs, after
        checking that ``envs`` has as many envs as ``build_learner(num_envs=...)`` said (one
        replay sub-buffer each)."""
        check_sub_buffers(self.buffer, envs.env_num)
        return Collector(self.policy, envs, self.buffer, **kwargs)

    def save(self, path: str | Path) -> Path:
        """Write :meth:`state_dict` as a checkpoint file (atomically, checksummed: the format of
        ``bdps train``'s ``checkpoint.pt``). ``bdps eval`` and ``bdps render`` read it when the
        env came from :func:`~bdps_agents.joint_env.make_joint_env` (a registered adapter);
        :meth:`from_checkpoint` reads it in any case."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_checkpoint(path, self.state_dict())
        return path

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, env: JointEnv | None = None, num_envs: int | None = None
    ) -> Learner:
        """A learner from a checkpoint file: ``bdps train``'s ``checkpoint.pt`` or one that
        :meth:`save` wrote (read safely by
        :func:`~bdps_agents.training.checkpoint.load_checkpoint`; a plain ``torch.load`` cannot
        read the file's header). ``env``: the env to act in (default: a new one from the
        checkpoint's ``config.env``; needed when the learner was built on an env wrapped by
        hand). ``num_envs``: as in :meth:`from_state_dict`."""
        config, data = load_checkpoint(path)
        if env is None:
            check_env_rebuildable(data, path)
            env = make_joint(config.env)
        return cls.from_state_dict(env, data, num_envs)

    @classmethod
    def from_state_dict(
        cls, env: JointEnv, state: dict[str, Any], num_envs: int | None = None
    ) -> Learner:
        """A learner built from ``state``'s config for ``env``, with its saved state loaded
        (it continues exactly where ``state_dict`` was taken, given the same replay).
        ``num_envs``: training envs (default: the saved config's ``env.num_train_envs``)."""
        if (
            not isinstance(state, dict)
            or not {"config", "algorithm"} <= state.keys()
            or not isinstance(state["algorithm"], dict)
        ):
            raise ValueError("state must be a dict from Learner.state_dict() (config, algorithm)")
        saved_env = state.get("env") or {}  # not in CLI checkpoints of older versions
        mismatch = EnvSpec.of(env).size_mismatch(saved_env.get("sizes", {}))
        if saved_env.get("sizes") and mismatch:
            raise ValueError(f"this learner does not fit the env: {mismatch}")
        saved = upgrade_legacy_config(state["config"], warn=False)  # maybe an older spelling
        config = build_config(saved, source="Learner.from_state_dict")
        learner = build_learner(
            env,
            config.algorithm.name,
            num_envs=num_envs or config.env.num_train_envs,
            config=config,
        )
        # a ValueError (CheckpointError) naming what does not fit, not Tianshou's KeyError
        load_algorithm_state(learner.algorithm, state["algorithm"], "(Learner.from_state_dict)")
        return learner


def build_learner(
    env: JointEnv,
    algo: str = "bdps",
    *,
    num_envs: int = 1,
    seed: int | None = None,
    config: ExperimentConfig | None = None,
    **sections: dict[str, Any],
) -> Learner:
    """A consistent policy + algorithm + replay buffer for ``env`` (any :class:`JointEnv`).

    :param algo: a registered algorithm (``bdps``, ``qmix``, ...:
        :func:`bdps_agents.algorithms.available_algorithms`); its default network sharing unless
        ``network={"sharing": ...}`` says otherwise.
    :param num_envs: training envs the Collector will step (one replay sub-buffer each): the
        size of the training vector env (:meth:`Learner.collector` and :func:`warmup` check it).
    :param seed: seeds the network initialisation (without touching torch's global
        generator), the exploration and role generators and the replay sampler (default:
        ``training.seed``, 0).
    :param config: a whole configuration to start from (default: the library's defaults).
    :param sections: config sections as dicts, applied over ``config``: ``network``,
        ``exploration``, ``replay``, ``algorithm``, ``training``, or an algorithm's own
        (e.g. ``bdps={"n_roles": 3}``).
    """
    if not isinstance(env, JointEnv):
        raise TypeError(
            f"build_learner needs a JointEnv, got {type(env).__name__}: wrap a PettingZoo "
            "parallel env as JointEnv(env)"
        )
    known = available_algorithms()
    if algo not in known:
        raise ValueError(f"algo must be one of {known}, got {algo!r}")
    allowed = [name for name in CORE_SECTIONS if name != "env"] + known
    unknown = sorted(set(sections) - set(allowed))
    if unknown:
        raise TypeError(f"unknown config section(s) {unknown}; sections are {allowed}")
    if not isinstance(num_envs, int) or isinstance(num_envs, bool) or num_envs < 1:
        raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
    data = (config or ExperimentConfig()).model_dump(mode="json")
    for name, values in sections.items():
        if not isinstance(values, dict):
            raise TypeError(f"config section {name} must be a dict, got {type(values).__name__}")
    given = sections.get("algorithm", {}).get("name", algo)
    if given != algo:
        raise ValueError(f"algorithm={{'name': {given!r}}} contradicts algo={algo!r}: give one")
    previous = data["algorithm"]["name"]
    if previous != algo:
        data.pop(previous, None)  # the previous algorithm's own section (it would be refused)
        if data["network"]["sharing"] not in algorithm_spec(algo).sharing:
            data["network"]["sharing"] = None  # the new algorithm's default
    data["algorithm"]["name"] = algo
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    if seed is not None:
        data["training"]["seed"] = seed
    if env.source is not None:  # a registered adapter's env: bdps eval can rebuild it
        data["env"] = {**data["env"], **env.source}
    data["env"]["num_train_envs"] = num_envs
    cfg = build_config(data, source="build_learner")
    resolve_device(cfg.training.device)  # a CUDA device this machine lacks: DeviceError
    spec = EnvSpec.of(env)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.training.seed)
        algorithm = build_algorithm(cfg, spec)
    ex = cfg.exploration
    unwrapped = getattr(env.env, "unwrapped", env.env)  # its class names the env in messages
    return Learner(
        policy=algorithm.policy,
        algorithm=algorithm,
        buffer=make_replay_buffer(cfg, spec),
        config=cfg,
        eps_schedule=LinearSchedule(ex.eps_start, ex.eps_end, ex.anneal_steps),
        env=env_record(spec, type(unwrapped).__name__, from_config=env.source is not None),
    )
