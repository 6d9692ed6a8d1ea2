"""CDS's policy: the plain masked ε-greedy :class:`MultiAgentQPolicy` acting with a
:class:`~bdps_agents.networks.cds.CDSAgent` (Q_i = shared head + agent i's local head; the
agent's ``step`` adds them, so acting needs nothing else), plus the torch generator that
shuffles the predictors' minibatches (named and saved by the base class)."""

from __future__ import annotations

from typing import Any

import torch

from bdps_agents.networks.agent import RecurrentAgent
from bdps_agents.networks.cds import CDSAgent
from bdps_agents.policy import MultiAgentQPolicy, seeded_torch_generator


class CDSPolicy(MultiAgentQPolicy):
    """:class:`MultiAgentQPolicy` whose agent is a :class:`CDSAgent` with one local head per
    agent."""

    agent: CDSAgent
    torch_rng: torch.Generator  # always set (seeded_torch_generator)

    def __init__(self, *, agent: CDSAgent, **policy_kwargs: Any) -> None:
        super().__init__(agent=agent, **policy_kwargs)
        # the predictors' minibatch draws
        self.torch_rng = seeded_torch_generator(policy_kwargs.get("seed"))

    @staticmethod
    def _check_sharing(agent: RecurrentAgent, n_agents: int) -> None:
        if not isinstance(agent, CDSAgent) or agent.groups != 1 or agent.n_agents != n_agents:
            raise ValueError(
                f"CDS needs a CDSAgent with one shared network and {n_agents} local heads, got "
                f"{type(agent).__name__} (groups={agent.groups}, "
                f"heads={getattr(agent, 'n_agents', None)})"
            )
