"""LBF task names and the checking of :class:`~bdps_agents.adapters.lbf.LBFParallelEnv`'s
constructor arguments (without building lbforaging's env)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from bdps_agents.adapters.lbf.placement import _check_placement

__all__ = ["RENDER_MODES", "parse_task"]

#: lbforaging's render modes (``RENDER_MODES``).
RENDER_MODES = ["human", "rgb_array"]

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


# lbforaging's field is a numpy array and each step scans it: 1000x1000 is far beyond any
# published task (<= 20x20) and still a few MB per env
MAX_FIELD_CELLS = 1_000_000


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
        if rows * cols > MAX_FIELD_CELLS:
            raise ValueError(
                f"a {rows}x{cols} field has {rows * cols} cells, more than the {MAX_FIELD_CELLS} "
                "the LBF adapter accepts (lbforaging keeps arrays of the whole field): use a "
                "smaller field"
            )
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
    if render_mode not in (None, *RENDER_MODES):
        raise ValueError(f"render_mode must be None or one of {RENDER_MODES}, got {render_mode!r}")
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
