"""Where tensors live: ``training.device`` resolved, host arrays moved to it, and random draws
from a CPU generator used on another device.

Training on a GPU (``training.device: cuda``) keeps acting on the CPU: the collector's policy is
this process's algorithm, on the CPU, and the gradient steps run on a copy of it on the device
(:class:`bdps_agents.learner_process.DeviceLearner`, or the learner process with
``training.overlap_learning``), whose acting networks are copied back after each update. The
learner's code is device-agnostic: it builds its tensors on the device of its parameters.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import torch

from bdps_agents.config import DEVICE_PATTERN, ConfigError


class DeviceError(ConfigError):
    """``training.device`` names a device this machine does not have."""


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when available) as a ``torch.device``;
    :class:`DeviceError` for a CUDA device this machine lacks (never a silent CPU run)."""
    if not re.match(DEVICE_PATTERN, name):
        raise DeviceError(
            f"training.device={name!r} is not a device: use cpu, cuda, cuda:N or auto"
        )
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"training.device={name!r} but this machine has no CUDA device (torch "
                f"{torch.__version__}, CUDA build: {torch.version.cuda or 'no'}): use "
                "training.device=cpu or auto"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise DeviceError(
                f"training.device={name!r} but this machine has {count} CUDA device(s) "
                f"(cuda:0..cuda:{count - 1})"
            )
    return device


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of a module's first parameter (CPU for a module without any)."""
    for parameter in module.parameters():
        return parameter.device
    return torch.device("cpu")


def host_to_device(array: Any, device: torch.device, dtype: torch.dtype | None = None):
    """A host array as a tensor on ``device``: on the CPU a view where possible (as
    ``torch.as_tensor``); elsewhere through pinned memory with a non-blocking copy, so that the
    copies of one batch queue behind each other without waiting."""
    tensor = torch.as_tensor(np.asarray(array), dtype=dtype)
    if device.type == "cpu":
        return tensor
    return tensor.pin_memory().to(device, non_blocking=True)


def randn_on(
    shape: torch.Size | tuple[int, ...],
    generator: torch.Generator | None,
    like: torch.Tensor,
) -> torch.Tensor:
    """Standard normal noise of ``like``'s dtype and device, drawn from ``generator`` on its own
    device (the policies' generators are CPU ones: a CUDA ``randn`` refuses them). On the CPU
    this is the same draw as ``torch.randn(..., generator=generator)``."""
    where = like.device if generator is None else generator.device
    noise = torch.randn(shape, generator=generator, dtype=like.dtype, device=where)
    return noise.to(like.device, non_blocking=True)


def state_to_cpu(value: Any) -> Any:
    """A state (nested dicts, lists and tuples of tensors and plain data) with every tensor on
    the CPU: what crosses a process boundary or goes into a checkpoint."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        out = type(value)((k, state_to_cpu(v)) for k, v in value.items())
        if hasattr(value, "_metadata"):  # a module's state_dict: load_state_dict reads it
            out._metadata = value._metadata  # type: ignore[attr-defined]
        return out
    if isinstance(value, list | tuple):
        return type(value)(state_to_cpu(v) for v in value)
    return value
