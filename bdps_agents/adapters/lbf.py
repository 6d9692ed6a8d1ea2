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

import functools
import re
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

__all__ = ["LBFParallelEnv", "parse_task"]

N_ACTIONS = 6
_ACTIONS = sorted(Action, key=lambda action: action.value)  # index -> Action
# row b is the mask of the action set whose bit pattern is b
_MASK_ROWS = ((np.arange(1 << N_ACTIONS)[:, None] >> np.arange(N_ACTIONS)) & 1).astype(np.int8)

_TASK_RE = re.compile(
    r"(?P<rows>\d+)x(?P<cols>\d+)-(?P<players>\d+)p-(?P<food>\d+)f"
    r"(?P<coop>-coop)?(?:-(?P<sight>\d+)s)?(?P<pen>-pen)?"
)
_ID_RE = re.compile(r"Foraging(?:-(?P<sight_prefix>\d+)s)?-(?P<task>.+?)-v\d+")

# Defaults of the task-defining constructor arguments, used to detect conflicts with ``task``.
_TASK_DEFAULTS: dict[str, Any] = {
    "field_size": 8,
    "players": 2,
    "max_num_food": 2,
    "coop": False,
    "sight": None,
    "penalty": 0.0,
}


def parse_task(task: str) -> dict[str, Any]:
    """Parse ``"{R}x{C}-{P}p-{F}f[-coop][-{S}s][-pen]"`` into constructor arguments.

    Also accepts a full lbforaging id (``"Foraging[-{S}s]-...-v3"``). Raises ``ValueError``.
    """
    sight_prefix = None
    id_match = _ID_RE.fullmatch(task)
    if id_match:
        sight_prefix, task = id_match["sight_prefix"], id_match["task"]
    match = _TASK_RE.fullmatch(task)
    if match is None:
        raise ValueError(
            f"cannot parse LBF task {task!r}: expected '{{R}}x{{C}}-{{P}}p-{{F}}f[-coop][-{{S}}s]"
            "[-pen]' such as '15x15-4p-5f' or '8x8-2p-2f-coop-2s' (grid observations and "
            "'-ind' tasks are not supported)"
        )
    if sight_prefix is not None and match["sight"] is not None:
        raise ValueError(f"LBF task {task!r} gives the sight twice")
    sight = sight_prefix if sight_prefix is not None else match["sight"]
    return {
        "field_size": (int(match["rows"]), int(match["cols"])),
        "players": int(match["players"]),
        "max_num_food": int(match["food"]),
        "coop": match["coop"] is not None,
        "sight": None if sight is None else int(sight),
        "penalty": 0.1 if match["pen"] else 0.0,
    }


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_levels(name: str, value: Any, length: int) -> np.ndarray:
    values = np.atleast_1d(np.asarray(value))
    if values.ndim != 1 or len(values) not in (1, length):
        raise ValueError(f"{name} must be an int or a sequence of {length} ints, got {value!r}")
    if not np.issubdtype(values.dtype, np.integer) or (values < 1).any():
        raise ValueError(f"{name} must hold integers >= 1, got {value!r}")
    return np.broadcast_to(values, (length,)).astype(np.int64)


def _check_bool(name: str, value: Any) -> bool:
    # strict: bool("no") is True, so a string or a number here is a mistake, not a flag
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return bool(value)


# Cells that a food rules out for later foods: lbforaging's spawn_food refuses a cell with food
# in its 3x3 neighbourhood or 2 cells away in its row or column, i.e. |dr| + |dc| <= 2.
_FOOD_ZONE = [(dr, dc) for dr in range(-2, 3) for dc in range(-2, 3) if abs(dr) + abs(dc) <= 2]
_PLACEMENT_SEARCH_NODES = 100_000


