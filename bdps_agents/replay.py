"""Whole-episode replay on top of Tianshou's ``VectorReplayBuffer``.

Recurrent value-decomposition learners train on whole episodes from their first step with a zero
hidden state (PyMARL style). Tianshou's buffer stores transitions; this subclass adds:

* episode bookkeeping done incrementally in ``add`` (``_episode_len[start] = length`` once an
  episode is complete), so sampling never scans the buffer;
* each observation stored once (``ignore_obs_next``); only the observation that follows the
  *last* step of an episode is kept on the side (a small pool of rows, copied, one per stored
  episode), because a truncated episode bootstraps from it;
* the policy's recurrent state (``policy.hidden_state``) is not stored: training re-computes it;
  other policy outputs (BDPS's roles and groups chosen while acting) are kept and replayed;
* ``hasnull`` checks each added batch instead of copying the whole buffer after every collect
  step (Tianshou 2.0.1's trainer calls it every step; the stock version is O(buffer size));
* episodes never splice (below).

Interrupted episodes
--------------------
Tianshou's buffers start a new episode only after a ``done`` step. A Collector that resets its
envs while the buffer keeps its data (``OffPolicyTrainer`` at the start of every
``run_training``; ``collect(n_step=...)`` then ``reset(reset_buffer=False)``) would otherwise
append the next episode to the unfinished steps of the last one. Policies of this library output
``policy.episode_step`` (the step index within the episode, 0 after a reset) with every action;
``add`` compares it with the steps stored of the env's current episode, and when they disagree
the unfinished episode is **discarded**: its steps stay in their slots until overwritten but are
never sampled (it has no observation after its last step to bootstrap from). The same holds for
an episode whose start was lost to ``reset_buffer()``. ``interrupted_episodes`` counts them.
Without ``episode_step`` (a policy of another library) no check is possible; batches without
the policy outputs a buffer already stores (BDPS roles/groups, e.g. from
``collect(random=True)``) are refused.

Memory (see :meth:`EpisodeReplayBuffer.memory_bytes`): observations are stored as the env gives
them (``JointEnv``: float32 ``obs``/``state``, int8 ``mask``/``alive``); the rest is compact:
``act`` in the smallest unsigned integer type that holds ``n_actions - 1`` (uint8 up to 256
actions; ``n_actions`` is the width of ``obs.mask`` unless given), ``rew`` float32, flags bool,
``info`` not stored (the learner never reads it; ``info_keys`` keeps some, as float32),
``_episode_len`` in the smallest type that holds the sub-buffer size, and Tianshou's per-slot
``np.arange`` index arrays (16 bytes per slot) replaced by ranges made on demand. Tianshou would
upcast ``rew`` to float64 on the first ``add``; the storage is allocated here instead.

``sample_indices`` returns episode *start* indices; :meth:`episode_batch` turns them into padded
``(B, T)`` arrays with a ``valid`` mask.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, cast

import numpy as np
from tianshou.data import Batch, ReplayBuffer, VectorReplayBuffer
from tianshou.data.batch import create_value
from tianshou.data.types import RolloutBatchProtocol


def _has_nan(batch: Batch) -> bool:
    """NaN anywhere in the float leaves. ``np.sum`` propagates NaN and is far cheaper per step
    than ``Batch.hasnull`` (a recursive transform that dominated collection time)."""
    for value in batch.values():
        if isinstance(value, np.ndarray):  # first: isinstance(x, Batch) is a slow Protocol check
            if value.dtype.kind == "f" and np.isnan(value.sum()):
                return True
        elif isinstance(value, Batch) and _has_nan(value):
            return True
    return False


def batch_nbytes(value: object) -> int:
    """Bytes held by the arrays of a (nested) Batch or an array; 0 for anything else."""
    if isinstance(value, Batch):
        return sum(batch_nbytes(v) for v in value.values())
    if isinstance(value, np.ndarray):
        return value.nbytes
    return 0


class _IndexRange:
    """Stands in for Tianshou's per-slot ``np.arange(size)`` (``ReplayBuffer._indices``, int64,
    used only to turn a slice into indices in ``buffer[slice]``): made when indexed."""

    __slots__ = ("size",)

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.arange(self.size)[key]


def stored_bytes(buffer: ReplayBuffer) -> dict[str, int]:
    """Bytes a Tianshou buffer holds, by part: ``transitions`` (every array of ``_meta``),
    ``indices`` (Tianshou's per-slot index arrays of the buffer and its sub-buffers) and, for
    an :class:`EpisodeReplayBuffer`, its episode bookkeeping (see :meth:`memory_bytes`)."""
    if isinstance(buffer, EpisodeReplayBuffer):
        return buffer.memory_bytes()
    parts = [buffer, *getattr(buffer, "buffers", ())]
    return {
        "transitions": batch_nbytes(buffer._meta),
        "indices": sum(batch_nbytes(getattr(b, "_indices", None)) for b in parts),
    }


def raw_step_bytes(obs: Batch) -> int:
    """Bytes of one joint observation as the env produces it: float32 ``obs`` and ``state`` plus
    the int8 action ``mask`` (one byte per entry), from the shapes of a stored ``obs`` Batch
    (leading dimension = slots)."""
    return (
        int(np.prod(obs.obs.shape[1:])) * 4
        + int(np.prod(obs.state.shape[1:])) * 4
        + int(np.prod(obs.mask.shape[1:]))
    )


# policy outputs used while adding, not stored: the recurrent state (training re-computes it) and
# the step index within the episode (module docstring, "Interrupted episodes")
_NOT_STORED = frozenset({"hidden_state", "episode_step"})


class EpisodeReplayBuffer(VectorReplayBuffer):
    """See the module docstring. ``n_actions`` fixes the stored action type (default: the width
    of ``obs.mask`` on the first ``add``); ``info_keys`` are the ``info`` entries to store."""

    def __init__(
        self,
        total_size: int,
        buffer_num: int,
        seed: int = 0,
        n_actions: int | None = None,
        info_keys: Iterable[str] = (),
    ) -> None:
        if total_size < buffer_num:
            raise ValueError(f"total_size ({total_size}) must be >= buffer_num ({buffer_num})")
        super().__init__(total_size, buffer_num, ignore_obs_next=True)
        self._sub_size = self.maxsize // buffer_num
        for buf in (self, *self.buffers):
            buf._indices = _IndexRange(buf.maxsize)
        # length of the complete episode starting at an index; 0 elsewhere
        self._episode_len = np.zeros(self.maxsize, dtype=np.min_scalar_type(self._sub_size))
        # the observation after each complete episode's last step: a row of a pool, by start
        self._final_pool: Batch | None = None
        self._final_row: dict[int, int] = {}
        self._free_rows: list[int] = []
        self._n_actions = n_actions
        self._info_keys = tuple(info_keys)
        self._act_dtype: np.dtype | None = None  # as stored
        self._act_out_dtype: np.dtype | None = None  # as the policy gave it; replayed as such
        self._has_null = False
        self._sample_rng = np.random.default_rng(seed)
        # per sub-buffer: its current episode's start is not stored (it began before a
        # reset_buffer, or its step count disagreed): not recorded when it ends
        self._orphan = np.zeros(buffer_num, dtype=bool)
        self.interrupted_episodes = 0  # unfinished episodes discarded (module docstring)

    # -- writing ---------------------------------------------------------------------------------
    def _compact(self, batch: Batch) -> Batch:
        """What is stored of one added batch, in the stored dtypes."""
        act = np.asarray(batch.act)
        if self._act_out_dtype is None:
            self._choose_act_dtype(batch.obs, act)
        narrowed = self._act_dtype != act.dtype and act.size
        if narrowed and (act.min() < 0 or act.max() >= self._n_actions):
            raise ValueError(
                f"actions must lie in [0, {self._n_actions}) to be stored as "
                f"{self._act_dtype}, got [{act.min()}, {act.max()}]"
            )
        kept = Batch(
            obs=batch.obs,
            act=act.astype(self._act_dtype, copy=False),
            rew=np.asarray(batch.rew, dtype=np.float32),
            terminated=np.asarray(batch.terminated, dtype=bool),
            truncated=np.asarray(batch.truncated, dtype=bool),
        )
        if self._info_keys:
            info = batch.info
            kept.info = Batch({k: np.asarray(info[k], dtype=np.float32) for k in self._info_keys})
        policy_out = batch.get("policy", Batch())
        extra = {k: policy_out[k] for k in policy_out.get_keys() if k not in _NOT_STORED}
        if extra:
            kept.policy = Batch(extra)
        return kept

    def _check_policy_outputs(self, kept: Batch) -> None:
        """Refuse a batch whose policy outputs (BDPS roles/groups) differ from the stored ones:
        replaying a step without them would give it role 0 / group 0 silently."""
        if len(self) == 0:
            return
        stored = set(self._meta.get("policy", Batch()).get_keys())
        given = set(kept.get("policy", Batch()).get_keys())
        if stored != given:
            raise ValueError(
                f"this batch carries policy outputs {sorted(given)} but the buffer's "
                f"{len(self)} stored steps carry {sorted(stored)}: every step must come from the "
                "same kind of policy (collect(random=True) bypasses the policy and stores no "
                "roles/groups; prefill with bdps_agents.pipeline.warmup instead, or "
                "reset the buffer)"
            )

    def _restart_interrupted(self, batch: Batch, buffer_ids: np.ndarray) -> None:
        """Discard the unfinished episode of every env whose ``policy.episode_step`` says that a
        new episode began (0) or that the stored steps are not its past (module docstring)."""
        policy_out = batch.get("policy", Batch())
        if "episode_step" not in policy_out.get_keys():
            return
        steps = np.asarray(policy_out.episode_step).reshape(-1)
        for j, b in enumerate(np.asarray(buffer_ids).tolist()):
            sub = self.buffers[b]
            step = int(steps[j])
            if step == 0:
                self._orphan[b] = False
            elif self._orphan[b] or step == sub._ep_len:
                continue
            else:  # a continuation whose start is not stored
                self._orphan[b] = True
            if sub._ep_len > 0 or self._orphan[b]:
                if sub._ep_len > 0:
                    self.interrupted_episodes += 1
                sub._ep_return, sub._ep_len, sub._ep_start_idx = 0.0, 0, sub._insertion_idx

    def _choose_act_dtype(self, obs: Batch, act: np.ndarray) -> None:
        self._act_out_dtype = act.dtype
        if self._n_actions is None and isinstance(obs, Batch) and "mask" in obs.get_keys():
            self._n_actions = int(np.shape(obs.mask)[-1])
        if act.dtype.kind in "iu" and self._n_actions is not None:
            self._act_dtype = np.min_scalar_type(max(self._n_actions - 1, 0))
        else:  # no action count known (or not integer actions): keep the given type
            self._act_dtype = act.dtype

    def _allocate(self, kept: Batch) -> None:
        """Allocate ``_meta`` in the stored dtypes before Tianshou's first write: on its own,
        Tianshou would allocate ``rew`` as float64. (A key that appears later is allocated by
        Tianshou from the already compact batch.)"""
        template = Batch({**{k: kept[k] for k in kept.get_keys()}, "done": kept.terminated})
        self._meta = cast(RolloutBatchProtocol, create_value(template, self.maxsize, stack=False))
        self._set_batch_for_children()

    def add(self, batch: Batch, buffer_ids: np.ndarray | list[int] | None = None):  # type: ignore[override]
        kept = self._compact(batch)
        self._check_policy_outputs(kept)
        if len(self._meta.get_keys()) == 0:
            self._allocate(kept)
        if not self._has_null and _has_nan(kept):
            self._has_null = True
        if buffer_ids is None:
            buffer_ids = np.arange(self.buffer_num)
        self._restart_interrupted(batch, np.asarray(buffer_ids))
        result = super().add(kept, buffer_ids)
        insertion, _, ep_len, ep_start = result
        # whatever lived at the overwritten slots is gone; an episode loses its start first
        hit = insertion[self._episode_len[insertion] != 0]
        if len(hit):
            self._episode_len[hit] = 0
            for i in hit.tolist():
                self._free_rows.append(self._final_row.pop(i))
        done = np.flatnonzero(np.logical_or(kept.terminated, kept.truncated))
        if len(done):
            obs_next = batch.obs_next
            ids = np.asarray(buffer_ids)
            for j in done.tolist():
                if self._orphan[ids[j]]:  # its start is not stored: not replayable
                    self._orphan[ids[j]] = False
                    continue
                if ep_len[j] > self._sub_size:  # it overwrote its own start: not replayable
                    continue
                start = int(ep_start[j])
                self._episode_len[start] = ep_len[j]
                self._store_final(start, obs_next[j])
        return result

    def _store_final(self, start: int, obs: Batch) -> None:
        """Copy the observation after the episode starting at ``start`` into a pool row."""
        if not self._free_rows:
            old = self._final_pool
            size = 0 if old is None else len(old)
            grown = max(4, size + size // 2)
            pool = cast(Batch, create_value(obs, grown, stack=True))  # a Batch, as obs is
            if old is not None:
                pool[:size] = old
            self._final_pool = pool
            self._free_rows.extend(range(grown - 1, size - 1, -1))
        row = self._free_rows.pop()
        assert self._final_pool is not None  # free rows exist only in an allocated pool
        self._final_pool[row] = obs
        self._final_row[start] = row

    def reset(self, keep_statistics: bool = False) -> None:
        super().reset(keep_statistics)
        if hasattr(self, "_episode_len"):
            self._episode_len[:] = 0
            self._final_pool = None
            self._final_row.clear()
            self._free_rows.clear()
            self._has_null = False
            # an episode in progress lost its stored steps (with keep_statistics Tianshou keeps
            # counting it from a start that is gone): not recorded when it ends
            for b, sub in enumerate(self.buffers):
                self._orphan[b] = sub._ep_len > 0
                sub._ep_return, sub._ep_len, sub._ep_start_idx = 0.0, 0, sub._insertion_idx

    def hasnull(self) -> bool:
        return self._has_null

    # -- memory ----------------------------------------------------------------------------------
    def memory_bytes(self) -> dict[str, int]:
        """Bytes held, by part: ``transitions`` (every array of ``_meta``), ``episodes``
        (``_episode_len``), ``final_obs`` (the pool, at its allocated size, plus its Python
        bookkeeping as ``sys.getsizeof`` counts it) and ``indices`` (0: made on demand)."""
        entries = len(self._final_row)
        bookkeeping = (
            sys.getsizeof(self._final_row)
            + sys.getsizeof(self._free_rows)
            + 28 * (2 * entries + len(self._free_rows))  # the int objects they hold
        )
        return {
            "transitions": batch_nbytes(self._meta),
            "episodes": self._episode_len.nbytes,
            "final_obs": batch_nbytes(self._final_pool) + bookkeeping,
            "indices": 0,
        }

    def bytes_per_step(self) -> float:
        """Bytes held per slot (``maxsize``): the cost of one stored step once the buffer is full
        (before that, the final observations of the episodes still to come are missing)."""
        return sum(self.memory_bytes().values()) / self.maxsize

    def raw_bytes_per_step(self) -> int:
        """One joint observation as the env produces it: float32 obs + float32 state + int8
        mask (the reference for :meth:`bytes_per_step`); needs a first ``add``."""
        return raw_step_bytes(cast(Batch, self._meta.obs))

    # -- reading ---------------------------------------------------------------------------------
    @property
    def num_episodes(self) -> int:
        return int(np.count_nonzero(self._episode_len))

    def sample_indices(self, batch_size: int | None) -> np.ndarray:
        """Start indices of ``batch_size`` complete episodes (uniform, with replacement when fewer
        are stored). Empty when no episode is complete yet."""
        starts = np.flatnonzero(self._episode_len)
        if batch_size is None or batch_size == 0 or len(starts) == 0:
            return starts
        replace = len(starts) < batch_size
        return self._sample_rng.choice(starts, size=batch_size, replace=replace)

    def episode_indices(self, starts: np.ndarray) -> tuple[np.ndarray, ...]:
        """``(idx (B, T), valid (B, T), lengths (B,))``; padded slots repeat the start index. T:
        the longest of these episodes."""
        lengths = self._episode_len[starts].astype(np.int64)
        if np.any(lengths == 0):
            raise ValueError("episode_indices got an index that is not a complete episode start")
        T = int(lengths.max())
        t = np.arange(T)
        offset = (starts // self._sub_size) * self._sub_size
        idx = (starts[:, None] - offset[:, None] + t[None]) % self._sub_size + offset[:, None]
        valid = t[None] < lengths[:, None]
        return np.where(valid, idx, starts[:, None]), valid, lengths

    def episode_batch(self, starts: np.ndarray) -> Batch:
        """Padded episodes for the given start indices (to the longest of them).

        Observation-like leaves (``obs``) have ``T + 1`` steps: step ``L`` of an episode of length
        ``L`` is the observation after its last action; later slots are zeros. Transition leaves
        (``act``, ``rew``, ``terminated``, ``truncated``, ``policy``) have ``T`` steps (padded
        slots repeat the first step). ``valid`` is ``(B, T)``. ``act`` has the type the policy
        gave (int64), ``rew`` is float32 (what the learner converts it to), ``lengths`` int64.
        """
        idx, valid, lengths = self.episode_indices(starts)
        B, T = idx.shape
        rows = np.arange(B)
        obs = cast(Batch, self._meta.obs)[idx]
        assert self._final_pool is not None  # a complete episode has its final observation
        final = self._final_pool[[self._final_row[int(s)] for s in starts]]

        def with_final(seq: np.ndarray, last: np.ndarray) -> np.ndarray:
            out = np.zeros((B, T + 1, *seq.shape[2:]), dtype=seq.dtype)
            keep = valid.reshape(B, T, *([1] * (seq.ndim - 2)))
            out[:, :T] = np.where(keep, seq, 0)
            out[rows, lengths] = last
            return out

        seq_obs = Batch({k: with_final(obs[k], final[k]) for k in obs.get_keys()})
        policy = self._meta.get("policy", Batch())
        replayed = Batch({k: policy[k][idx] for k in policy.get_keys()})
        return Batch(
            policy=replayed,
            obs=seq_obs,
            act=cast(np.ndarray, self._meta.act)[idx].astype(self._act_out_dtype),
            rew=np.where(valid, self._meta.rew[idx], np.float32(0)),
            terminated=np.where(valid, self._meta.terminated[idx], False),
            truncated=np.where(valid, self._meta.truncated[idx], False),
            valid=valid,
            lengths=lengths,
        )
