"""The checkpoint file: its format, atomic writes, and safe loading.

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
numpy, torch, the policy's own, the replay sampler's); :mod:`bdps_agents.training.learner_state`
gathers them from a run and puts them back.

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
of the env) is refused by :func:`~bdps_agents.training.learner_state.load_algorithm_state` with
one line naming the file and the first differing entries (missing or unexpected keys, tensor
shapes, Adam moments), for ``bdps eval``, ``bdps render`` and ``--resume`` alike.

Resuming from a checkpoint: :mod:`bdps_agents.training.resume`.
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bdps_agents.config import ExperimentConfig, build_config
from bdps_agents.env_spec import EnvSpec
from bdps_agents.legacy import upgrade_legacy_config
from bdps_agents.training.run_logger import fsync_dir

CHECKPOINT_NAME = "checkpoint.pt"
# 1: a bare torch.save dict (config, algorithm, env_step, num_updates); 2: the checksummed file,
# numpy's legacy generator state as an ndarray; 3: tensors and plain Python data only
CHECKPOINT_FORMAT = 3
_MAGIC = b"BDPS-CHECKPOINT\n"
_HEADER = struct.Struct(">IQ32s")  # format version, payload length, SHA-256 of the payload


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
        # a corrupt length field (e.g. a flipped high bit) must not become a huge allocation
        remaining = os.fstat(f.fileno()).st_size - f.tell()
        payload = f.read(length + 1) if length <= remaining else f.read()
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
        allowed += [
            (reconstruct, f"{module}._reconstruct")
            for module in ("numpy.core.multiarray", "numpy._core.multiarray")
        ]
    return allowed


def _unpickle_refusal(err: Exception) -> str | None:
    """What torch's weights-only unpickler refused to build (a Python global: a class or a
    function, which unpickling would call, or an object of such a class), or None for another
    error."""
    import re

    match = re.search(r"GLOBAL ([\w.]+)|but got <class '([\w.]+)'>", str(err))
    return (match.group(1) or match.group(2)) if match else None


def first_line(err: BaseException) -> str:
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


def env_record(spec: EnvSpec, wrapped: str, from_config: bool) -> dict[str, Any]:
    """What a checkpoint says of its env: the sizes its networks were built for (``sizes``),
    the wrapped env's class or adapter name (``wrapped``) and whether the config's ``env``
    section rebuilds it (``from_config``: false for a script's learner on an env wrapped by
    hand, which ``bdps eval`` cannot build)."""
    return {"sizes": spec.sizes(), "wrapped": wrapped, "from_config": from_config}


def check_env_rebuildable(data: dict[str, Any], path: str | Path) -> None:
    """:class:`CheckpointError` for a checkpoint whose config does not describe its env (a
    learner saved from a script on an env wrapped by hand): rebuilding ``config.env`` would
    build another env (the default adapter) and fail with a misleading size mismatch."""
    env = data.get("env")
    if isinstance(env, dict) and env.get("from_config") is False:
        raise CheckpointError(
            f"{path} was saved from a learner on an env wrapped by hand ({env.get('wrapped')}), "
            "which its config does not describe, so the env cannot be rebuilt here: register the "
            "env as an adapter and build it with make_joint_env(name, **kwargs) before "
            "build_learner (docs/scripting.md), or load it in the script with "
            "Learner.from_checkpoint(path, env=...)"
        )


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
            raise CheckpointError(f"checkpoint {path} cannot be read: {first_line(err)}") from None
        with path.open("rb") as f:
            magic = f.read(4)
        if magic == b"PK\x03\x04":  # a torch zip file, damaged
            raise CheckpointError(
                f"checkpoint {path} is truncated or corrupt: {first_line(err)}"
            ) from None
        raise CheckpointError(
            f"{path} is not a bdps-agents checkpoint (unreadable: {first_line(err)})"
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
    # written before algorithms were registered units: read in the old spelling, quietly
    config = upgrade_legacy_config(data["config"], warn=False)
    return build_config(config, source=str(path)), data
