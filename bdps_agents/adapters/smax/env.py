"""jaxmarl's SMAX presented through the ``StarCraft2Env`` API of oxwhirl/smac.

:class:`SMAXStarCraft2Env` wraps ``jaxmarl.environments.smax.HeuristicEnemySMAX`` (jaxmarl 0.2.0:
our agents are SMAX's allies, the enemies follow SMAX's built-in heuristic) so that code written
for real SMAC (``reset``, ``step``, ``get_obs``, ``get_state``, ``get_avail_actions``,
``get_env_info``, ``get_stats``, ...) runs on SMAX unchanged. jax and jaxmarl are imported only
when an environment is built: importing this module is cheap.

Actions, in SMAC numbering (``n_actions = 6 + n_enemies``, one more than SMAX's)::

    SMAC  0 no-op   1 stop   2 north   3 south   4 east   5 west   6+j attack enemy j
    SMAX  4 stop    4 stop   0         2         1        3        5+j

SMAX's discrete moves are 0 north (+y), 1 east (+x), 2 south (-y), 3 west (-x), 4 stop (from
``SMAX._decode_discrete_actions``: a diagonal unit vector rotated by 45 degrees; the heuristic
enemy uses the same ``[[0, 1], [1, 0], [0, -1], [-1, 0]]`` order). ``y`` grows northwards, as in
SC2's map coordinates. SMAX has no healer units (no medivacs), so attack ``j`` always targets
enemy ``j`` (SMAX unit ``n_agents + j``).

Semantics, mirroring SMAC with ``continuing_episode=False``:

* **Available actions**: a dead agent has only the no-op; a live agent never has the no-op and
  has stop, the four moves (SMAX allows every move; walking into the map border kills the unit,
  a SMAX rule) and the attacks on the living enemies within its attack range.
* **Observations** of dead agents are all zeros. Observations and the state are SMAX's
  (``unit_list`` observations, ``get_world_state``), not SMAC's feature layout.
* **Reward**: SMAX's shared team reward (the enemies' normalised health loss plus
  ``won_battle_bonus`` = 1 on a win), one float; it is *not* rescaled to SMAC's 20-point scale.
* **Termination** when one team is dead or after ``episode_limit`` steps (SMAC's limits by
  default). On a time-out ``info["episode_limit"] = True``. ``info`` always holds
  ``battle_won`` (every enemy dead and an ally alive; SMAX can end in a draw), ``dead_allies`` and
  ``dead_enemies``.
* **Randomness**: every ``reset()`` draws a new episode from an internal PRNG key; ``reseed(s)``
  makes the next episode a deterministic function of ``s`` and the actions.
* Illegal actions raise ``ValueError`` (SMAC asserts); stepping a finished episode raises
  ``RuntimeError``.

Speed: one jitted call and one ``jax.device_get`` per ``reset``/``step``; the getters return the
cached host copies. :func:`smax_reset` and :func:`smax_step` are pure functions of
``(key, state, actions)`` that can be ``jax.vmap``-ped for a batched env. jax's persistent
compilation cache is switched on (see :func:`enable_compilation_cache`) so that later processes
skip most of the compile time.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from bdps_agents.adapters.smax.core import (
    _AUTO,
    SMAC_EPISODE_LIMITS,
    SMAXStepOutput,
    _import_smax,
    _reset_with_keys,
    _step_with_key,
    enable_compilation_cache,
)

if TYPE_CHECKING:
    import jax

    from bdps_agents.adapters.smac import SMACParallelEnv

__all__ = ["SMAXStarCraft2Env", "make_smax_env"]


class SMAXStarCraft2Env:
    """A SMAX map behind oxwhirl/smac's ``StarCraft2Env`` interface (see the module docstring).

    Args:
        map_name: a SMAX map (``smax_env.MAP_NAME_TO_SCENARIO``), e.g. ``"3m"``, ``"5m_vs_6m"``.
        seed: seed of the internal PRNG key (see :meth:`reseed`).
        episode_limit: time limit in steps; defaults to SMAC's (``SMAC_EPISODE_LIMITS``), and is
            required for SMAX-only maps.
        compilation_cache_dir: jax's persistent compilation cache, see
            :func:`enable_compilation_cache` (``"auto"``: ``$BDPS_JAX_CACHE_DIR`` or
            ``~/.cache/bdps_agents/jax``; ``None``: leave jax's setting alone).
        smax_kwargs: passed to ``HeuristicEnemySMAX`` (e.g. ``attack_mode="random"``,
            ``won_battle_bonus``, ``walls_cause_death``).

    Building the env compiles nothing; the first ``reset()``/``step()`` compile (about 1-2 s
    each on CPU, a third of that with a warm persistent cache).
    """

    #: the SMAX drawer of ``bdps render``; ``SMACParallelEnv`` passes it on as its own
    frame_drawer: ClassVar[str] = "bdps_agents.adapters.smax.render:DRAWER"

    def __init__(
        self,
        map_name: str,
        seed: int = 0,
        episode_limit: int | None = None,
        compilation_cache_dir: str | None = _AUTO,
        **smax_kwargs: Any,
    ) -> None:
        smax = _import_smax()
        scenarios = smax.smax_env.MAP_NAME_TO_SCENARIO
        if map_name not in scenarios:
            raise ValueError(
                f"unknown SMAX map {map_name!r}; supported maps: {', '.join(sorted(scenarios))}"
            )
        if episode_limit is None:
            if map_name not in SMAC_EPISODE_LIMITS:
                raise ValueError(
                    f"SMAX map {map_name!r} has no SMAC time limit: pass episode_limit "
                    f"(known limits: {SMAC_EPISODE_LIMITS})"
                )
            episode_limit = SMAC_EPISODE_LIMITS[map_name]
        if isinstance(episode_limit, bool) or not isinstance(episode_limit, int | np.integer):
            raise ValueError(f"episode_limit must be an integer, got {episode_limit!r}")
        if episode_limit < 1:
            raise ValueError(f"episode_limit must be >= 1, got {episode_limit}")
        for reserved in ("scenario", "max_steps", "num_allies", "num_enemies"):
            if reserved in smax_kwargs:
                raise ValueError(
                    f"{reserved!r} is set by the map and episode_limit, not through smax_kwargs"
                )
        if smax_kwargs.get("action_type", "discrete") != "discrete":
            raise ValueError("only SMAX's discrete actions have a SMAC equivalent")

        enable_compilation_cache(compilation_cache_dir)
        import jax

        self.map_name = map_name
        self.episode_limit = int(episode_limit)
        self._smax = smax.HeuristicEnemySMAX(
            scenario=smax.map_name_to_scenario(map_name),
            max_steps=self.episode_limit,
            **smax_kwargs,
        )
        self.n_agents: int = self._smax.num_agents
        self.n_enemies: int = self._smax.num_enemies
        self.n_actions: int = self._smax.action_spaces[self._smax.agents[0]].n + 1
        self._obs_size: int = self._smax.obs_size
        self._state_size: int = self._smax.state_size

        # One compiled function each, specialised to this env; pure, so vmappable later.
        self._reset_jit = jax.jit(partial(_reset_with_keys, self._smax))
        self._step_jit = jax.jit(partial(_step_with_key, self._smax))

        self._seed = int(seed)
        self._key = jax.random.PRNGKey(self._seed)
        self._episode_key: jax.Array | None = None
        self._state: Any = None  # device-side SMAX state of the running episode
        self._obs: np.ndarray | None = None
        self._world_state: np.ndarray | None = None
        self._avail: np.ndarray | None = None
        self._terminated = False
        self._episode_steps = 0
        self.battles_won = 0
        self.battles_game = 0
        self.timeouts = 0

    # -- episode control ---------------------------------------------------------------------------

    def reseed(self, seed: int) -> None:
        """Reset the internal PRNG key: the next ``reset()`` and its episode depend only on
        ``seed`` and the actions taken."""
        import jax

        self._seed = int(seed)
        self._key = jax.random.PRNGKey(self._seed)

    def reset(self) -> tuple[list[np.ndarray], np.ndarray]:
        """Start a new episode; return ``(obs_list, state)`` as SMAC does."""
        import jax

        self._key, self._episode_key, self._state, outputs = self._reset_jit(self._key)
        self._store(jax.device_get(outputs))
        self._terminated = False
        self._episode_steps = 0
        return self.get_obs(), self.get_state()

    def step(self, actions: Sequence[int] | np.ndarray) -> tuple[float, bool, dict[str, Any]]:
        """Apply one joint action (SMAC numbering); return ``(reward, terminated, info)``."""
        import jax

        if self._state is None:
            raise RuntimeError("call reset() before step()")
        if self._terminated:
            raise RuntimeError("the episode has terminated; call reset() before step()")
        smac_actions = self._checked_actions(actions)
        self._episode_key, self._state, outputs = self._step_jit(
            self._episode_key, self._state, smac_actions
        )
        host = self._store(jax.device_get(outputs))
        self._episode_steps += 1

        alive = host.unit_alive
        info: dict[str, Any] = {
            "battle_won": bool(host.battle_won),
            "dead_allies": int(self.n_agents - np.count_nonzero(alive[: self.n_agents])),
            "dead_enemies": int(self.n_enemies - np.count_nonzero(alive[self.n_agents :])),
        }
        terminated = bool(host.terminated)
        if terminated:
            self._terminated = True
            self.battles_game += 1
            self.battles_won += int(info["battle_won"])
            if host.timed_out:
                info["episode_limit"] = True
                self.timeouts += 1
        return float(host.reward), terminated, info

    def _checked_actions(self, actions: Sequence[int] | np.ndarray) -> np.ndarray:
        """Validate a joint action against the current masks; return it as int32."""
        arr = np.asarray(actions)
        if arr.shape != (self.n_agents,) or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"expected {self.n_agents} integer actions, got {actions!r}")
        _, _, avail = self._require_episode()
        in_range = (arr >= 0) & (arr < self.n_actions)
        legal = in_range.copy()
        rows = np.flatnonzero(in_range)
        legal[rows] = avail[rows, arr[rows]] == 1
        if not legal.all():
            agent = int(np.flatnonzero(~legal)[0])
            action = int(arr[agent])
            problem = (
                "is not available"
                if in_range[agent]
                else f"is outside the range [0, {self.n_actions})"
            )
            raise ValueError(
                f"agent {agent}: action {action} {problem}; available actions: "
                f"{np.flatnonzero(avail[agent]).tolist()}"
            )
        return arr.astype(np.int32)

    def _store(self, host: SMAXStepOutput) -> SMAXStepOutput:
        # device_get returns read-only views; writable copies behave like SMAC's fresh arrays
        self._obs = np.array(host.obs, dtype=np.float32)
        self._world_state = np.array(host.world_state, dtype=np.float32)
        self._avail = np.array(host.avail, dtype=np.int8)
        return host

    def _require_episode(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The current (observations, world state, masks); ``RuntimeError`` before a reset."""
        if self._obs is None or self._world_state is None or self._avail is None:
            raise RuntimeError("call reset() first")
        return self._obs, self._world_state, self._avail

    # -- observations, state and action masks (cached host copies) ---------------------------------

    def get_obs(self) -> list[np.ndarray]:
        """One float32 vector per agent (zeros for dead agents)."""
        obs, _, _ = self._require_episode()
        return list(obs)

    def get_obs_agent(self, agent_id: int) -> np.ndarray:
        obs, _, _ = self._require_episode()
        return obs[agent_id]

    def get_obs_array(self) -> np.ndarray:
        """All observations as one ``(n_agents, obs_size)`` float32 array."""
        obs, _, _ = self._require_episode()
        return obs

    def get_state(self) -> np.ndarray:
        """SMAX's world state, float32."""
        _, world_state, _ = self._require_episode()
        return world_state

    def get_avail_actions(self) -> list[list[int]]:
        _, _, avail = self._require_episode()
        return avail.tolist()

    def get_avail_agent_actions(self, agent_id: int) -> list[int]:
        _, _, avail = self._require_episode()
        return avail[agent_id].tolist()

    def get_avail_actions_array(self) -> np.ndarray:
        """All masks as one ``(n_agents, n_actions)`` int8 array (1 = available)."""
        _, _, avail = self._require_episode()
        return avail

    # -- sizes and bookkeeping ---------------------------------------------------------------------

    def get_obs_size(self) -> int:
        return self._obs_size

    def get_state_size(self) -> int:
        return self._state_size

    def get_total_actions(self) -> int:
        return self.n_actions

    def get_env_info(self) -> dict[str, int]:
        return {
            "state_shape": self.get_state_size(),
            "obs_shape": self.get_obs_size(),
            "n_actions": self.get_total_actions(),
            "n_agents": self.n_agents,
            "episode_limit": self.episode_limit,
        }

    def get_stats(self) -> dict[str, float]:
        """SMAC's statistics; zeros before the first finished episode."""
        return {
            "battles_won": self.battles_won,
            "battles_game": self.battles_game,
            "battles_draw": self.timeouts,  # SMAC reports time-outs under this name
            "win_rate": self.battles_won / self.battles_game if self.battles_game else 0.0,
            "timeouts": self.timeouts,
            "restarts": 0,
        }

    @property
    def episode_steps(self) -> int:
        return self._episode_steps

    @property
    def smax_env(self) -> Any:
        """The wrapped ``HeuristicEnemySMAX``."""
        return self._smax

    @property
    def smax_state(self) -> Any:
        """The current SMAX state (device arrays), or ``None`` before ``reset()``."""
        return self._state

    def seed(self) -> int:
        return self._seed

    def close(self) -> None:
        """Drop the episode; the env can be reset again (nothing external to release)."""
        self._state = self._episode_key = None
        self._obs = self._world_state = self._avail = None
        self._terminated = False

    def __repr__(self) -> str:
        return (
            f"SMAXStarCraft2Env(map_name={self.map_name!r}, n_agents={self.n_agents}, "
            f"n_enemies={self.n_enemies}, episode_limit={self.episode_limit})"
        )


def make_smax_env(
    map_name: str, *, seed: int = 0, episode_limit: int | None = None, **smax_kwargs: Any
) -> SMACParallelEnv:
    """The ``smax`` adapter: a SMAX map as a PettingZoo env with the SMAC adapter's semantics
    (:class:`bdps_agents.adapters.smac.SMACParallelEnv` over :class:`SMAXStarCraft2Env`)."""
    from bdps_agents.adapters.smac import SMACParallelEnv

    env = SMAXStarCraft2Env(map_name, seed=seed, episode_limit=episode_limit, **smax_kwargs)
    return SMACParallelEnv(env)
