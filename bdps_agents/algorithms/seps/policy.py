"""SePS's policy: agent i acts with network ``assignment[i]`` of G stacked agent networks.

Everything the acting policy needs of SePS is a persistent buffer of fixed shape, so that the
learner process's per-update copy of ``policy.state_dict()`` and every checkpoint carry it:
``clusters.labels`` (N,) (all 0 until the clustering: full sharing on network 0),
``clusters.clustered`` (set once, at the clustering update) and ``clusters.score`` (the
Davies–Bouldin index of the chosen grouping; −1 where undefined, not NaN, which would never
equal itself in a round trip). The VAE lives here too, for the same reason.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
from tianshou.data import Batch
from torch import nn

from bdps_agents.algorithms.assignments import CounterfactualAssignments
from bdps_agents.algorithms.seps.vae import AgentVAE
from bdps_agents.networks.agent import RecurrentAgent
from bdps_agents.policy import MultiAgentQPolicy, seeded_torch_generator


class ClusterAssignment(nn.Module):
    """The agent -> network assignment as persistent buffers (a submodule of the policy, so
    they follow the networks in its ``state_dict``)."""

    labels: torch.Tensor
    clustered: torch.Tensor
    score: torch.Tensor

    def __init__(self, n_agents: int, n_networks: int) -> None:
        super().__init__()
        self.n_agents, self.n_networks = n_agents, n_networks
        self.register_buffer("labels", torch.zeros(n_agents, dtype=torch.long))
        self.register_buffer("clustered", torch.zeros((), dtype=torch.bool))
        self.register_buffer("score", torch.full((), -1.0))

    def fix(self, labels: torch.Tensor, score: float) -> None:
        """Fix agent i to network ``labels[i]`` for good; ``score``: the grouping's
        Davies-Bouldin index (NaN: undefined)."""
        if bool(self.clustered):
            raise RuntimeError("SePS clusters once: the assignment is already fixed")
        labels = torch.as_tensor(labels, dtype=torch.long)
        G = self.n_networks
        if labels.shape != (self.n_agents,) or not 0 <= int(labels.min()) <= int(labels.max()) < G:
            raise ValueError(
                f"an assignment is one network id in 0..{G - 1} per agent ({self.n_agents}), "
                f"got {labels.tolist()}"
            )
        self.labels.copy_(labels)
        self.score.fill_(-1.0 if math.isnan(score) else score)
        self.clustered.fill_(True)


class SePSPolicy(CounterfactualAssignments, MultiAgentQPolicy):
    """:class:`MultiAgentQPolicy` whose agent network (``RecurrentAgent(..., groups=G)``) is
    chosen per agent by the fixed ``assignment`` buffer.

    :param vae: the SePS VAE (trained by the learner during pre-training, then frozen).
    """

    # set_override("clusters", ...): a random network per agent, drawn at the start of each
    # episode and kept for it (SePS fixes its assignment)
    OVERRIDE_LEVELS: ClassVar[dict[str, tuple[str, ...]]] = {
        "clusters": ("chosen", "random", "fixed")
    }
    _episode_clusters: torch.Tensor | None = None  # while an override acts: (R, n)

    torch_rng: torch.Generator  # always set (seeded_torch_generator)

    def __init__(self, *, vae: AgentVAE, **policy_kwargs: Any) -> None:
        super().__init__(**policy_kwargs)
        if vae.n_agents != self.n_agents or vae.n_actions != self.n_actions:
            raise ValueError(
                f"vae is for {vae.n_agents} agents and {vae.n_actions} actions; the policy has "
                f"{self.n_agents} and {self.n_actions}"
            )
        if vae.obs_dim != self.inputs.obs_dim:
            raise ValueError(
                f"vae.obs_dim ({vae.obs_dim}) must equal inputs.obs_dim ({self.inputs.obs_dim})"
            )
        self.vae = vae
        # after the networks, so that they lead the state_dict
        self.clusters = ClusterAssignment(self.n_agents, self.n_networks)
        seed = policy_kwargs.get("seed")
        # the VAE's noise and tuple draws, k-means seeding
        self.torch_rng = seeded_torch_generator(seed)

    @staticmethod
    def _check_sharing(agent: RecurrentAgent, n_agents: int) -> None:
        # G cluster networks, any 1 <= G <= n (the builder sizes G; set_assignment checks ids)
        if not 1 <= agent.groups <= n_agents:
            raise ValueError(
                f"agent.groups = {agent.groups}: SePS needs 1 to n_agents = {n_agents} cluster "
                "networks"
            )

    @property
    def n_networks(self) -> int:
        return self.agent.groups

    @property
    def clustered(self) -> bool:
        return bool(self.clusters.clustered)

    @property
    def assignment(self) -> torch.Tensor:
        """``(n,)``: each agent's network (all 0 until the clustering)."""
        return self.clusters.labels

    def set_assignment(self, labels: torch.Tensor, score: float) -> None:
        """Fix agent i to network ``labels[i]`` for good (the clustering update calls it)."""
        self.clusters.fix(labels, score)

    def agent_index(self, *leading: int) -> torch.Tensor:
        """Each agent's network id, expanded to ``(*leading, n)``."""
        if self._episode_clusters is not None:  # acting under a counterfactual override
            return self._episode_clusters
        return self.assignment.expand(*leading, self.n_agents)

    def override_sizes(self) -> dict[str, int]:
        return {"clusters": self.n_networks}

    def forward(self, batch: Batch, state: Any | None = None, **kwargs: Any) -> Batch:
        cf = self.override_for("clusters")
        if cf is None:
            return super().forward(batch, state, **kwargs)
        mask, state = self.acting_inputs(batch, state)
        R = mask.shape[0]
        current = state.get("cluster", None)
        current = self.agent_index(R) if current is None else torch.as_tensor(current)
        alive = np.asarray(batch.obs.alive).astype(bool)
        first = np.asarray(state.t) == 0  # drawn once per episode, at its first step
        self._episode_clusters = cf.apply(current, first, alive, self.n_networks, self.override_rng)
        try:
            out = super().forward(batch, state, **kwargs)
        finally:
            clusters, self._episode_clusters = self._episode_clusters, None
        out.state.cluster = clusters.numpy()
        return out

    def agent_q(self, obs: Batch, state: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        o = torch.as_tensor(np.asarray(obs.obs), dtype=torch.float32)
        x = self.inputs(o, torch.as_tensor(state.last_act))
        return self.agent.step(x, torch.as_tensor(state.h), self.agent_index(*x.shape[:-2]))
