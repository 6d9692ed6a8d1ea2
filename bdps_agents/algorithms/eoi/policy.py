"""EOI's policy: QMIX's masked ε-greedy acting, plus EOI's exploration.

Per env, at the first step of each training episode (the step counter ``t`` of the recurrent
state is 0: the Collector zeroes the state of an env whose episode ended), the episode is drawn
"EOI-enabled" with probability ``episode_prob``; the flag lives in the recurrent state
(``state.eoi``), so it stays for the episode and is reset with it. At every step of an enabled
episode, with probability ``explore_ratio``, one agent j drawn uniformly takes argmax_a
Q^p([o_j, one-hot j], a) over its available actions instead of its ε-greedy QMIX action. Test
episodes (outside a training step) are never enabled. All draws come from the policy's seeded
numpy generator (``rng``), after the ε-greedy ones.

The flags travel to the replay buffer as policy outputs: ``eoi_episode`` (int8, 1 in an enabled
episode) and ``eoi_agent`` (int16, the replaced agent, −1 for none) per step, which is how the
learner reports the shares of enabled episodes and replaced actions (also when it runs in the
learner process, which never acts).

The classifier and Q^p are modules of the policy, so that the learner process's per-update copy
of ``policy.state_dict()`` brings the acting process the current Q^p, and checkpoints carry both.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from tianshou.data import Batch

from bdps_agents.algorithms.eoi.intrinsic import IdentityClassifier, IntrinsicQ
from bdps_agents.policy import MultiAgentQPolicy, seeded_torch_generator


class EOIPolicy(MultiAgentQPolicy):
    """:class:`MultiAgentQPolicy` with EOI's exploration (module docstring).

    :param classifier: P_φ(i | o) (trained by the learner; not used for acting).
    :param intrinsic_q: Q^p (trained by the learner; its greedy actions replace QMIX's).
    :param episode_prob: probability that a training episode is EOI-enabled.
    :param explore_ratio: per-step probability of a replacement in an enabled episode.
    """

    torch_rng: torch.Generator  # always set (seeded_torch_generator)

    def __init__(
        self,
        *,
        classifier: IdentityClassifier,
        intrinsic_q: IntrinsicQ,
        episode_prob: float = 0.4,
        explore_ratio: float = 0.05,
        **policy_kwargs: Any,
    ) -> None:
        super().__init__(**policy_kwargs)
        n, d, A = self.n_agents, self.inputs.obs_dim, self.n_actions
        if (classifier.obs_dim, classifier.n_agents) != (d, n):
            raise ValueError(
                f"classifier is for observations of {classifier.obs_dim} and "
                f"{classifier.n_agents} agents; the policy has {d} and {n}"
            )
        if (intrinsic_q.obs_dim, intrinsic_q.n_agents, intrinsic_q.n_actions) != (d, n, A):
            raise ValueError(
                f"intrinsic_q is for (obs_dim, n_agents, n_actions) = ({intrinsic_q.obs_dim}, "
                f"{intrinsic_q.n_agents}, {intrinsic_q.n_actions}); the policy has ({d}, {n}, {A})"
            )
        for name, p in (("episode_prob", episode_prob), ("explore_ratio", explore_ratio)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"eoi.{name} must lie in [0, 1], got {p}")
        self.classifier = classifier
        self.intrinsic_q = intrinsic_q
        self.episode_prob, self.explore_ratio = episode_prob, explore_ratio
        # the learner's minibatch order (acting draws from the numpy rng)
        self.torch_rng = seeded_torch_generator(policy_kwargs.get("seed"))

    def initial_state(self, batch_size: int) -> Batch:
        state = super().initial_state(batch_size)
        state.eoi = np.zeros(batch_size, dtype=bool)
        return state

    def forward(self, batch: Batch, state: Any | None = None, **kwargs: Any) -> Batch:
        mask_np, state = self.acting_inputs(batch, state)
        t = np.asarray(state.t)
        R = len(t)
        enabled = np.asarray(state.eoi).astype(bool)
        out = super().forward(batch, state, **kwargs)  # ε-greedy QMIX actions (its draws first)
        if not self.is_within_training_step:
            enabled = np.zeros(R, dtype=bool)
        elif (t == 0).any():  # episodes start: draw whether they are EOI-enabled
            drawn = self.rng.random(R) < self.episode_prob
            enabled = np.where(t == 0, drawn, enabled)
        replaced = np.full(R, -1, dtype=np.int16)
        act = np.asarray(out.act)
        if enabled.any() and self.explore_ratio > 0.0:
            due = enabled & (self.rng.random(R) < self.explore_ratio)
            who = self.rng.integers(self.n_agents, size=R)
            rows = np.flatnonzero(due)
            if rows.size:
                j = who[rows]
                obs = torch.as_tensor(np.asarray(batch.obs.obs)[rows, j], dtype=torch.float32)
                avail = torch.as_tensor(mask_np[rows, j])
                act = act.copy()
                act[rows, j] = self.intrinsic_q.greedy(obs, torch.as_tensor(j), avail).numpy()
                replaced[rows] = j
        out.act = act
        out.state.last_act = self._one_hot[act]  # the next input is the action taken
        out.state.eoi = enabled
        out.policy.eoi_episode = enabled.astype(np.int8)
        out.policy.eoi_agent = replaced
        return out
