"""A STAND-IN for ``smac.env.StarCraft2Env`` -- not StarCraft, only its documented API contract.

StarCraft II cannot be installed on the machines that run these tests, so the SMAC adapter is
tested against this small deterministic battle that follows the contract of oxwhirl/smac
(``../shared/notes/environments.md``): constructor starts nothing and is the only seed;
``reset() -> (obs_list, state)``; ``step(list[int]) -> (reward, terminated, info)`` with
``battle_won``/``dead_allies``/``dead_enemies`` and ``episode_limit`` only when
``continuing_episode=True``; illegal actions *assert*; dead agents have only the no-op and zero
observations; ``get_stats()`` divides by the number of games (ZeroDivisionError before the first).

Battle: each live ally attacking enemy ``j`` (action ``6 + j``) takes ``ally_damage`` of its
health; each live enemy takes ``enemy_damage`` off the lowest-index live ally. Moves (2-5) shift
the agent's position. Reward: damage dealt, plus 1 on a win.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MOVES = {2: (0.0, 1.0), 3: (0.0, -1.0), 4: (1.0, 0.0), 5: (-1.0, 0.0)}


class StandInStarCraft2Env:
    def __init__(
        self,
        map_name: str = "standin",
        *,
        n_agents: int = 3,
        n_enemies: int = 2,
        episode_limit: int = 12,
        seed: int | None = None,
        continuing_episode: bool = False,
        ally_damage: float = 0.25,
        enemy_damage: float = 0.2,
        fail_at_step: int | None = None,
    ) -> None:
        self.map_name = map_name
        self.n_agents, self.n_enemies = n_agents, n_enemies
        self.n_actions = 6 + n_enemies
        self.episode_limit = episode_limit
        self._seed = seed
        self._rng = np.random.default_rng(seed)
        self.continuing_episode = continuing_episode
        self.ally_damage, self.enemy_damage = ally_damage, enemy_damage
        self.fail_at_step = fail_at_step
        self.battles_won = self.battles_game = 0
        self.reset_calls = 0
        self.started = False
        self.last_actions: list[int] | None = None

    # -- contract ------------------------------------------------------------------------
    def get_env_info(self) -> dict[str, Any]:
        return {
            "state_shape": self.get_state_size(),
            "obs_shape": self.get_obs_size(),
            "n_actions": self.n_actions,
            "n_agents": self.n_agents,
            "episode_limit": self.episode_limit,
        }

    def get_obs_size(self) -> int:
        return 3 + self.n_enemies + self.n_agents

    def get_state_size(self) -> int:
        return 3 * self.n_agents + self.n_enemies

    def reset(self) -> tuple[list[np.ndarray], np.ndarray]:
        self.started = True
        self.reset_calls += 1
        self._steps = 0
        self.ally_health = np.ones(self.n_agents)
        self.enemy_health = np.ones(self.n_enemies)
        self.pos = self._rng.uniform(-1.0, 1.0, size=(self.n_agents, 2))
        return self.get_obs(), self.get_state()

    def step(self, actions: list[int]) -> tuple[float, bool, dict[str, Any]]:
        assert self.started, "reset() first"
        actions = [int(a) for a in actions]
        self.last_actions = actions
        assert len(actions) == self.n_agents
        for i, a in enumerate(actions):
            assert self.get_avail_agent_actions(i)[a] == 1, f"Agent {i} cannot perform action {a}"
        self._steps += 1
        if self.fail_at_step is not None and self._steps >= self.fail_at_step:
            return 0, True, {}  # what StarCraft2Env returns when the game connection fails
        before = self.enemy_health.sum()
        for i, a in enumerate(actions):
            if a in MOVES:
                self.pos[i] += MOVES[a]
            elif a >= 6:
                j = a - 6
                self.enemy_health[j] = max(0.0, self.enemy_health[j] - self.ally_damage)
        alive = np.flatnonzero(self.ally_health > 0)
        if alive.size:
            hits = self.enemy_damage * int((self.enemy_health > 0).sum())
            self.ally_health[alive[0]] = max(0.0, self.ally_health[alive[0]] - hits)
        reward = float(before - self.enemy_health.sum())
        dead_allies = int((self.ally_health <= 0).sum())
        dead_enemies = int((self.enemy_health <= 0).sum())
        info: dict[str, Any] = {"battle_won": False}
        terminated = False
        if dead_enemies == self.n_enemies and dead_allies < self.n_agents:
            terminated, info["battle_won"] = True, True
            reward += 1.0
            self.battles_won += 1
        elif dead_allies == self.n_agents or dead_enemies == self.n_enemies:
            terminated = True
        elif self._steps >= self.episode_limit:
            terminated = True
            if self.continuing_episode:
                info["episode_limit"] = True
        if terminated:
            self.battles_game += 1
        info["dead_allies"], info["dead_enemies"] = dead_allies, dead_enemies
        return reward, terminated, info

    def get_obs_agent(self, i: int) -> np.ndarray:
        if self.ally_health[i] <= 0:
            return np.zeros(self.get_obs_size(), dtype=np.float32)
        own = [self.ally_health[i], *self.pos[i]]
        return np.array([*own, *self.enemy_health, *self.ally_health], dtype=np.float32)

    def get_obs(self) -> list[np.ndarray]:
        return [self.get_obs_agent(i) for i in range(self.n_agents)]

    def get_state(self) -> np.ndarray:
        parts = [self.ally_health, self.pos.reshape(-1), self.enemy_health]
        return np.concatenate(parts).astype(np.float32)

    def get_avail_agent_actions(self, i: int) -> list[int]:
        avail = [0] * self.n_actions
        if self.ally_health[i] <= 0:
            avail[0] = 1
            return avail
        avail[1:6] = [1] * 5
        for j in range(self.n_enemies):
            avail[6 + j] = int(self.enemy_health[j] > 0)
        return avail

    def get_avail_actions(self) -> list[list[int]]:
        return [self.get_avail_agent_actions(i) for i in range(self.n_agents)]

    def get_stats(self) -> dict[str, float]:
        return {
            "battles_won": self.battles_won,
            "battles_game": self.battles_game,
            "win_rate": self.battles_won / self.battles_game,
        }

    def seed(self) -> int | None:
        return self._seed

    def close(self) -> None:
        self.started = False


class ReseedableStandIn(StandInStarCraft2Env):
    """The stand-in plus the ``reseed`` hook that SMAX offers (real SMAC has none)."""

    def reseed(self, seed: int) -> None:
        self._seed = seed
        self._rng = np.random.default_rng(seed)
