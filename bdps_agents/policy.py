"""Acting: a Tianshou ``Policy`` for a team of recurrent Q-agents on a :class:`JointEnv`.

Observations arrive as Tianshou stacks the joint env's Dict: ``batch.obs.obs`` ``(R, n, d)``,
``batch.obs.mask`` ``(R, n, A)``, ``batch.obs.state`` ``(R, S)``. The recurrent state is a
``Batch(h=(R, n, H), last_act=(R, n, A), t=(R,))`` of numpy arrays, which the Collector zeroes
when an episode ends (Tianshou resets the hidden state of finished envs only when it is a
``Batch`` or numpy array: a bare torch tensor would carry over into the next episode).
``t`` is the step within the episode; ``forward`` hands it to the replay buffer as
``policy.episode_step``, which is how the buffer recognises episodes cut short by a Collector
reset (:mod:`bdps_agents.replay`).

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


def seeded_torch_generator(seed: int | None) -> torch.Generator:
    """A torch generator seeded like the policy's numpy one: ``seed``, or fresh entropy."""
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


def _obs_kind(obs: Any) -> str:
    """What a collector handed over instead of a JointEnv observation, for the message."""
    if isinstance(obs, Batch | dict):
        keys = sorted(map(str, obs.get_keys() if isinstance(obs, Batch) else obs))
        return f"observations keyed {keys[:4]} (a raw PettingZoo env's per-agent dict?)"
    return f"{type(obs).__name__} observations"