@functools.lru_cache(maxsize=256)
def _blocked_placement(
    rows: int, cols: int, players: int, foods: int
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]] | None:
    """Players and earlier foods that leave a later food no cell, or None if there are none.

    lbforaging places the players first, each on a random free cell, then every food on a random
    inner cell (off the border) that holds no player and lies more than 2 steps (|dr| + |dc|)
    from every food placed before it, giving up after 1000 draws. Placement can fail exactly when
    some legal choice of at most ``foods - 1`` foods, together with at most ``players`` player
    cells, covers every inner cell. Returns ``(food cells, player cells)`` of such a choice,
    found by a depth-first search over the first uncovered inner cell (a player stands on it, or
    one of the <= 13 foods whose zone holds it is placed). None also when the search does not
    settle within its budget (many foods on a large field: random placement is then far from
    the worst case, and ``reset`` still warns if food falls short).
    """
    inner = [(r, c) for r in range(1, rows - 1) for c in range(1, cols - 1)]
    if len(inner) > players + len(_FOOD_ZONE) * (foods - 1):
        return None  # even a full zone per earlier food plus every player leaves a cell
    index = {cell: i for i, cell in enumerate(inner)}
    zone = [0] * len(inner)  # bit mask of the inner cells each food would rule out
    near: list[list[int]] = [[] for _ in inner]  # food cells whose zone holds this cell
    for i, (r, c) in enumerate(inner):
        for dr, dc in _FOOD_ZONE:
            j = index.get((r + dr, c + dc))
            if j is not None:
                zone[i] |= 1 << j
                near[i].append(j)
    every = (1 << len(inner)) - 1
    failed: set[tuple[int, int, int]] = set()
    nodes = 0

    def search(taken: int, food_left: int, player_left: int) -> tuple[list[int], list[int]] | None:
        nonlocal nodes
        free = every & ~taken
        if not free:
            return [], []
        key = (taken, food_left, player_left)
        if key in failed or free.bit_count() > len(_FOOD_ZONE) * food_left + player_left:
            return None
        nodes += 1
        if nodes > _PLACEMENT_SEARCH_NODES:
            raise TimeoutError
        cell = (free & -free).bit_length() - 1  # the first uncovered inner cell
        if food_left:
            for food in near[cell]:
                if not (taken >> food) & 1:  # legal: off the players and earlier zones
                    found = search(taken | zone[food], food_left - 1, player_left)
                    if found is not None:
                        return [food, *found[0]], found[1]
        if player_left:
            found = search(taken | 1 << cell, food_left, player_left - 1)
            if found is not None:
                return found[0], [cell, *found[1]]
        failed.add(key)
        return None

    try:
        found = search(0, foods - 1, players)
    except TimeoutError:
        return None
    if found is None:
        return None
    return [inner[i] for i in found[0]], [inner[i] for i in found[1]]


def _check_placement(rows: int, cols: int, players: int, foods: int) -> None:
    """Refuse fields where lbforaging can fail to place all foods (see _blocked_placement)."""
    blocked = _blocked_placement(rows, cols, players, foods)
    if blocked is None:
        return
    food_cells, player_cells = blocked
    example = " with ".join(
        f"a {noun} on {cells[0]}" if len(cells) == 1 else f"{noun}s on {', '.join(map(str, cells))}"
        for noun, cells in (("food", food_cells), ("player", player_cells))
        if cells
    )
    raise ValueError(
        f"players={players} and max_num_food={foods} on a {rows}x{cols} field cannot always be "
        f"placed: lbforaging puts each food on a free inner cell (rows 1-{rows - 2}, cols "
        f"1-{cols - 2}) more than 2 steps (|dr|+|dc|) from earlier foods, and {example} would "
        f"leave food {len(food_cells) + 1} no such cell (lbforaging then spawns fewer foods; an "
        "episode without food ends after one step). Criterion: every food must find a cell "
        "whatever cells the players and earlier foods took; use a larger field, fewer players "
        "or fewer foods"
    )


