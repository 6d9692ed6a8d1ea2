"""What of a run a checkpoint holds, and putting it back: the algorithm's state dict (checked
against the networks it is loaded into), the random generators, the whole checkpoint of a
:class:`~bdps_agents.training.build.Run` (:func:`save_checkpoint`)."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bdps_agents.algorithms.value_decomposition import ValueDecomposition
from bdps_agents.training.build import Run
from bdps_agents.training.checkpoint import (
    CheckpointError,
    env_record,
    first_line,
    write_checkpoint,
)


def rng_states(run: Run) -> dict[str, Any]:
    """The global random generators (Python, numpy, torch) and the replay sampler's, for a
    checkpoint."""
    # the policy's own generators travel in the algorithm's state_dict (get_extra_state);
    # all plain data (numpy's key array as a list), so that torch.load(weights_only=True) reads it
    state = np.random.get_state()  # legacy=True: a tuple for the legacy MT19937 generator
    if not isinstance(state, tuple):
        raise TypeError("numpy's global generator is not the legacy MT19937; cannot save it")
    kind, key, pos, has_gauss, gauss = state
    states = {
        "python": random.getstate(),
        "numpy": (kind, key.tolist(), pos, has_gauss, gauss),
        "torch": torch.get_rng_state(),
        "replay_sampler": run.buffer._sample_rng.bit_generator.state,
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # one state per CUDA device
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(run: Run, states: dict[str, Any]) -> None:
    """Put back what :func:`rng_states` saved (and the policy's generators of older files)."""
    random.setstate(states["python"])
    kind, key, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, np.asarray(key, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(states["torch"])
    cuda = states.get("cuda")
    # written on a machine with the same number of CUDA devices: put back; else (e.g. a GPU
    # run resumed on a CPU) there is nothing to put it in
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
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
        "env": env_record(run.spec, run.cfg.env.adapter, from_config=True),
        "lr_schedulers": [s.state_dict() for s in algorithm.lr_schedulers],
        "env_step": env_step,  # total, warm-up included
        "num_updates": algorithm.num_updates,  # for reading; restored from "algorithm"
        "eps_training": run.policy.eps_training,
        "rng": rng_states(run),
        "saved_at": time.time(),
    }
    if progress is not None:
        data["progress"] = progress
    write_checkpoint(path, data)


def _tensor_shape(value: Any) -> str:
    return f"{list(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__


def _state_mismatches(algorithm: ValueDecomposition, state: dict[str, Any]) -> list[str]:
    """How ``state`` (a checkpoint's algorithm state dict) differs from what ``algorithm``
    expects: missing and unexpected entries, tensor shapes, the optimiser states."""
    expected = algorithm.state_dict()
    optimizers = expected.pop(algorithm._STATE_DICT_KEY_OPTIMIZERS)
    # older checkpoints lack the extra state (ValueDecomposition._load_from_state_dict allows that)
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


def load_algorithm_state(
    algorithm: ValueDecomposition, state: dict[str, Any], path: str | Path
) -> None:
    """Load a checkpoint's algorithm state dict into ``algorithm`` (built from the checkpoint's
    config), or raise :class:`CheckpointError` naming the file and what does not match."""
    problems = _state_mismatches(algorithm, state)
    if not problems:
        try:
            # Tianshou's Algorithm.load_state_dict pops "_optimizers" from the dict it is given
            algorithm.load_state_dict(dict(state))
            return
        except (AttributeError, KeyError, IndexError, RuntimeError, TypeError, ValueError) as err:
            problems = [first_line(err)]
    more = f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
    raise CheckpointError(
        f"checkpoint {path} does not fit the networks its config builds (edited, or written "
        f"for another version of the env or of bdps-agents): {'; '.join(problems[:3])}{more}"
    )
