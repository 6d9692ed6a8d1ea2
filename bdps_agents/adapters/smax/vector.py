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
``tests/adapters/test_smax_vector.py``), in the default ``obs_format="dicts"``:

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

``obs_format="batch"`` hands the observations over as one Tianshou ``Batch`` instead (see
:func:`~bdps_agents.adapters.smax.host.format_obs`).

Batching (``batching="map"``, ``"vmap"`` or ``"auto"``) and recompilation: see
:mod:`bdps_agents.adapters.smax.batched`.

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

from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np

from bdps_agents.adapters.smax.batched import _batched_reset, _batched_step, _resolve_batching
from bdps_agents.adapters.smax.core import _AUTO, SMAXStepOutput, _reset_with_keys
from bdps_agents.adapters.smax.env import SMAXStarCraft2Env
from bdps_agents.adapters.smax.host import agent_ends, check_actions, format_obs, info_dicts
from bdps_agents.adapters.smax.workerless import WorkerlessVectorEnv
from bdps_agents.episode_rule import joint_action_mask, joint_episode_end

if TYPE_CHECKING:
    from bdps_agents.config import EnvConfig

__all__ = ["SMAXVectorEnv"]

Batching = Literal["auto", "map", "vmap"]
ObsFormat = Literal["dicts", "batch"]


# -- the vector env --------------------------------------------------------------------------------


class SMAXVectorEnv(WorkerlessVectorEnv):
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
        self._init_workerless(JointEnv(SMACParallelEnv(inner), reward_aggregation), num_envs)
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
        self.metric_names: dict[str, str] = self._probe.metric_names
        self.noop_action: int = self._probe.noop_action
        self.agents: list[str] = list(self._probe.agents)

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
        obs = format_obs(
            self.obs_format,
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
        live = self._live[ids]
        act = check_actions(
            action, ids, self._running[ids], live, self._mask[ids], self.agents, self.n_actions
        )
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
        self._mask[ids] = joint_action_mask(
            self._next_avail[ids], self._live[ids], self.noop_action
        )

    def _after_step(
        self,
        host: SMAXStepOutput,
        ids: np.ndarray,
        was_live: np.ndarray,
        env_ids: Sequence[Any] | np.ndarray,
    ) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``SMACParallelEnv.step`` then ``JointEnv.step``'s bookkeeping, for the envs ``ids``."""
        ends = agent_ends(
            host, ids, was_live, self._steps[ids], self.episode_limit, self.n_agents, self.n_enemies
        )
        end = joint_episode_end(was_live, ends.terminated, ends.truncated)
        live, visible = end.live, end.visible
        reward = cast(np.ndarray, host.reward)[ids].astype(np.float64)
        if self.reward_aggregation == "sum":
            reward = reward * was_live.sum(axis=1)  # one team reward per agent that acted

        self._live[ids] = live
        self._running[ids] = live.any(axis=1)
        mask = joint_action_mask(ends.avail, visible, self.noop_action)
        self._mask[ids] = mask
        obs = format_obs(
            self.obs_format,
            np.where(visible[..., None], host.obs[ids], np.float32(0.0)),
            cast(np.ndarray, host.world_state)[ids],
            mask,
            visible.astype(np.int8),
        )
        infos = info_dicts(live.sum(axis=1).tolist(), ends.metrics, self.metric_keys, env_ids)
        return obs, reward, end.terminated, end.truncated, infos
