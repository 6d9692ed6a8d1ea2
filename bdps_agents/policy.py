"""Acting: a Tianshou ``Policy`` for a team of recurrent Q-agents on a :class:`JointEnv`.

Observations arrive as Tianshou stacks the joint env's Dict: ``batch.obs.obs`` ``(R, n, d)``,
``batch.obs.mask`` ``(R, n, A)``, ``batch.obs.state`` ``(R, S)``. The recurrent state is a
``Batch(h=(R, n, H), last_act=(R, n, A))`` of numpy arrays, which the Collector zeroes when an
episode ends (a bare torch tensor would not be reset: see docs/tianshou.md of the notes).

ε-greedy happens inside ``forward``, not in ``add_exploration_noise``: the last action is an
input of the next step, and the recurrent state must hold the action actually taken.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tianshou.algorithm.algorithm_base import Policy
from tianshou.data import Batch

from bdps_agents.networks.agent import RecurrentAgent


def masked_argmax(q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Greedy action among available ones; ``mask`` is bool, True = available."""
    return q.masked_fill(~mask, float("-inf")).argmax(-1)


def random_available(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Uniform random action among the available ones, per row of ``mask (..., A)``."""
    return (rng.random(mask.shape) * mask).argmax(-1) if mask.size else mask.sum(-1)


class AgentInputs(torch.nn.Module):
    """Builds each agent's network input: own observation, one-hot last action, one-hot agent id."""

    def __init__(
        self, n_agents: int, obs_dim: int, n_actions: int, last_action: bool, agent_id: bool
    ):
        super().__init__()
        self.n_agents, self.obs_dim, self.n_actions = n_agents, obs_dim, n_actions
        self.last_action, self.agent_id = last_action, agent_id
        self.register_buffer("eye", torch.eye(n_agents), persistent=False)

    @property
    def dim(self) -> int:
        return self.obs_dim + self.n_actions * self.last_action + self.n_agents * self.agent_id

    def forward(self, obs: torch.Tensor, last_act_onehot: torch.Tensor) -> torch.Tensor:
        """obs ``(..., n, d)``, last_act_onehot ``(..., n, A)`` -> ``(..., n, dim)``."""
        parts = [obs]
        if self.last_action:
            parts.append(last_act_onehot)
        if self.agent_id:
            parts.append(self.eye.expand(*obs.shape[:-1], self.n_agents))
        return torch.cat(parts, dim=-1)


class MultiAgentQPolicy(Policy):
    """Decentralised masked ε-greedy acting with a shared-or-not recurrent Q network.

    :param agent: the agent network (its ``groups`` decides parameter sharing).
    :param inputs: builds agent inputs from observations and last actions.
    :param eps_training: ε used while the trainer collects training data.
    :param eps_inference: ε used otherwise (test episodes, evaluation).
    :param seed: seed of the exploration random generator.
    """

    def __init__(
        self,
        *,
        agent: RecurrentAgent,
        inputs: AgentInputs,
        action_space: gym.spaces.MultiDiscrete,
        observation_space: gym.Space | None = None,
        eps_training: float = 1.0,
        eps_inference: float = 0.0,
        seed: int | None = None,
    ) -> None:
        super().__init__(action_space=action_space, observation_space=observation_space)
        self.agent = agent
        self.inputs = inputs
        self.n_agents, self.n_actions = inputs.n_agents, inputs.n_actions
        self.eps_training = eps_training
        self.eps_inference = eps_inference
        self.rng = np.random.default_rng(seed)
        self._one_hot = np.eye(self.n_actions, dtype=np.float32)  # row a = one-hot of action a

    def set_eps_training(self, eps: float) -> None:
        self.eps_training = float(eps)

    def set_eps_inference(self, eps: float) -> None:
        self.eps_inference = float(eps)

    @property
    def current_eps(self) -> float:
        return self.eps_training if self.is_within_training_step else self.eps_inference

    def initial_state(self, batch_size: int) -> Batch:
        return Batch(
            h=np.zeros((batch_size, self.n_agents, self.agent.hidden_dim), dtype=np.float32),
            last_act=np.zeros((batch_size, self.n_agents, self.n_actions), dtype=np.float32),
        )

    def agent_q(self, obs: Batch, state: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """One recurrent step: (q ``(R, n, A)``, new hidden ``(R, n, H)``)."""
        o = torch.as_tensor(np.asarray(obs.obs), dtype=torch.float32)
        x = self.inputs(o, torch.as_tensor(state.last_act))
        return self.agent.step(x, torch.as_tensor(state.h))

    def forward(self, batch: Batch, state: Any | None = None, **kwargs: Any) -> Batch:
        obs = batch.obs
        mask_np = np.asarray(obs.mask).astype(bool)
        if state is None or not isinstance(state, Batch) or len(state.get_keys()) == 0:
            state = self.initial_state(mask_np.shape[0])
        with torch.inference_mode():  # cheaper per op than no_grad; acting never backpropagates
            q, h = self.agent_q(obs, state)
            act = masked_argmax(q, torch.as_tensor(mask_np)).numpy()
        eps = self.current_eps
        if eps > 0.0:
            explore = self.rng.random(act.shape) < eps
            act = np.where(explore, random_available(mask_np, self.rng), act)
        last_act = self._one_hot[act]
        return Batch(act=act, state=Batch(h=h.numpy(), last_act=last_act))

    def add_exploration_noise(self, act, batch):  # type: ignore[no-untyped-def]
        # exploration already happened in forward (see module docstring)
        return act

    def seed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
