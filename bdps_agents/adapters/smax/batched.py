"""The pure batched jax functions that :class:`~bdps_agents.adapters.smax.vector.SMAXVectorEnv`
jits: reset and step every slot of ``num_envs`` SMAX episodes with a per-env on/off mask
(``batching="map"``: ``jax.lax.map`` with a ``lax.cond`` per slot; ``"vmap"``: ``jax.vmap``).
Importing it imports no jax.

Batching and recompilation: ``reset`` and ``step`` each run *all* ``num_envs`` slots in one
compiled function with a per-env on/off mask, so any subset of ids reuses the same compilation
(one compilation of each per instance, see :meth:`SMAXVectorEnv.cache_sizes`; jax's persistent
cache, switched on as for the adapter, makes later ones cheap). Slots that
are off keep their state and PRNG key unchanged. ``batching="map"`` runs the envs one after the
other inside the call (``jax.lax.map``, with a ``lax.cond`` that skips the slots that are off);
its results are bitwise those of the unbatched adapter. ``batching="vmap"`` vectorises across envs
(``jax.vmap``, every slot computed and the off ones discarded), the fast choice on a GPU, but XLA
then rounds a few observation features differently (1 ulp; e.g. 0.90000004 for 0.9 in
5m_vs_6m), and SMAX's heuristic enemy reads such features, so episodes can drift apart from the
adapter's. ``"auto"`` (default) is ``map`` on jax's CPU backend (as fast as ``vmap`` there) and
``vmap`` on an accelerator.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from bdps_agents.adapters.smax.core import SMAXStepOutput, _reset_with_keys, _step_with_key

if TYPE_CHECKING:
    import jax

__all__: list[str] = []


def _zeros_like_outputs(fn: Any, *args: Any) -> Any:
    """Zeros with the structure of ``fn(*args)``'s result (the output of a skipped slot)."""
    import jax
    import jax.numpy as jnp

    shapes = jax.eval_shape(fn, *args)
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def _select(on: jax.Array, new: Any, old: Any) -> Any:
    """Per-env ``where``: leaf ``i`` from ``new`` where ``on[i]``, else from ``old``."""
    import jax
    import jax.numpy as jnp

    def pick(a: jax.Array, b: jax.Array) -> jax.Array:
        return jnp.where(on.reshape(on.shape + (1,) * (a.ndim - 1)), a, b)

    return jax.tree.map(pick, new, old)


def _batched_reset(
    env: Any,
    batching: str,
    master_keys: jax.Array,
    on: jax.Array,
    episode_keys: jax.Array,
    states: Any,
) -> tuple[jax.Array, jax.Array, Any, SMAXStepOutput]:
    """Reset the envs with ``on[i]``: ``(next master keys, episode keys, states, outputs)``.

    Envs that are off keep their master key, episode key and state; their outputs are zeros
    (``map``) or a discarded fresh reset (``vmap``).
    """
    import jax

    reset = partial(_reset_with_keys, env)
    if batching == "vmap":
        next_master, new_episode, new_states, outputs = jax.vmap(reset)(master_keys)
        return (
            _select(on, next_master, master_keys),
            _select(on, new_episode, episode_keys),
            _select(on, new_states, states),
            outputs,
        )

    def one(slot: tuple) -> tuple:
        key, is_on, episode_key, state = slot

        def keep(_: None) -> tuple:
            return key, episode_key, state, _zeros_like_outputs(reset, key)[3]

        return jax.lax.cond(is_on, lambda _: reset(key), keep, None)

    return jax.lax.map(one, (master_keys, on, episode_keys, states))


def _batched_step(
    env: Any,
    batching: str,
    master_keys: jax.Array,
    episode_keys: jax.Array,
    states: Any,
    actions: jax.Array,
    on: jax.Array,
) -> tuple[jax.Array, jax.Array, Any, SMAXStepOutput, SMAXStepOutput]:
    """Step the envs with ``on[i]`` (SMAC-numbered ``actions``, ``(N, n_agents)`` int32), then
    start the next episode of every env whose episode ended, from its master key.

    Returns ``(next master keys, episode keys, states, step outputs, reset outputs)``. Envs that
    are off keep their key and state. The reset is exactly what a later ``reset`` of the env
    would compute (it depends only on the master key), so the host hands it out when Tianshou
    asks for it, and commits the next master key only then.
    """
    import jax
    import jax.numpy as jnp

    step = partial(_step_with_key, env)
    if batching == "vmap":
        new_keys, new_states, outputs = jax.vmap(step)(episode_keys, states, actions)
        new_keys = _select(on, new_keys, episode_keys)
        new_states = _select(on, new_states, states)
    else:

        def one(slot: tuple) -> tuple:
            key, state, action, is_on = slot

            def keep(_: None) -> tuple:
                return key, state, _zeros_like_outputs(step, key, state, action)[2]

            return jax.lax.cond(is_on, lambda _: step(key, state, action), keep, None)

        new_keys, new_states, outputs = jax.lax.map(one, (episode_keys, states, actions, on))

    ended = on & outputs.terminated
    reset = partial(_batched_reset, env, batching)
    if batching == "vmap":  # a vmapped reset computes every slot: only when one is needed

        def skip(_: None) -> tuple:
            zeros = _zeros_like_outputs(reset, master_keys, ended, new_keys, new_states)[3]
            return master_keys, new_keys, new_states, zeros

        resets = jax.lax.cond(
            jnp.any(ended), lambda _: reset(master_keys, ended, new_keys, new_states), skip, None
        )
    else:
        resets = reset(master_keys, ended, new_keys, new_states)
    next_master, new_keys, new_states, reset_outputs = resets
    return next_master, new_keys, new_states, outputs, reset_outputs


def _resolve_batching(batching: str) -> str:
    if batching not in ("auto", "map", "vmap"):
        raise ValueError(f"batching must be 'auto', 'map' or 'vmap', got {batching!r}")
    if batching != "auto":
        return batching
    import jax

    return "map" if jax.default_backend() == "cpu" else "vmap"