def random_available(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Uniform random action among the available ones, per row of ``mask (..., A)``."""
    return (rng.random(mask.shape) * mask).argmax(-1) if mask.size else mask.sum(-1)


class AgentInputs(torch.nn.Module):
    """Builds each agent's network input: own observation, one-hot last action, one-hot agent id."""

    eye: torch.Tensor  # a (non-persistent) buffer

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


def check_policy_sizes(
    agent: RecurrentAgent,
    inputs: AgentInputs,
    action_space: gym.Space,
    observation_space: gym.Space | None,
) -> None:
    """``ValueError`` naming the argument unless the agent network, its inputs and the joint
    env's spaces (``JointEnv``: MultiDiscrete ``[A] * n``; Dict ``obs (n, d)``, ``mask (n, A)``)
    agree."""
    n, d, A = inputs.n_agents, inputs.obs_dim, inputs.n_actions
    if agent.input_dim != inputs.dim:
        raise ValueError(
            f"agent.input_dim ({agent.input_dim}) must equal inputs.dim ({inputs.dim} = "
            f"observation {d} + last action {A if inputs.last_action else 0} + agent id "
            f"{n if inputs.agent_id else 0})"
        )
    if agent.n_actions != A:
        raise ValueError(f"agent.n_actions ({agent.n_actions}) must equal inputs.n_actions ({A})")
    nvec = getattr(action_space, "nvec", None)
    if (
        not isinstance(action_space, gym.spaces.MultiDiscrete)
        or nvec is None
        or nvec.shape != (n,)
        or (nvec != A).any()
    ):
        raise ValueError(
            f"action_space must be MultiDiscrete([{A}] * {n}) (the joint env's, one action per "
            f"agent), got {action_space}"
        )
    if isinstance(observation_space, gym.spaces.Dict):
        for key, shape in (("obs", (n, d)), ("mask", (n, A))):
            space = observation_space.spaces.get(key)
            if space is not None and space.shape != shape:
                raise ValueError(
                    f"observation_space[{key!r}] has shape {space.shape}; inputs expect "
                    f"{shape} (n_agents={n}, obs_dim={d}, n_actions={A})"
                )


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
        check_policy_sizes(agent, inputs, action_space, observation_space)
        self._check_sharing(agent, inputs.n_agents)
        super().__init__(action_space=action_space, observation_space=observation_space)
        self.agent = agent
        self.inputs = inputs
        self.n_agents, self.n_actions = inputs.n_agents, inputs.n_actions
        self.eps_training = eps_training
        self.eps_inference = eps_inference
        self.rng = np.random.default_rng(seed)
        # a torch generator of a method that samples with torch (BDPS's roles, SePS's VAE):
        # set with seeded_torch_generator(seed); it is then seeded, named and saved here
        self.torch_rng: torch.Generator | None = None
        self._one_hot = np.eye(self.n_actions, dtype=np.float32)  # row a = one-hot of action a

    @staticmethod
    def _check_sharing(agent: RecurrentAgent, n_agents: int) -> None:
        """Without selectors an agent uses network i mod groups: only 1 or n make sense."""
        if agent.groups not in (1, n_agents):
            raise ValueError(
                f"agent.groups = {agent.groups}: a MultiAgentQPolicy shares one network "
                f"(groups=1) or none (groups=n_agents={n_agents}); k role networks need "
                "BDPSPolicy"
            )

    def set_eps_training(self, eps: float) -> None:
        self.eps_training = float(eps)

    def set_eps_inference(self, eps: float) -> None:
        self.eps_inference = float(eps)

    @property
    def current_eps(self) -> float:
        return self.eps_training if self.is_within_training_step else self.eps_inference

    def initial_state(self, batch_size: int) -> Batch:
        """Hidden state, last action and step within the episode; all zero, as the Collector
        resets them at episode ends."""
        return Batch(
            h=np.zeros((batch_size, self.n_agents, self.agent.hidden_dim), dtype=np.float32),
            last_act=np.zeros((batch_size, self.n_agents, self.n_actions), dtype=np.float32),
            t=np.zeros(batch_size, dtype=np.int64),
        )

    def agent_q(self, obs: Batch, state: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """One recurrent step: (q ``(R, n, A)``, new hidden ``(R, n, H)``)."""
        o = torch.as_tensor(np.asarray(obs.obs), dtype=torch.float32)
        x = self.inputs(o, torch.as_tensor(state.last_act))
        return self.agent.step(x, torch.as_tensor(state.h))

    def acting_inputs(self, batch: Batch, state: Any | None) -> tuple[np.ndarray, Batch]:
        """The available-action mask ``(R, n, A)`` bool of a collector batch, and the recurrent
        state (the initial one at the start, when the collector passes none)."""
        obs = batch.obs
        if not isinstance(obs, Batch) or "mask" not in obs.get_keys():
            raise TypeError(
                f"{type(self).__name__} acts on JointEnv observations (obs, state, mask, alive), "
                f"but the collector's envs returned {_obs_kind(obs)}: make each env of the "
                "vector env a JointEnv, e.g. DummyVectorEnv([lambda: JointEnv(make_env()), ...])"
            )
        mask_np = np.asarray(obs.mask).astype(bool)
        if state is None or not isinstance(state, Batch) or len(state.get_keys()) == 0:
            state = self.initial_state(mask_np.shape[0])
        return mask_np, state

    def forward(self, batch: Batch, state: Any | None = None, **kwargs: Any) -> Batch:
        obs = batch.obs
        mask_np, state = self.acting_inputs(batch, state)
        with torch.inference_mode():  # cheaper per op than no_grad; acting never backpropagates
            q, h = self.agent_q(obs, state)
            act = masked_argmax(q, torch.as_tensor(mask_np)).numpy()
        eps = self.current_eps
        if eps > 0.0:
            explore = self.rng.random(act.shape) < eps
            act = np.where(explore, random_available(mask_np, self.rng), act)
        t = np.asarray(state.t)
        new_state = Batch(h=h.numpy(), last_act=self._one_hot[act], t=t + 1)
        # episode_step lets EpisodeReplayBuffer see episodes cut by a Collector reset
        return Batch(act=act, state=new_state, policy=Batch(episode_step=t))

    def add_exploration_noise(self, act, batch):
        # exploration already happened in forward (see module docstring)
        return act

    def seed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        if self.torch_rng is not None:
            self.torch_rng.manual_seed(seed)

    def torch_generators(self) -> dict[str, torch.Generator]:
        """The torch generators this policy samples with, by name (the names of
        :meth:`generator_states`): ``torch_rng`` where a method set one (exploration uses the
        numpy generator ``rng``). The learner process reseeds them in its child
        (:mod:`bdps_agents.learner_process`)."""
        return {} if self.torch_rng is None else {"torch": self.torch_rng}

    def generator_states(self) -> dict[str, Any]:
        """States of the policy's own random generators (exploration; ``torch_rng``), as plain
        data: saved by the algorithm's ``state_dict``."""
        states: dict[str, Any] = {"numpy": self.rng.bit_generator.state}
        if self.torch_rng is not None:
            states["torch"] = self.torch_rng.get_state()
        return states

    def set_generator_states(self, states: dict[str, Any]) -> None:
        self.rng.bit_generator.state = states["numpy"]
        if self.torch_rng is not None and "torch" in states:
            self.torch_rng.set_state(states["torch"])
