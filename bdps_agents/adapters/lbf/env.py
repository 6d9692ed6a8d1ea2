"""Level-Based Foraging (``lbforaging`` 2.0.0) as a PettingZoo parallel env.

Tasks are named like lbforaging's ids without prefix and version: ``"{R}x{C}-{P}p-{F}f[-coop]
[-{S}s][-pen]"`` (``R x C`` is lbforaging's ``field_size``, rows then columns; ``-{S}s`` limits
sight to ``S`` cells; ``-pen`` sets ``penalty=0.1``). Full ids such as
``"Foraging-2s-8x8-2p-2f-coop-v3"`` are accepted by :meth:`LBFParallelEnv.from_id`. Tasks that
lbforaging does not register (e.g. the paper's ``15x15-4p-5f``) work too.

Conventions (see :mod:`bdps_agents.adapters.base`):

* agents ``"agent_0" .. "agent_{P-1}"`` are lbforaging's players in order;
* actions ``0 NONE, 1 NORTH, 2 SOUTH, 3 WEST, 4 EAST, 5 LOAD``; ``noop_action = 0``;
* ``infos[agent]["action_mask"]`` comes from lbforaging's per-player ``_valid_actions``. An
  unavailable action is replaced by NONE (:func:`~bdps_agents.adapters.base.replacement_action`)
  and reported in ``infos[agent]["action_replaced"]`` (lbforaging itself would run NONE without
  telling); ``step_arrays`` reports it in ``ArrayStep.replaced``;
* ``terminations`` when all food is collected, ``truncations`` when ``max_episode_steps`` is
  reached without that (if both happen on the same step it is a termination);
* ``state()`` is the full-sight encoding described in :meth:`LBFParallelEnv.state`;
* ``metric_keys = ("food_collected",)``: fraction of the spawned food levels collected so far.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import gymnasium
import numpy as np
from lbforaging.foraging import ForagingEnv
from lbforaging.foraging.environment import Action

from bdps_agents.adapters.base import (
    ACTION_REPLACED,
    ArrayStep,
    MultiAgentEnvAdapter,
    StepResult,
    check_action_array,
    replacement_action,
)
from bdps_agents.adapters.lbf.tasks import RENDER_MODES, _checked_args, parse_task

__all__ = ["LBFParallelEnv", "parse_task"]

N_ACTIONS = 6
_ACTIONS = sorted(Action, key=lambda action: action.value)  # index -> Action
# row b is the mask of the action set whose bit pattern is b
_MASK_ROWS = ((np.arange(1 << N_ACTIONS)[:, None] >> np.arange(N_ACTIONS)) & 1).astype(np.int8)


def _scaled_space(
    space: gymnasium.spaces.Box, normalize: bool
) -> tuple[gymnasium.spaces.Box, np.ndarray, np.ndarray]:
    """(space seen by users, offset, scale) so that ``(x - offset) * scale`` lies in it."""
    if not normalize:
        return space, np.zeros_like(space.low), np.ones_like(space.low)
    span = space.high - space.low
    scale = np.where(span > 0, 1.0 / np.where(span > 0, span, 1.0), 1.0).astype(np.float32)
    unit = gymnasium.spaces.Box(0.0, 1.0, space.shape, dtype=np.float32)
    return unit, space.low.astype(np.float32), scale


class LBFParallelEnv(MultiAgentEnvAdapter):
    """Level-Based Foraging over ``lbforaging.foraging.ForagingEnv``.

    Args:
        field_size: side of a square field, or ``(rows, cols)``; each at least 3 (food is placed
            away from the border).
        players, max_num_food: numbers of agents and of foods. Refused when lbforaging could
            fail to place every food: some placement of the players and earlier foods leaves a
            later food no inner cell far enough from the others (e.g. ``4x4-12p-1f``, whose 12
            players can cover the 4 inner cells).
        coop: every food needs the combined level of (up to three of) the lowest agents
            (lbforaging's ``force_coop``).
        sight: observation radius in cells; ``None`` = the whole field.
        max_episode_steps: time limit (``episode_limit``).
        min_player_level, max_player_level, min_food_level, max_food_level: level ranges, ints or
            per-player/per-food sequences; ``max_food_level=None`` lets lbforaging use the sum
            of the three lowest player levels.
        normalize_reward: rewards sum to at most 1 per episode.
        normalize_obs: map observations and state affinely from their lbforaging bounds
            (coordinates, levels, -1 for unseen) to [0, 1]. On by default: raw grid coordinates
            (up to the field size) fed to QMIX's state hypernetworks make the mixing weights
            large and Q-values diverge (measured: Q_tot 0.6 -> 17 in 3k updates on random data
            with raw states, stable with normalised ones; see docs/algorithm.md).
        penalty: reward subtracted from agents whose LOAD fails.
        render_mode: ``None``, ``"human"`` or ``"rgb_array"`` (needs pyglet).
        task: a task name (see module docstring); its values replace ``field_size``, ``players``,
            ``max_num_food``, ``coop``, ``sight`` and ``penalty``. Giving one of those with a
            non-default value that differs from the task raises ``ValueError``.

    The flags (``coop``, ``normalize_reward``, ``normalize_obs``) take only ``True``/``False``;
    :meth:`check_kwargs` checks all arguments without building the env.
    """

    metadata: ClassVar[dict[str, Any]] = {
        "name": "lbf_v0",
        "render_modes": RENDER_MODES,
        "is_parallelizable": True,
    }
    noop_action = 0
    metric_keys: tuple[str, ...] = ("food_collected",)
    frame_drawer = "bdps_agents.adapters.lbf.render:DRAWER"

    def __init__(
        self,
        field_size: int | tuple[int, int] = 8,
        players: int = 2,
        max_num_food: int = 2,
        coop: bool = False,
        sight: int | None = None,
        max_episode_steps: int = 50,
        min_player_level: int | Sequence[int] = 1,
        max_player_level: int | Sequence[int] = 2,
        min_food_level: int | Sequence[int] = 1,
        max_food_level: int | Sequence[int] | None = None,
        normalize_reward: bool = True,
        penalty: float = 0.0,
        render_mode: str | None = None,
        normalize_obs: bool = True,
        *,
        task: str | None = None,
    ) -> None:
        args = _checked_args(
            field_size=field_size,
            players=players,
            max_num_food=max_num_food,
            coop=coop,
            sight=sight,
            max_episode_steps=max_episode_steps,
            min_player_level=min_player_level,
            max_player_level=max_player_level,
            min_food_level=min_food_level,
            max_food_level=max_food_level,
            normalize_reward=normalize_reward,
            penalty=penalty,
            render_mode=render_mode,
            normalize_obs=normalize_obs,
            task=task,
        )
        rows, cols = args["field_size"]
        players, max_num_food = args["players"], args["max_num_food"]
        sight, max_episode_steps = args["sight"], args["max_episode_steps"]
        min_pl, max_pl = args["min_player_level"], args["max_player_level"]
        min_fl, max_fl = args["min_food_level"], args["max_food_level"]
        coop, penalty = args["coop"], args["penalty"]

        self.field_size = (rows, cols)
        self.n_players = players
        self.max_num_food = max_num_food
        self.coop = coop
        self.sight = sight
        self.max_episode_steps = max_episode_steps
        self.episode_limit = max_episode_steps
        self.render_mode = render_mode
        self._env = ForagingEnv(
            players=players,
            min_player_level=min_pl,
            max_player_level=max_pl,
            min_food_level=min_fl,
            max_food_level=max_fl,
            field_size=(rows, cols),
            max_num_food=max_num_food,
            sight=sight,
            max_episode_steps=max_episode_steps,
            force_coop=self.coop,
            normalize_reward=args["normalize_reward"],
            penalty=penalty,
            # lbforaging renders from reset() in "human" mode only; rgb_array is on demand.
            render_mode="human" if render_mode == "human" else None,
        )

        # lbforaging 2.0.0 bounds both coordinates of its observation by the wrong axis (rows
        # by cols and cols by rows) and asserts obs-in-space, so non-square fields crash it. The
        # corrected space is installed on the inner env too, which fixes that assertion.
        box = self._env.observation_space[0]
        high = box.high.copy()
        high[0::3] = rows - 1
        high[1::3] = cols - 1
        raw_obs_space = gymnasium.spaces.Box(box.low.copy(), high, dtype=np.float32)
        self._env.observation_space = gymnasium.spaces.Tuple((raw_obs_space,) * players)
        self.normalize_obs = args["normalize_obs"]
        self._obs_space, self._obs_low, self._obs_scale = _scaled_space(
            raw_obs_space, self.normalize_obs
        )

        self.possible_agents = [f"agent_{i}" for i in range(players)]
        self.agents = []
        self.action_spaces = {a: gymnasium.spaces.Discrete(N_ACTIONS) for a in self.possible_agents}
        self.observation_spaces = dict.fromkeys(self.possible_agents, self._obs_space)

        max_food = float(box.high[2])
        max_player = float(max_pl.max())
        state_low = [-1.0, -1.0, 0.0] * max_num_food + [0.0, 0.0, 1.0] * players + [0.0]
        state_high = (
            [rows - 1.0, cols - 1.0, max_food] * max_num_food
            + [rows - 1.0, cols - 1.0, max_player] * players
            + [1.0]
        )
        raw_state_space = gymnasium.spaces.Box(
            np.array(state_low, dtype=np.float32),
            np.array(state_high, dtype=np.float32),
            dtype=np.float32,
        )
        self.state_space, self._state_low, self._state_scale = _scaled_space(
            raw_state_space, self.normalize_obs
        )
        self._empty_state = np.zeros(raw_state_space.shape, dtype=np.float32)
        self._empty_state[: 3 * self.max_num_food] = np.tile((-1.0, -1.0, 0.0), self.max_num_food)
        self._started = False
        self._warned_food = False

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def check_kwargs(cls, **kwargs: Any) -> None:
        """Raise ``ValueError`` naming the argument if ``cls(**kwargs)`` would refuse it, without
        building lbforaging's env (what :func:`bdps_agents.adapters.check_adapter_kwargs`
        calls when a config is validated)."""
        _checked_args(**kwargs)

    @classmethod
    def from_id(cls, env_id: str, **kwargs: Any) -> LBFParallelEnv:
        """Build from an lbforaging-style id, e.g. ``"Foraging-8x8-2p-2f-coop-v3"``.

        ``kwargs`` set the remaining arguments (``max_episode_steps``, levels, ...).
        """
        return cls(task=env_id, **kwargs)

    @property
    def foraging_env(self) -> ForagingEnv:
        """The wrapped lbforaging env (read its players and field; do not step it directly)."""
        return self._env

    # ------------------------------------------------------------------ PettingZoo API
    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
        # lbforaging's spawn_players treats the *previous* episode's positions as occupied, so
        # reset(seed=s) would depend on history. Clearing them makes the seed sufficient.
        for player in self._env.players:
            player.position = None
        nobs, _ = self._env.reset(seed=seed, options=options)
        if not self._warned_food:
            spawned = int(np.count_nonzero(self._env.field))
            if spawned < self.max_num_food:
                self._warned_food = True
                warnings.warn(
                    f"lbforaging placed only {spawned} of {self.max_num_food} foods on a "
                    f"{self.field_size} field (it gives up after 1000 attempts); "
                    "use a larger field or fewer foods",
                    RuntimeWarning,
                    stacklevel=2,
                )
        self._started = True
        self.agents = list(self.possible_agents)
        none_replaced = [False] * self.n_players
        return self._per_agent(
            self._scaled(nobs), self._action_masks(), self._food_collected(), none_replaced
        )

    def step(self, actions: Mapping[str, Any]) -> StepResult:
        joint = self._validate_actions(actions)
        agents = list(self.agents)
        out = self._advance([joint[a] for a in self.possible_agents])
        terminated, truncated = bool(out.terminated[0]), bool(out.truncated[0])
        assert out.replaced is not None  # _advance always reports the replaced actions
        obs, infos = self._per_agent(
            out.obs, out.masks, out.metrics["food_collected"], out.replaced.tolist()
        )
        return (
            obs,
            dict(zip(agents, out.rewards.tolist(), strict=True)),
            dict.fromkeys(agents, terminated),
            dict.fromkeys(agents, truncated),
            infos,
        )

    def step_arrays(self, actions: Sequence[int] | np.ndarray) -> ArrayStep:
        """``step`` with one action per player in agent order, results as arrays (see
        :class:`~bdps_agents.adapters.base.ArrayStep`); what ``JointEnv`` calls."""
        if not self.agents:
            raise RuntimeError("the episode is over (or never started): call reset() first")
        return self._advance(check_action_array(actions, self.possible_agents, N_ACTIONS))

    def _advance(self, joint: list[int]) -> ArrayStep:
        """One lbforaging step on valid-range actions of all players (every player acts while
        the episode runs); unavailable ones are replaced and reported."""
        valid = self._env._valid_actions  # the source of truth (tests edit the field)
        replaced = np.array(
            [_ACTIONS[a] not in valid[p] for a, p in zip(joint, self._env.players, strict=True)]
        )
        if replaced.any():  # rare: the masks are built only then
            masks = self._action_masks()
            # run the replacement explicitly (lbforaging would run NONE without telling)
            joint = [
                replacement_action(agent, masks[i], self.noop_action) if replaced[i] else action
                for i, (agent, action) in enumerate(zip(self.possible_agents, joint, strict=True))
            ]
        nobs, rewards, _, _, _ = self._env.step(joint)
        all_collected = not self._env.field.any()
        time_up = self._env.current_step >= self.max_episode_steps
        if all_collected or time_up:
            self.agents = []
        n = self.n_players
        return ArrayStep(
            obs=self._scaled(nobs),
            rewards=np.asarray(rewards, dtype=np.float64),
            # if both happen on the same step it is a termination
            terminated=np.ones(n, bool) if all_collected else np.zeros(n, bool),
            truncated=np.ones(n, bool) if time_up and not all_collected else np.zeros(n, bool),
            masks=self._action_masks(),
            metrics={"food_collected": self._food_collected()},
            replaced=replaced,
        )

    def state(self) -> np.ndarray:
        """Full-information global state, independent of ``sight`` (float32, ``state_space``).

        Layout: for each of ``max_num_food`` slots ``(row, col, level)`` of the remaining foods in
        row-major order, ``(-1, -1, 0)`` for empty slots; then ``(row, col, level)`` of every
        agent in agent order; then the elapsed fraction of the episode ``t / max_episode_steps``.
        Positions are absolute field coordinates; with ``normalize_obs`` every entry is mapped
        from its bounds to [0, 1].
        """
        if not self._started:
            raise RuntimeError("state() is undefined before the first reset()")
        field = self._env.field
        rows, cols = np.nonzero(field)
        k = min(len(rows), self.max_num_food)
        state = self._empty_state.copy()  # empty food slots (-1, -1, 0), then zeros
        state[0 : 3 * k : 3], state[1 : 3 * k : 3] = rows[:k], cols[:k]
        state[2 : 3 * k : 3] = field[rows[:k], cols[:k]]
        state[3 * self.max_num_food : -1] = [
            v for p in self._env.players for v in (*p.position, p.level)
        ]
        state[-1] = self._env.current_step / self.max_episode_steps
        return (state - self._state_low) * self._state_scale

    def render(self) -> Any:
        if self.render_mode is None:
            gymnasium.logger.warn("render() called with render_mode=None; nothing to render")
            return None
        return self._env.render(mode=self.render_mode)

    def close(self) -> None:
        self._env.close()

    # ------------------------------------------------------------------ helpers
    def _scaled(self, nobs: Sequence[np.ndarray]) -> np.ndarray:
        """All players' observations as one ``(n, d)`` float32 array, scaled."""
        return (np.asarray(nobs, dtype=np.float32) - self._obs_low) * self._obs_scale

    def _action_masks(self) -> np.ndarray:
        """``(n_agents, N_ACTIONS)`` int8 masks of lbforaging's valid actions: each player's
        valid set as a bit pattern, looked up in the table of all 64 mask rows."""
        valid = self._env._valid_actions
        # ``_value_`` (the enum's stored value) skips Enum's Python-level hash and property
        return _MASK_ROWS[[sum(1 << a._value_ for a in valid[p]) for p in self._env.players]]

    def _per_agent(
        self, obs: np.ndarray, masks: np.ndarray, collected: float, replaced: list[bool]
    ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
        """Observation and info dicts of every player (all act until the episode ends)."""
        return (
            dict(zip(self.possible_agents, obs, strict=True)),
            {
                a: {"action_mask": mask, "food_collected": collected, ACTION_REPLACED: r}
                for a, mask, r in zip(self.possible_agents, masks, replaced, strict=True)
            },
        )

    def _food_collected(self) -> float:
        spawned = float(self._env._food_spawned)
        return 1.0 - float(self._env.field.sum()) / spawned if spawned > 0 else 0.0
