"""From a config to a trained checkpoint, with Tianshou's own Collector and OffPolicyTrainer.

:func:`build_run` wires the pieces (vector envs, policy, algorithm, replay, collectors);
:func:`train` runs them and writes TensorBoard + CSV logs, a learning-curve PNG and checkpoints;
:func:`evaluate` reloads a checkpoint and plays greedy episodes.

One module per job:

- :mod:`~bdps_agents.training.build`: envs, replay buffer, the :class:`Run` (the algorithm and
  its policy come from the registry: :func:`bdps_agents.algorithms.build_algorithm`)
- :mod:`~bdps_agents.training.loop`: the driver (:func:`train`)
- :mod:`~bdps_agents.training.plan`: the budget cut into epochs (:class:`EpochPlan`)
- :mod:`~bdps_agents.training.checkpoint`: the checkpoint file format, safe loading
- :mod:`~bdps_agents.training.learner_state`: what of a run a checkpoint holds, and restoring it
- :mod:`~bdps_agents.training.resume`: continuing a killed run
- :mod:`~bdps_agents.training.run_dir`: the log directory, its files and its lock
- :mod:`~bdps_agents.training.run_logger`: TensorBoard + ``metrics.csv`` + progress bar
- :mod:`~bdps_agents.training.evaluation`: greedy episodes (:func:`evaluate`)
"""

from bdps_agents.env_spec import EnvSpec
from bdps_agents.memory import (
    DEFAULT_EPISODE_SLOTS,
    check_replay_memory,
    replay_bytes_per_step,
    reuse_freed_memory,
)
from bdps_agents.training.build import (
    EpisodeMetrics,
    Run,
    build_run,
    make_joint,
    make_replay_buffer,
    make_vector_env,
    seed_everything,
)
from bdps_agents.training.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_NAME,
    CheckpointError,
    atomic_write,
    check_env_rebuildable,
    env_record,
    load_checkpoint,
    remove_stale_temp_files,
    write_checkpoint,
)
from bdps_agents.training.evaluation import evaluate, greedy_return
from bdps_agents.training.learner_state import load_algorithm_state, save_checkpoint
from bdps_agents.training.loop import EnvWorkerError, TrainResult, train
from bdps_agents.training.plan import EpochPlan, collect_step
from bdps_agents.training.resume import (
    RESUMABLE_CHANGES,
    check_resumable,
    check_resume_progress,
    restore_run,
)
from bdps_agents.training.run_dir import (
    RUN_FILE_PATTERNS,
    RunDirError,
    default_logdir,
    run_dir_lock,
    run_files,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_NAME",
    "DEFAULT_EPISODE_SLOTS",
    "RESUMABLE_CHANGES",
    "RUN_FILE_PATTERNS",
    "CheckpointError",
    "EnvSpec",
    "EnvWorkerError",
    "EpisodeMetrics",
    "EpochPlan",
    "Run",
    "RunDirError",
    "TrainResult",
    "atomic_write",
    "build_run",
    "check_env_rebuildable",
    "check_replay_memory",
    "check_resumable",
    "check_resume_progress",
    "collect_step",
    "default_logdir",
    "env_record",
    "evaluate",
    "greedy_return",
    "load_algorithm_state",
    "load_checkpoint",
    "make_joint",
    "make_replay_buffer",
    "make_vector_env",
    "remove_stale_temp_files",
    "replay_bytes_per_step",
    "restore_run",
    "reuse_freed_memory",
    "run_dir_lock",
    "run_files",
    "save_checkpoint",
    "seed_everything",
    "train",
    "write_checkpoint",
]
