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

import io
import os
import sys
import warnings
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

if TYPE_CHECKING:
    import jax

    from bdps_agents.adapters.smac import SMACParallelEnv

__all__ = [
    "DEFAULT_JAX_CACHE_DIR",
    "JAX_CACHE_DIR_ENV",
    "SMAC_EPISODE_LIMITS",
    "SMAXStarCraft2Env",
    "SMAXStepOutput",
    "enable_compilation_cache",
    "make_smax_env",
    "smac_to_smax_actions",
    "smax_reset",
    "smax_step",
]

# SMAC's own time limits (oxwhirl/smac ``smac_maps.py``, ``limit``).
SMAC_EPISODE_LIMITS: dict[str, int] = {
    "3m": 60,
    "8m": 120,
    "2s3z": 120,
    "3s5z": 150,
    "25m": 150,
    "10m_vs_11m": 150,
    "5m_vs_6m": 70,
    "3s_vs_5z": 250,
    "27m_vs_30m": 180,
    "6h_vs_8z": 150,
    "3s5z_vs_3s6z": 170,
}

JAX_CACHE_DIR_ENV = "BDPS_JAX_CACHE_DIR"
DEFAULT_JAX_CACHE_DIR = "~/.cache/bdps_agents/jax"
_AUTO = "auto"

_INSTALL_HINT = 'SMAX needs jaxmarl: pip install "bdps-agents[smax]"  (jaxmarl==0.2.0)'

# SMAC action numbers 0..5 (no-op, stop, north, south, east, west) -> SMAX action numbers.
_SMAC_TO_SMAX_MOVES = (4, 4, 0, 2, 1, 3)
N_SMAC_NON_ATTACK_ACTIONS = 6
N_SMAX_NON_ATTACK_ACTIONS = 5

# Compile-time threshold for caching: small, so that the reset/step functions (seconds) are
# always written, without littering the cache with every tiny eager-op compile.
_CACHE_MIN_COMPILE_SECS = 0.1

_cache_dir_in_use: str | None = None


def _import_smax() -> Any:
    """Import ``jaxmarl.environments.smax``, silencing jaxmarl's import-time prints.

    Importing it runs jaxmarl's package ``__init__``, which prints about optional submodules, and
    its mabrax module resets ``sys.stdout``/``sys.stderr`` to ``sys.__stdout__``/``__stderr__``
    (which would defeat ``contextlib.redirect_stdout`` and break output capture, e.g. pytest's).
    So both the current and the original streams are swapped for the import and restored after.
    """
    saved = sys.stdout, sys.stderr, sys.__stdout__
    sink = io.StringIO()
    # typeshed declares sys.__stdout__ a Final TextIOWrapper; jaxmarl reassigns it: swapped too
    sys.stdout = sys.__stdout__ = sink  # type: ignore[misc,assignment]
    try:
        from jaxmarl.environments import smax
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc
    finally:
        sys.stdout, sys.stderr, sys.__stdout__ = saved  # type: ignore[misc]
    return smax


