"""SMAX's jitted pieces, free of any env object: the compilation cache, SMAC's action numbering
and time limits, and the pure :func:`smax_reset` / :func:`smax_step` functions (and their keyed
forms) that :class:`~bdps_agents.adapters.smax.env.SMAXStarCraft2Env` and
:class:`~bdps_agents.adapters.smax.vector.SMAXVectorEnv` compile. Importing it imports no jax."""

from __future__ import annotations

import io
import os
import sys
import warnings
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import jax

__all__ = [
    "DEFAULT_JAX_CACHE_DIR",
    "JAX_CACHE_DIR_ENV",
    "SMAC_EPISODE_LIMITS",
    "SMAXStepOutput",
    "enable_compilation_cache",
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
    large (the failure measured on LBF, docs/results/qmix-lbf-8x8.md), and SMAX's cooldown keeps
    decreasing below zero while a unit does not shoot (-10 after a few dozen steps): any value
    <= 0 means "ready" to the game, so it is kept at 0 there. Positions are divided by the map
    size, the cooldown by the unit type's longest cooldown, type indices by the largest index.
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
