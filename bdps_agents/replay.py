"""Whole-episode replay on top of Tianshou's ``VectorReplayBuffer``.

Recurrent value-decomposition learners train on whole episodes from their first step with a zero
hidden state (PyMARL style). Tianshou's buffer stores transitions; this subclass adds:

* episode bookkeeping done incrementally in ``add`` (``_episode_len[start] = length`` once an
  episode is complete), so sampling never scans the buffer;
* each observation stored once (``ignore_obs_next``); only the observation that follows the
  *last* step of an episode is kept on the side, because a truncated episode bootstraps from it;
* the policy's recurrent state (``policy.hidden_state``) is not stored: training re-computes it;
  other policy outputs (BDPS's roles and groups chosen while acting) are kept and replayed;
* ``hasnull`` checks each added batch instead of copying the whole buffer after every collect
  step (Tianshou 2.0.1's trainer calls it every step; the stock version is O(buffer size)).

``sample_indices`` returns episode *start* indices; :meth:`episode_batch` turns them into padded
``(B, T)`` arrays with a ``valid`` mask.
"""

from __future__ import annotations

import numpy as np
from tianshou.data import Batch, VectorReplayBuffer


def _has_nan(batch: Batch) -> bool:
    """NaN anywhere in the float leaves. ``np.sum`` propagates NaN and is far cheaper per step
    than ``Batch.hasnull`` (a recursive transform that dominated collection time)."""
    for value in batch.values():
        if isinstance(value, Batch):
            if _has_nan(value):
                return True
        elif isinstance(value, np.ndarray) and value.dtype.kind == "f":
            if np.isnan(value.sum()):
                return True
    return False


class EpisodeReplayBuffer(VectorReplayBuffer):
    def __init__(self, total_size: int, buffer_num: int, seed: int = 0) -> None:
        if total_size < buffer_num:
            raise ValueError(f"total_size ({total_size}) must be >= buffer_num ({buffer_num})")
        super().__init__(total_size, buffer_num, ignore_obs_next=True)
        self._sub_size = self.maxsize // buffer_num
        # length of the complete episode starting at an index; 0 elsewhere
        self._episode_len = np.zeros(self.maxsize, dtype=np.int64)
        self._final_obs: dict[int, Batch] = {}  # last index of an episode -> obs after it
        self._has_null = False
        self._sample_rng = np.random.default_rng(seed)

    # -- writing ---------------------------------------------------------------------------------
    def add(self, batch: Batch, buffer_ids: np.ndarray | list[int] | None = None):  # type: ignore[override]
        obs_next = batch.obs_next
        kept = Batch({k: batch[k] for k in batch.get_keys() if k not in ("policy", "obs_next")})
        policy_out = batch.get("policy", Batch())
        extra = {k: policy_out[k] for k in policy_out.get_keys() if k != "hidden_state"}
        if extra:
            kept.policy = Batch(extra)
        if not self._has_null and _has_nan(kept):
            self._has_null = True
        result = super().add(kept, buffer_ids)
        insertion, _, ep_len, ep_start = result
        # whatever lived at the overwritten slots is gone: an old episode start or end
        self._episode_len[insertion] = 0
        if self._final_obs:
            for i in insertion.tolist():
                self._final_obs.pop(i, None)
        done = np.flatnonzero(np.logical_or(batch.terminated, batch.truncated))
        for j in done.tolist():
            self._episode_len[ep_start[j]] = ep_len[j]
            self._final_obs[int(insertion[j])] = obs_next[j]
        return result

    def reset(self, keep_statistics: bool = False) -> None:
        super().reset(keep_statistics)
        if hasattr(self, "_episode_len"):
            self._episode_len[:] = 0
            self._final_obs.clear()
            self._has_null = False

    def hasnull(self) -> bool:
        return self._has_null

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

    def episode_indices(self, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(idx (B, T), valid (B, T), lengths (B,))``; padded slots repeat the start index."""
        lengths = self._episode_len[starts]
        if np.any(lengths == 0):
            raise ValueError("episode_indices got an index that is not a complete episode start")
        T = int(lengths.max())
        t = np.arange(T)
        offset = (starts // self._sub_size) * self._sub_size
        idx = (starts[:, None] - offset[:, None] + t[None]) % self._sub_size + offset[:, None]
        valid = t[None] < lengths[:, None]
        return np.where(valid, idx, starts[:, None]), valid, lengths

    def episode_batch(self, starts: np.ndarray) -> Batch:
        """Padded episodes for the given start indices.

        Observation-like leaves (``obs``) have ``T + 1`` steps: step ``L`` of an episode of length
        ``L`` is the observation after its last action; later slots are zeros. Transition leaves
        (``act``, ``rew``, ``terminated``, ``truncated``, ``policy``) have ``T`` steps (padded
        slots repeat the first step). ``valid`` is ``(B, T)``.
        """
        idx, valid, lengths = self.episode_indices(starts)
        B, T = idx.shape
        rows = np.arange(B)
        obs = self._meta.obs[idx]
        final = Batch.stack([self._final_obs[int(e)] for e in idx[rows, lengths - 1]])

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
            act=self._meta.act[idx],
            rew=np.where(valid, self._meta.rew[idx], 0.0),
            terminated=np.where(valid, self._meta.terminated[idx], False),
            truncated=np.where(valid, self._meta.truncated[idx], False),
            valid=valid,
            lengths=lengths,
        )