def enable_compilation_cache(cache_dir: str | None = _AUTO) -> str | None:
    """Switch on jax's persistent compilation cache once per process; return the directory used.

    ``cache_dir="auto"`` means ``$BDPS_JAX_CACHE_DIR`` if set (an empty value disables the cache)
    else ``~/.cache/bdps_agents/jax``; ``None`` leaves jax's configuration untouched. A directory
    already configured (by an earlier call, or by the user through ``JAX_COMPILATION_CACHE_DIR``)
    is kept. Failures only warn: the cache is an optimisation.
    """
    global _cache_dir_in_use
    if cache_dir == _AUTO:
        cache_dir = os.environ.get(JAX_CACHE_DIR_ENV, DEFAULT_JAX_CACHE_DIR) or None
    if cache_dir is None:
        return _cache_dir_in_use
    path = os.path.abspath(os.path.expanduser(cache_dir))
    if _cache_dir_in_use is not None:
        if path != _cache_dir_in_use:
            warnings.warn(
                f"jax's compilation cache is already at {_cache_dir_in_use}; ignoring {path}",
                stacklevel=2,
            )
        return _cache_dir_in_use

    import jax

    try:
        # jax's Config defines its options as attributes at run time; its stub lacks them
        configured = jax.config.jax_compilation_cache_dir  # type: ignore[attr-defined]
        if configured:  # the user's own choice wins
            _cache_dir_in_use = str(configured)
            return _cache_dir_in_use
        os.makedirs(path, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", path)
        optional_settings = {
            "jax_persistent_cache_min_compile_time_secs": _CACHE_MIN_COMPILE_SECS,
            "jax_persistent_cache_min_entry_size_bytes": -1,  # no size threshold
        }
        for name, value in optional_settings.items():
            if hasattr(jax.config, name):
                jax.config.update(name, value)
    except Exception as exc:  # e.g. read-only home, or a jax without these options
        warnings.warn(
            f"could not enable jax's persistent compilation cache at {path}: {exc}",
            stacklevel=2,
        )
        return None
    _cache_dir_in_use = path
    return path


class SMAXStepOutput(NamedTuple):
    """What :func:`smax_reset` / :func:`smax_step` return besides the next state (jax arrays)."""

    obs: jax.Array  # (n_agents, obs_dim) float32; rows of dead agents are zero
    world_state: jax.Array  # (state_dim,) float32
    avail: jax.Array  # (n_agents, n_actions) int8, SMAC numbering
    reward: jax.Array  # () float32, the shared team reward (0 at reset)
    terminated: jax.Array  # () bool
    battle_won: jax.Array  # () bool: every enemy dead and an ally alive
    timed_out: jax.Array  # () bool: episode limit reached with the battle undecided
    unit_alive: jax.Array  # (n_agents + n_enemies,) bool, allies first


def _strong_types(tree: Any) -> Any:
    """Drop weak types from every leaf.

    SMAX's reset builds some leaves from Python scalars (e.g. ``step``, the heuristic's
    ``last_attacked_enemy``); weakly typed inputs would give the step function a second
    compilation (jit caches on weak_type) the first time a stepped state comes back in.
    """
    import jax

    return jax.tree.map(lambda x: jax.lax.convert_element_type(x, x.dtype), tree)


def smac_to_smax_actions(smac_actions: jax.Array) -> jax.Array:
    """Map SMAC action numbers (any integer array) to SMAX's discrete actions."""
    import jax.numpy as jnp

    actions = jnp.asarray(smac_actions, dtype=jnp.int32)
    table = jnp.asarray(_SMAC_TO_SMAX_MOVES, dtype=jnp.int32)
    moves = table[jnp.clip(actions, 0, N_SMAC_NON_ATTACK_ACTIONS - 1)]
    return jnp.where(actions < N_SMAC_NON_ATTACK_ACTIONS, moves, actions - 1)


def _smac_avail(smax_avail: jax.Array, alive: jax.Array) -> jax.Array:
    """SMAX ally masks (n_agents, 5 + n_enemies) -> SMAC masks (n_agents, 6 + n_enemies), int8."""
    import jax.numpy as jnp

    moves = smax_avail[:, jnp.asarray(_SMAC_TO_SMAX_MOVES)]
    attacks = smax_avail[:, N_SMAX_NON_ATTACK_ACTIONS:]
    # SMAX lets dead units "stop"; SMAC gives them the no-op and nothing else.
    avail = jnp.concatenate([moves, attacks], axis=1).astype(jnp.int8) * alive[:, None]
    return avail.at[:, 0].set(jnp.logical_not(alive).astype(jnp.int8))


def _scaled_world_state(env: Any, world_state: jax.Array) -> jax.Array:
    """SMAX's ``get_world_state`` with every feature in [0, 1], as SMAC's own state is.

    SMAX's layout: per unit (allies, then enemies) ``[health fraction, x, y, weapon cooldown,
    unit-type one-hot]`` (zeros for dead units), then every unit's team and type index. Raw map
    coordinates (0..32) and type indices fed to QMIX's state hypernetworks make the mixing weights
    large (the failure measured on LBF, docs/results.md), and SMAX's cooldown keeps decreasing
    below zero while a unit does not shoot (-10 after a few dozen steps): any value <= 0 means
    "ready" to the game, so it is kept at 0 there. Positions are divided by the map size, the
    cooldown by the unit type's longest cooldown, type indices by the largest index.
    """
    import jax.numpy as jnp

    n_units = env.num_allies + env.num_enemies
    per_unit = world_state[: -2 * n_units].reshape(n_units, -1)
    teams, types = world_state[-2 * n_units : -n_units], world_state[-n_units:]
    size = jnp.array([env.map_width, env.map_height], dtype=jnp.float32)
    max_cooldown = jnp.max(env.unit_type_weapon_cooldowns)
    per_unit = per_unit.at[:, 1:3].divide(size)
    per_unit = per_unit.at[:, 3].set(jnp.maximum(per_unit[:, 3], 0.0) / max_cooldown)
    n_types = max(1, len(env.unit_type_health) - 1)
    scaled = jnp.concatenate([per_unit.reshape(-1), teams, types / n_types])
    return scaled.astype(jnp.float32)


def _outputs(
    env: Any, state: Any, obs: dict[str, jax.Array], reward: jax.Array, smax_done: jax.Array
) -> SMAXStepOutput:
    """Everything the host needs after a reset/step, computed on device from the new state."""
    import jax.numpy as jnp

    alive = state.state.unit_alive
    allies_alive = alive[: env.num_agents]
    ally_dead = jnp.logical_not(jnp.any(allies_alive))
    enemy_dead = jnp.logical_not(jnp.any(alive[env.num_agents :]))
    decided = ally_dead | enemy_dead
    # SMAX checks its limit on the step counter *before* incrementing it (one step late), so the
    # SMAC time limit is applied here; max_steps == episode_limit keeps SMAX from ending earlier.
    timed_out = (state.state.step >= env.max_steps) & jnp.logical_not(decided)
    obs_matrix = jnp.stack([obs[agent] for agent in env.agents]).astype(jnp.float32)
    smax_avail = env.get_avail_actions(state)
    smax_avail = jnp.stack([smax_avail[agent] for agent in env.agents])
    return SMAXStepOutput(
        obs=jnp.where(allies_alive[:, None], obs_matrix, 0.0),
        world_state=_scaled_world_state(env, obs["world_state"]),
        avail=_smac_avail(smax_avail, allies_alive),
        reward=jnp.asarray(reward, dtype=jnp.float32),
        terminated=decided | timed_out | smax_done,
        battle_won=enemy_dead & jnp.logical_not(ally_dead),
        timed_out=timed_out,
        unit_alive=alive,
    )


def smax_reset(env: Any, key: jax.Array) -> tuple[Any, SMAXStepOutput]:
    """Pure reset of a ``HeuristicEnemySMAX``: ``key -> (state, outputs)``; vmappable."""
    import jax.numpy as jnp

    obs, state = env.reset(key)
    state = _strong_types(state)
    return state, _outputs(env, state, obs, jnp.float32(0.0), jnp.bool_(False))


def smax_step(
    env: Any, key: jax.Array, state: Any, smac_actions: jax.Array
) -> tuple[Any, SMAXStepOutput]:
    """Pure step with SMAC-numbered actions: ``(key, state, actions) -> (state, outputs)``.

    Uses SMAX's non-resetting ``step_env``. SMAX's per-agent rewards are one team reward (every
    ally gets ``team_rewards[0]``), so the first ally's value is the shared reward.
    """
    smax_actions = smac_to_smax_actions(smac_actions)
    actions = {agent: smax_actions[i] for i, agent in enumerate(env.agents)}
    obs, next_state, rewards, dones, _ = env.step_env(key, state, actions)
    next_state = _strong_types(next_state)
    outputs = _outputs(env, next_state, obs, rewards[env.agents[0]], dones["__all__"])
    return next_state, outputs


def _reset_with_keys(env: Any, key: jax.Array) -> tuple[jax.Array, jax.Array, Any, SMAXStepOutput]:
    """``master key -> (next master key, episode step key, state, outputs)``."""
    import jax

    next_key, reset_key, episode_key = jax.random.split(key, 3)
    state, outputs = smax_reset(env, reset_key)
    return next_key, episode_key, state, outputs


def _step_with_key(
    env: Any, key: jax.Array, state: Any, smac_actions: jax.Array
) -> tuple[jax.Array, Any, SMAXStepOutput]:
    """``(episode key, state, actions) -> (next episode key, state, outputs)``."""
    import jax

    next_key, step_key = jax.random.split(key)
    state, outputs = smax_step(env, step_key, state, smac_actions)
    return next_key, state, outputs


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
