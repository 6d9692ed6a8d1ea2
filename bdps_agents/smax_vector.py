"""Many SMAX episodes stepped in one jitted call, behind Tianshou's vector-env interface.

:class:`SMAXVectorEnv` holds ``num_envs`` SMAX episodes as one batched jax state and is a drop-in
replacement for ``DummyVectorEnv([JointEnv(SMACParallelEnv(SMAXStarCraft2Env(map_name)))] * N)``
(the ``smax`` adapter under :class:`~bdps_agents.joint_env.JointEnv`) for Tianshou's
``Collector``: one jitted call and one ``jax.device_get`` per vector ``step``, instead of one per
env plus three layers of Python wrappers per env. The same call also starts the next episode of
every env whose episode ended on that step (from the env's master key, exactly the episode a
``reset`` would start), so the Collector's ``reset(env_id=...)`` of finished envs needs no device
call; ``seed``, a reseeding ``reset(seed=...)`` and a reset in the middle of an episode run one
batched reset call.

What it returns is exactly what that ``DummyVectorEnv`` returns (checked step by step by
``tests/test_smax_vector.py``), in the default ``obs_format="dicts"``:

* ``reset(env_id=None, **kwargs) -> (obs, info)``: ``obs`` is a 1-D object array of dicts
  ``{"obs": (n, d) float32, "state": (S,) float32, "mask": (n, A) int8, "alive": (n,) int8}``
  (what ``np.stack`` makes of the ``JointEnv`` dict observations), ``info`` an object array of
  dicts ``{"n_alive": int, "battle_won": float, "dead_allies": float, "dead_enemies": float}``.
  ``reset(seed=s)`` reseeds each env in ``env_id`` with ``s`` first, as the adapter does.
* ``step(action, id=None) -> (obs, rew, terminated, truncated, info)``: ``action`` is
  ``(len(id), n)`` in SMAC numbering; ``rew`` float64 (the team reward aggregated as ``JointEnv``
  does: ``mean`` gives SMAX's shared reward, ``sum`` that times the number of agents that
  acted), ``terminated``/``truncated`` bool (a time-out is a truncation), infos as at reset
  plus ``"env_id"``. Actions of live agents are checked against the masks (``ValueError`` naming
  the env, the agent and the action); actions of dead agents are only range-checked and replaced
  by the no-op. Dead agents get zero observations, the no-op only and ``alive = 0``; on a time-out
  the survivors keep their last observation and mask (``JointEnv``'s truncation rule); ``state``
  is the adapter's scaled world state. Stepping a finished episode raises ``RuntimeError``:
  Tianshou's ``Collector`` resets finished envs with ``reset(env_id=...)``.

``obs_format="batch"`` hands the observations over as one Tianshou ``Batch`` of the stacked
arrays (``obs (B, n, d)``, ``state (B, S)``, ``mask``, ``alive``) instead: the Collector turns
the object array into exactly that ``Batch`` on every step (twice: as ``obs_next``, then as the
next ``obs``), which costs more than the batched SMAX step itself at 32 envs; the replay buffer
receives the same data either way (tested). Infos stay object arrays of dicts (the Collector
requires them).

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

Randomness (matching the adapter, so the same seeds give the same episodes): each env has a
master PRNG key ``jax.random.PRNGKey(seed)``; a reset splits it into (next master key, reset key,
episode key) and every step splits the episode key, exactly as
:class:`~bdps_agents.adapters.smax.SMAXStarCraft2Env` does. ``seed(s)`` gives env ``i`` the seed
``s + i`` (a list gives one seed per env) and, like ``DummyVectorEnv.seed`` of the adapter stack
(whose ``JointEnv`` has no ``seed`` method, so Tianshou's worker calls ``reset(seed=...)``),
starts a new episode in every env and seeds the per-env action spaces. The constructor calls
``seed(seed)``.

Attributes read by the rest of the code: ``env_num`` (and ``len``), ``is_async = False``,
``get_env_attr(key, id)`` (per-env ``action_space``/``observation_space`` copies, and any
attribute of an equivalent ``JointEnv``, e.g. ``"episode_limit"``, ``"metric_keys"``),
``set_env_attr``, and directly ``n_agents``, ``n_actions``, ``obs_dim``, ``state_dim``,
``episode_limit``, ``metric_keys``, ``noop_action``. :attr:`SMAXVectorEnv.probe` is that
equivalent single ``JointEnv`` (never reset here) for ``EnvSpec.of``. There are no workers
(``workers == []``); ``render`` is not supported.

From an :class:`~bdps_agents.config.EnvConfig` (``adapter: smax``; ``map_name`` and the other
``make_smax_env`` arguments in ``env.kwargs``)::

    venv = SMAXVectorEnv.from_env_config(cfg.env, cfg.env.num_train_envs, seed=cfg.training.seed)
    spec = EnvSpec.of(venv.probe)
    collector = Collector(policy, venv, EpisodeReplayBuffer(size, venv.env_num))

which is ``SMAXVectorEnv(env.kwargs["map_name"], num, seed=seed,
reward_aggregation=env.reward_aggregation, **other kwargs)`` (a ``seed`` in ``env.kwargs`` is
ignored, as ``make_vector_env``'s ``venv.seed`` overrides it for the adapter too).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
from tianshou.data import Batch
from tianshou.env import BaseVectorEnv

from bdps_agents.adapters.smax import (
    _AUTO,
    SMAXStarCraft2Env,
    SMAXStepOutput,
    _reset_with_keys,
    _step_with_key,
)

if TYPE_CHECKING:
    import jax

    from bdps_agents.config import EnvConfig
    from bdps_agents.joint_env import JointEnv

__all__ = ["SMAXVectorEnv"]

Batching = Literal["auto", "map", "vmap"]
ObsFormat = Literal["dicts", "batch"]


# -- pure batched functions (jitted per env in SMAXVectorEnv) --------------------------------------


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


# -- the vector env --------------------------------------------------------------------------------


class SMAXVectorEnv(BaseVectorEnv):
    """``num_envs`` SMAX episodes as one batched jax state (see the module docstring).

    Args:
        map_name: a SMAX map, e.g. ``"3m"``, ``"5m_vs_6m"``.
        num_envs: number of parallel episodes (``env_num``).
        seed: passed to :meth:`seed` at construction (env ``i`` gets ``seed + i``).
        episode_limit: time limit; SMAC's for the map by default (as the adapter).
        reward_aggregation: ``"mean"`` (the ``smax`` presets: SMAX's shared team reward) or
            ``"sum"`` (that times the number of agents that acted), as ``JointEnv``.
        batching: ``"auto"``, ``"map"`` (bitwise the adapter's results) or ``"vmap"``.
        obs_format: ``"dicts"`` (an object array of dicts, exactly as ``DummyVectorEnv``) or
            ``"batch"`` (a Tianshou ``Batch`` of the stacked arrays, what the Collector turns the
            dicts into; the same data, without that per-step conversion).
        compilation_cache_dir: jax's persistent compilation cache, as for
            :class:`~bdps_agents.adapters.smax.SMAXStarCraft2Env`.
        smax_kwargs: passed to ``HeuristicEnemySMAX`` (e.g. ``attack_mode``).

    Construction compiles the batched reset (seconds on CPU; less with a warm persistent
    cache); the first ``step`` compiles the batched step.
    """

    def __init__(
        self,
        map_name: str,
        num_envs: int,
        seed: int | Sequence[int] | None = 0,
        *,
        episode_limit: int | None = None,
        reward_aggregation: Literal["sum", "mean"] = "mean",
        batching: Batching = "auto",
        obs_format: ObsFormat = "dicts",
        compilation_cache_dir: str | None = _AUTO,
        **smax_kwargs: Any,
    ) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, int | np.integer):
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if obs_format not in ("dicts", "batch"):
            raise ValueError(f"obs_format must be 'dicts' or 'batch', got {obs_format!r}")
        import jax
        import jax.numpy as jnp

        from bdps_agents.adapters.smac import SMACParallelEnv
        from bdps_agents.joint_env import JointEnv

        inner = SMAXStarCraft2Env(
            map_name,
            episode_limit=episode_limit,
            compilation_cache_dir=compilation_cache_dir,
            **smax_kwargs,
        )
        # the equivalent single env: its sizes, spaces and semantics are the reference
        self._probe = JointEnv(SMACParallelEnv(inner), reward_aggregation)
        self.map_name = map_name
        self.batching = _resolve_batching(batching)
        self.obs_format = obs_format
        self.reward_aggregation = reward_aggregation
        self.n_agents: int = self._probe.n_agents
        self.n_enemies: int = inner.n_enemies
        self.n_actions: int = self._probe.n_actions
        self.obs_dim: int = self._probe.obs_dim
        self.state_dim: int = self._probe.state_dim
        self.episode_limit: int = inner.episode_limit
        self.metric_keys: tuple[str, ...] = self._probe.metric_keys
        self.noop_action: int = self._probe.noop_action
        self.agents: list[str] = list(self._probe.agents)

        # what BaseVectorEnv.__init__ sets, without workers (the Collector reads env_num,
        # is_async and, through __getattribute__, action_space via get_env_attr)
        self._env_fns: list = []
        self.workers: list = []
        self.env_num = int(num_envs)
        self.wait_num = self.env_num
        self.timeout = None
        self.is_async = False
        self.waiting_conn: list = []
        self.waiting_id: list[int] = []
        self.ready_id = list(range(self.env_num))
        self.is_closed = False
        self._env_attrs: list[dict[str, Any]] = [
            {
                "observation_space": copy.deepcopy(self._probe.observation_space),
                "action_space": copy.deepcopy(self._probe.action_space),
            }
            for _ in range(self.env_num)
        ]

        smax = inner.smax_env
        self._reset_jit = jax.jit(partial(_batched_reset, smax, self.batching))
        self._step_jit = jax.jit(partial(_batched_step, smax, self.batching))

        # Device: per-env episode keys and SMAX states (placeholders until the first reset).
        # Host: master keys and the JointEnv bookkeeping of every env, and the first outputs of
        # each env's next episode once the device has started it (``_ready``).
        n = self.env_num
        one_key = jax.random.PRNGKey(0)
        shapes = jax.eval_shape(jax.vmap(partial(_reset_with_keys, smax)), jnp.stack([one_key] * n))
        self._episode_keys, self._states = jax.tree.map(
            lambda s: jnp.zeros(s.shape, s.dtype), (shapes[1], shapes[2])
        )
        key_dtype = np.asarray(one_key).dtype
        self._master_keys = np.zeros((n, *one_key.shape), dtype=key_dtype)
        self._running = np.zeros(n, dtype=bool)
        self._live = np.zeros((n, self.n_agents), dtype=bool)
        self._mask = np.zeros((n, self.n_agents, self.n_actions), dtype=np.int8)
        self._steps = np.zeros(n, dtype=np.int64)
        self._ready = np.zeros(n, dtype=bool)
        self._next_master = np.zeros_like(self._master_keys)
        self._next_obs = np.zeros((n, self.n_agents, self.obs_dim), dtype=np.float32)
        self._next_state = np.zeros((n, self.state_dim), dtype=np.float32)
        self._next_avail = np.zeros((n, self.n_agents, self.n_actions), dtype=np.int8)
        self._all_ids = np.arange(n)
        self.seed(seed)

    @classmethod
    def from_env_config(
        cls, env_cfg: EnvConfig, num_envs: int, seed: int | None = 0, **overrides: Any
    ) -> SMAXVectorEnv:
        """The batched equivalent of ``make_vector_env(env_cfg, num_envs, seed)`` for
        ``adapter: smax`` (``map_name`` and the adapter's other arguments from
        ``env_cfg.kwargs``; ``overrides``, e.g. ``obs_format``, are passed on)."""
        if env_cfg.adapter != "smax":
            raise ValueError(f"SMAXVectorEnv runs the 'smax' adapter, not {env_cfg.adapter!r}")
        kwargs = dict(env_cfg.kwargs)
        kwargs.pop("seed", None)  # make_vector_env's venv.seed overrides it for the adapter too
        if "map_name" not in kwargs:
            raise ValueError("env.kwargs has no map_name for the smax adapter")
        map_name = kwargs.pop("map_name")
        kwargs.update(overrides)
        kwargs.setdefault("reward_aggregation", env_cfg.reward_aggregation)
        return cls(map_name, num_envs, seed, **kwargs)

    # -- attributes -------------------------------------------------------------------------------

    @property
    def probe(self) -> JointEnv:
        """A ``JointEnv`` over the same map and settings (for ``EnvSpec.of``; not reset here)."""
        return self._probe

    @property
    def single_observation_space(self) -> Any:
        return self._probe.observation_space

    @property
    def single_action_space(self) -> Any:
        return self._probe.action_space

    def get_env_attr(self, key: str, id: int | list[int] | np.ndarray | None = None) -> list[Any]:
        """Per-env attribute values (the spaces are per-env copies; other keys are read from an
        equivalent ``JointEnv``, or what :meth:`set_env_attr` set)."""
        self._assert_is_not_closed()
        values = []
        for j in self._wrap_id(id):
            attrs = self._env_attrs[int(j)]
            values.append(attrs[key] if key in attrs else getattr(self._probe, key))
        return values

    def set_env_attr(
        self, key: str, value: Any, id: int | list[int] | np.ndarray | None = None
    ) -> None:
        """Record a per-env attribute value (read back by :meth:`get_env_attr`; it does not
        change the simulation)."""
        self._assert_is_not_closed()
        for j in self._wrap_id(id):
            self._env_attrs[int(j)][key] = value

    def cache_sizes(self) -> dict[str, int]:
        """How many compilations the jitted batched reset and step hold (1 each once used)."""
        # _cache_size is a private method of jax's jitted functions, absent from their stub
        return {
            "reset": self._reset_jit._cache_size(),  # type: ignore[attr-defined]
            "step": self._step_jit._cache_size(),  # type: ignore[attr-defined]
        }

    # -- vector-env API ---------------------------------------------------------------------------

    def seed(self, seed: int | Sequence[int] | None = None) -> list[list[int] | None]:
        """Seed every env (``s + i`` for an int ``s``, one per env for a list, ``None``: no new
        seed) and start a new episode in each, like ``DummyVectorEnv.seed`` of the adapter."""
        self._assert_is_not_closed()
        if seed is None:
            seeds: list[int | None] = [None] * self.env_num
        elif isinstance(seed, int | np.integer):
            seeds = [int(seed) + i for i in range(self.env_num)]
        else:
            seeds = [None if s is None else int(s) for s in seed]
            if len(seeds) != self.env_num:
                raise ValueError(f"expected {self.env_num} seeds, got {len(seeds)}")
        for attrs, s in zip(self._env_attrs, seeds, strict=True):
            attrs["action_space"].seed(s)
        for i, s in enumerate(seeds):
            if s is not None:
                self._master_keys[i] = self._key_of(s)
                self._ready[i] = False  # a prepared next episode came from the old key
        self._start(self._all_ids)
        # an unseeded env reports [None]; Tianshou annotates the result as list[int] per env
        return [[s] for s in seeds]  # type: ignore[list-item]

    def reset(
        self, env_id: int | list[int] | np.ndarray | None = None, **kwargs: Any
    ) -> tuple[Any, np.ndarray]:
        """Start new episodes in ``env_id`` (all by default); ``seed=s`` reseeds each of them
        with ``s`` first (a sequence: one seed per id). Other keywords (``options``) are
        ignored, as the adapter ignores them."""
        self._assert_is_not_closed()
        ids = self._ids(env_id)
        seed = kwargs.get("seed")
        if seed is not None:
            per_env = [int(seed)] * len(ids) if isinstance(seed, int | np.integer) else list(seed)
            if len(per_env) != len(ids):
                raise ValueError(f"expected {len(ids)} seeds, got {len(per_env)}")
            for j, s in zip(ids, per_env, strict=True):
                self._master_keys[j] = self._key_of(int(s))
                self._ready[j] = False
        self._start(ids)
        obs = self._format_obs(
            self._next_obs[ids],
            self._next_state[ids],
            self._mask[ids],
            np.ones((len(ids), self.n_agents), dtype=np.int8),
        )
        metrics = dict.fromkeys(self.metric_keys, 0.0)
        infos = np.empty(len(ids), dtype=object)
        for k in range(len(ids)):
            infos[k] = {"n_alive": self.n_agents, **metrics}
        return obs, infos

    def step(
        self, action: np.ndarray | Any, id: int | list[int] | np.ndarray | None = None
    ) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One joint step of the envs in ``id`` (all by default); ``action`` is
        ``(len(id), n_agents)`` in SMAC numbering. Envs not in ``id`` do not advance."""
        import jax
        import jax.numpy as jnp

        self._assert_is_not_closed()
        if action is None:
            raise ValueError("action must be not-None for non-async")
        wrapped = self._wrap_id(id)
        ids = self._ids(wrapped)
        act = self._validate(action, ids)
        live = self._live[ids]
        joint = np.zeros((self.env_num, self.n_agents), dtype=np.int32)  # no-op elsewhere
        joint[ids] = np.where(live, act, self.noop_action)
        on = np.zeros(self.env_num, dtype=bool)
        on[ids] = True
        next_master, self._episode_keys, self._states, outputs, reset_outputs = self._step_jit(
            jnp.asarray(self._master_keys),
            self._episode_keys,
            self._states,
            jnp.asarray(joint),
            jnp.asarray(on),
        )
        host, next_master, first = jax.device_get((outputs, next_master, reset_outputs))
        self._steps[ids] += 1
        result = self._after_step(host, ids, live, wrapped)

        # the device started the next episode of each env that ended: keep its first outputs
        ended = ids[host.terminated[ids]]
        if not np.array_equal(np.sort(ended), np.sort(ids[~self._running[ids]])):
            raise RuntimeError("SMAXVectorEnv: episode ends disagree between host and device")
        self._store_next(ended, next_master, first)
        return result

    def render(self, **kwargs: Any) -> list[Any]:
        raise NotImplementedError("SMAXVectorEnv does not render (use the smax adapter)")

    def close(self) -> None:
        """Drop the episodes; the env cannot be used afterwards (as Tianshou's vector envs)."""
        self._assert_is_not_closed()
        self._probe.close()
        self._states = self._episode_keys = None
        self._running[:] = False
        self._ready[:] = False
        self.is_closed = True

    def __repr__(self) -> str:
        return (
            f"SMAXVectorEnv(map_name={self.map_name!r}, num_envs={self.env_num}, "
            f"batching={self.batching!r}, obs_format={self.obs_format!r})"
        )

    # -- helpers ----------------------------------------------------------------------------------

    @staticmethod
    def _key_of(seed: int) -> np.ndarray:
        import jax

        return np.asarray(jax.random.PRNGKey(seed))

    def _ids(self, env_id: int | list[int] | np.ndarray | None) -> np.ndarray:
        ids = np.asarray(self._wrap_id(env_id))
        if ids.ndim != 1 or not (ids.size == 0 or np.issubdtype(ids.dtype, np.integer)):
            raise ValueError(f"env ids must be integers, got {env_id!r}")
        ids = ids.astype(np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.env_num):
            raise ValueError(f"env ids must be in [0, {self.env_num}), got {ids.tolist()}")
        if np.unique(ids).size != ids.size:
            raise ValueError(f"env ids must be distinct, got {ids.tolist()}")
        return ids

    def _store_next(self, ids: np.ndarray, next_master: np.ndarray, first: SMAXStepOutput) -> None:
        """Keep the first outputs of the episodes the device has started in ``ids``."""
        self._ready[ids] = True
        self._next_master[ids] = next_master[ids]
        self._next_obs[ids] = first.obs[ids]
        self._next_state[ids] = first.world_state[ids]
        self._next_avail[ids] = first.avail[ids]

    def _start(self, ids: np.ndarray) -> None:
        """Begin the next episode in ``ids``: the one the device already started where there is
        one, else a batched reset now; then the host bookkeeping of a fresh episode."""
        import jax
        import jax.numpy as jnp

        todo = ids[~self._ready[ids]]
        if todo.size:
            on = np.zeros(self.env_num, dtype=bool)
            on[todo] = True
            next_master, self._episode_keys, self._states, outputs = self._reset_jit(
                jnp.asarray(self._master_keys), jnp.asarray(on), self._episode_keys, self._states
            )
            self._store_next(todo, *jax.device_get((next_master, outputs)))
        self._master_keys[ids] = self._next_master[ids]
        self._ready[ids] = False
        self._steps[ids] = 0
        self._running[ids] = True
        self._live[ids] = True
        self._mask[ids] = self._joint_mask(self._next_avail[ids], self._live[ids])

    def _joint_mask(self, avail: np.ndarray, visible: np.ndarray) -> np.ndarray:
        """``JointEnv``'s masks: the env's mask for visible agents, else the no-op only; a
        visible agent with no available action gets the no-op."""
        mask = ((avail != 0) & visible[..., None]).astype(np.int8)
        stuck = ~mask.any(axis=-1)
        mask[..., self.noop_action] |= stuck.astype(np.int8)
        return mask

    def _validate(self, action: Any, ids: np.ndarray) -> np.ndarray:
        arr = np.asarray(action)
        if arr.shape != (len(ids), self.n_agents):
            raise ValueError(
                f"actions must have shape ({len(ids)}, {self.n_agents}) (one row per env id, "
                f"one action per agent), got shape {arr.shape}"
            )
        if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"actions must be integers, got dtype {arr.dtype}")
        finished = ids[~self._running[ids]]
        if finished.size:
            raise RuntimeError(
                f"env {int(finished[0])}: the episode is over (or never started): call "
                "reset(env_id=...) first"
            )
        out_of_range = (arr < 0) | (arr >= self.n_actions)
        if out_of_range.any():
            k, i = np.argwhere(out_of_range)[0]
            raise ValueError(
                f"env {int(ids[k])}: action {int(arr[k, i])} of agent {self.agents[i]!r} is "
                f"outside [0, {self.n_actions})"
            )
        masks = self._mask[ids]
        chosen = np.take_along_axis(masks, arr[..., None].astype(np.int64), axis=-1)[..., 0]
        illegal = self._live[ids] & (chosen == 0)
        if illegal.any():
            k, i = np.argwhere(illegal)[0]
            raise ValueError(
                f"env {int(ids[k])}: action {int(arr[k, i])} is unavailable for agent "
                f"{self.agents[i]!r}; available actions: {np.flatnonzero(masks[k, i]).tolist()}"
            )
        return arr.astype(np.int64)

    def _after_step(
        self,
        host: SMAXStepOutput,
        ids: np.ndarray,
        was_live: np.ndarray,
        env_ids: Sequence[Any] | np.ndarray,
    ) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``SMACParallelEnv.step`` then ``JointEnv.step``'s bookkeeping, for the envs ``ids``."""
        n = self.n_agents
        # host is jax.device_get's copy of the step outputs: its leaves are numpy arrays
        avail = cast(np.ndarray, host.avail)[ids]
        unit_alive = host.unit_alive[ids]
        battle_won = host.battle_won[ids].astype(bool)
        dead_allies = n - np.count_nonzero(unit_alive[:, :n], axis=1)
        dead_enemies = self.n_enemies - np.count_nonzero(unit_alive[:, n:], axis=1)
        env_terminated = host.terminated[ids].astype(bool)

        # SMACParallelEnv: time-out -> truncation; agents that died -> terminated
        dead = (avail[..., 0] == 1) & (avail[..., 1:].sum(axis=-1) == 0)
        timed_out = (env_terminated & host.timed_out[ids].astype(bool)) | (
            self._steps[ids] >= self.episode_limit
        )
        decided = battle_won | (dead_allies >= n)
        env_truncated = env_terminated & timed_out & ~decided
        over = env_terminated | env_truncated
        terms = was_live & ((over & ~env_truncated)[:, None] | dead)
        truncs = was_live & env_truncated[:, None] & ~terms

        # JointEnv: live agents, the end of the joint episode, what is shown
        live = was_live & ~terms & ~truncs
        ended = ~live.any(axis=1)
        all_terminated = np.all(~was_live | (terms & ~truncs), axis=1)
        terminated = ended & all_terminated
        truncated = ended & ~all_terminated
        visible = live | (was_live & truncs & ~terms)  # truncated agents keep their last view
        reward = cast(np.ndarray, host.reward)[ids].astype(np.float64)
        if self.reward_aggregation == "sum":
            reward = reward * was_live.sum(axis=1)  # one team reward per agent that acted

        self._live[ids] = live
        self._running[ids] = ~ended
        mask = self._joint_mask(avail, visible)
        self._mask[ids] = mask
        obs = self._format_obs(
            np.where(visible[..., None], host.obs[ids], np.float32(0.0)),
            cast(np.ndarray, host.world_state)[ids],
            mask,
            visible.astype(np.int8),
        )

        n_alive = live.sum(axis=1).tolist()
        metrics = {
            "battle_won": battle_won.astype(np.float64).tolist(),
            "dead_allies": dead_allies.astype(np.float64).tolist(),
            "dead_enemies": dead_enemies.astype(np.float64).tolist(),
        }
        columns = [(key, metrics[key]) for key in self.metric_keys]
        infos = np.empty(len(ids), dtype=object)
        for k, j in enumerate(env_ids):  # Tianshou writes the ids as given: int or np.int64
            info: dict[str, Any] = {"n_alive": n_alive[k]}
            for key, values in columns:
                info[key] = values[k]
            info["env_id"] = j
            infos[k] = info
        return obs, reward, terminated, truncated, infos

    def _format_obs(
        self, obs: np.ndarray, state: np.ndarray, mask: np.ndarray, alive: np.ndarray
    ) -> Any:
        """``JointEnv`` observations of several envs: a 1-D object array of dicts, as
        ``np.stack`` makes them (``obs_format="dicts"``), or one ``Batch`` (``"batch"``)."""
        obs = np.array(obs, dtype=np.float32)
        state = np.array(state, dtype=np.float32)
        mask = np.array(mask, dtype=np.int8)
        alive = np.array(alive, dtype=np.int8)
        if self.obs_format == "batch":
            return Batch(obs=obs, state=state, mask=mask, alive=alive)
        out = np.empty(len(obs), dtype=object)
        for k in range(len(obs)):
            out[k] = {"obs": obs[k], "state": state[k], "mask": mask[k], "alive": alive[k]}
        return out