def _checked_args(
    field_size: Any = 8,
    players: Any = 2,
    max_num_food: Any = 2,
    coop: Any = False,
    sight: Any = None,
    max_episode_steps: Any = 50,
    min_player_level: Any = 1,
    max_player_level: Any = 2,
    min_food_level: Any = 1,
    max_food_level: Any = None,
    normalize_reward: Any = True,
    penalty: Any = 0.0,
    render_mode: Any = None,
    normalize_obs: Any = True,
    *,
    task: Any = None,
) -> dict[str, Any]:
    """:class:`LBFParallelEnv`'s arguments checked and resolved (``task`` applied), without
    building lbforaging's env; raises ``ValueError`` naming the argument."""
    # typed before the task is compared: coop="no" is a wrong value, not a different task
    coop = _check_bool("coop", coop)
    if (
        isinstance(penalty, bool)
        or not isinstance(penalty, int | float | np.integer | np.floating)
        or not np.isfinite(penalty)
        or penalty < 0
    ):
        raise ValueError(f"penalty must be a finite number >= 0, got {penalty!r}")
    if task is not None:
        if not isinstance(task, str):
            raise ValueError(f"task must be a string such as '15x15-4p-5f', got {task!r}")
        given = {
            "field_size": field_size,
            "players": players,
            "max_num_food": max_num_food,
            "coop": coop,
            "sight": sight,
            "penalty": penalty,
        }
        parsed = parse_task(task)
        for key, value in given.items():
            default = _TASK_DEFAULTS[key]
            same = value == parsed[key] or (key == "field_size" and (value, value) == parsed[key])
            if value != default and not same:
                raise ValueError(
                    f"{key}={value!r} conflicts with task {task!r} ({key}={parsed[key]!r})"
                )
        field_size, players, max_num_food = (
            parsed["field_size"],
            parsed["players"],
            parsed["max_num_food"],
        )
        coop, sight, penalty = parsed["coop"], parsed["sight"], parsed["penalty"]

    try:  # the sizes: from the task when there is one, so errors name it
        if isinstance(field_size, int | np.integer) and not isinstance(field_size, bool):
            field_size = (int(field_size), int(field_size))
        if not (isinstance(field_size, Sequence) and len(field_size) == 2):
            raise ValueError(f"field_size must be an int or (rows, cols), got {field_size!r}")
        rows = _check_int("field_size rows", field_size[0], 3)
        cols = _check_int("field_size cols", field_size[1], 3)
        players = _check_int("players", players, 1)
        max_num_food = _check_int("max_num_food", max_num_food, 1)
        if max_num_food > (rows - 2) * (cols - 2):
            raise ValueError(
                f"max_num_food={max_num_food} foods do not fit in the {rows - 2}x{cols - 2} "
                f"interior of a {rows}x{cols} field (foods are never placed on the border)"
            )
        if players + max_num_food > rows * cols:
            raise ValueError(
                f"{players} players and {max_num_food} foods do not fit in {rows * cols} cells"
            )
        _check_placement(rows, cols, players, max_num_food)
        sight = max(rows, cols) if sight is None else _check_int("sight", sight, 1)
    except ValueError as err:
        if task is None:
            raise
        raise ValueError(f"LBF task {task!r}: {err}") from None
    max_episode_steps = _check_int("max_episode_steps", max_episode_steps, 1)
    min_pl = _check_levels("min_player_level", min_player_level, players)
    max_pl = _check_levels("max_player_level", max_player_level, players)
    if (min_pl > max_pl).any():
        raise ValueError(
            f"min_player_level {min_player_level!r} exceeds max_player_level {max_player_level!r}"
        )
    min_fl = _check_levels("min_food_level", min_food_level, max_num_food)
    max_fl = None
    if max_food_level is not None:
        max_fl = _check_levels("max_food_level", max_food_level, max_num_food)
        if (min_fl > max_fl).any():
            raise ValueError(
                f"min_food_level {min_food_level!r} exceeds max_food_level {max_food_level!r}"
            )
    if render_mode not in (None, *LBFParallelEnv.metadata["render_modes"]):
        raise ValueError(
            f"render_mode must be None or one of {LBFParallelEnv.metadata['render_modes']}, "
            f"got {render_mode!r}"
        )
    return {
        "field_size": (rows, cols),
        "players": players,
        "max_num_food": max_num_food,
        "coop": coop,
        "sight": sight,
        "max_episode_steps": max_episode_steps,
        "min_player_level": min_pl,
        "max_player_level": max_pl,
        "min_food_level": min_fl,
        "max_food_level": max_fl,
        "normalize_reward": _check_bool("normalize_reward", normalize_reward),
        "penalty": float(penalty),
        "render_mode": render_mode,
        "normalize_obs": _check_bool("normalize_obs", normalize_obs),
    }


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
        "render_modes": ["human", "rgb_array"],
        "is_parallelizable": True,
    }
    noop_action = 0
    metric_keys: tuple[str, ...] = ("food_collected",)

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
