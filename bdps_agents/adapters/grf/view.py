"""The paper's Dec-POMDP view of Google Research Football, as pure NumPy functions.

BDPS (Sec. 4.1, App. A.2) restricts what each left-team player sees: its own position and
motion, the ball (position, direction, owner) always, and teammates and opponents only within a
view distance (0.84 pitch units) and a forward cone (200 degrees) around the player's heading.
This module turns one gfootball ``representation='raw'`` observation (a dict; the team-level
fields are identical in every controlled player's copy) into per-agent observations and a global
state. It imports nothing from gfootball, so it can be tested without the simulator.

Geometry (:func:`visible_mask`):

* the *heading* of a player is its movement direction (``left_team_direction``, normalised). A
  player moving slower than ``heading_eps`` per step keeps its last heading; every player starts
  facing ``+x`` (the opponents' goal) at reset. See :func:`update_headings`;
* another player is visible iff its distance is ``<= view_distance`` **and** the angle between
  the heading and the direction to it is ``<= view_cone_deg / 2`` (both bounds inclusive, with a
  ``1e-9`` tolerance so that values that are exactly on a bound up to rounding count as inside).
  A player at exactly the agent's own position (distance 0, no direction) is visible.
  ``view_cone_deg = 360`` means no cone; ``view_distance = inf`` means no range limit.

Observation of agent ``i`` (float32, length ``obs_size(n_left, n_right) = 18 + 5 * (n_left - 1 +
n_right)``; :func:`obs_layout` gives the slices by name):

====================  ====  ==============================================================
``self_pos``           2    own absolute position ``(x, y)``
``self_dir``           2    own movement vector (gfootball's per-step direction)
``self_heading``       2    own unit heading (what the cone is centred on)
``ball_pos``           3    ball absolute position ``(x, y, z)``
``ball_dir``           3    ball movement vector
``ball_rel``           2    ball position relative to the agent ``(bx - x, by - y)``
``ball_owner_team``    3    one-hot: nobody / our (left) team / the opponents
``ball_owned_by_me``   1    1 if the agent itself has the ball (so teammate = ours and not me)
``others``            5*K   ``K = n_left - 1 + n_right`` slots: the *other* teammates in index
                            order (the agent itself is excluded), then the opponents in index
                            order. Each slot is ``(visible, dx, dy, dir_x, dir_y)`` with the
                            position *relative* to the agent and the opponent's / teammate's
                            movement vector; all five are 0 when the player is not visible.
====================  ====  ==============================================================

Relative positions are used for other players because what matters to an agent is where they
are from it; absolute coordinates of the pitch (and of the goals) remain available through
``self_pos``. Coordinates are gfootball's (``x`` in ``[-1, 1]`` towards the opponents' goal,
``y`` in about ``[-0.42, 0.42]``), directions are gfootball's per-step displacement vectors
(about 0.01 while running); nothing is rescaled.

Global state (:func:`encode_state`, float32, length ``state_size(n_left, n_right) = 7 * n_left +
5 * n_right + 19``, see :func:`state_layout`): every player's absolute
position and movement vector (left players also their heading), the ball's position and
direction, the ball owner (team one-hot and player one-hot over left then right players), the
score, the game mode one-hot (7 modes) and the fraction of the episode left.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "ANGLE_TOL",
    "DIST_TOL",
    "N_GAME_MODES",
    "OTHER_SLOT",
    "ViewConfig",
    "encode_observations",
    "encode_state",
    "initial_headings",
    "obs_layout",
    "obs_size",
    "other_indices",
    "state_layout",
    "state_size",
    "team_sizes",
    "update_headings",
    "visible_mask",
]

#: Tolerances that make the range and cone bounds inclusive despite rounding.
DIST_TOL = 1e-9
ANGLE_TOL = 1e-9  # radians

#: gfootball's game modes: normal, kick-off, goal kick, free kick, corner, throw-in, penalty.
N_GAME_MODES = 7

#: Width of one "other player" slot: visible flag, relative (dx, dy), direction (dx, dy).
OTHER_SLOT = 5

_SELF_AND_BALL = (
    ("self_pos", 2),
    ("self_dir", 2),
    ("self_heading", 2),
    ("ball_pos", 3),
    ("ball_dir", 3),
    ("ball_rel", 2),
    ("ball_owner_team", 3),
    ("ball_owned_by_me", 1),
)


@dataclass(frozen=True)
class ViewConfig:
    """Parameters of the partial view.

    Args:
        view_distance: how far a player sees other players (pitch units, inclusive); ``inf``
            for no limit. The paper uses 0.84.
        view_cone_deg: full opening angle of the forward view cone in degrees, in ``(0, 360]``
            (inclusive at exactly +-half of it); 360 for no cone. The paper uses 200.
        heading_eps: a movement vector shorter than this leaves the heading unchanged (a player
            standing still keeps looking where it last moved). gfootball's running speed is
            about 0.01 per step; the default 1e-4 only ignores numerical dust.
    """

    view_distance: float = 0.84
    view_cone_deg: float = 200.0
    heading_eps: float = 1e-4

    def __post_init__(self) -> None:
        _check_positive("view_distance", self.view_distance, allow_inf=True)
        cone = self.view_cone_deg
        if _not_real(cone) or not 0.0 < float(cone) <= 360.0:
            raise ValueError(f"view_cone_deg must be a number in (0, 360], got {cone!r}")
        _check_positive("heading_eps", self.heading_eps, allow_inf=False)


def _not_real(value: Any) -> bool:
    return isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating)


def _check_positive(name: str, value: Any, *, allow_inf: bool) -> None:
    if _not_real(value) or np.isnan(value) or value <= 0 or (not allow_inf and np.isinf(value)):
        extra = " (or inf)" if allow_inf else ""
        raise ValueError(f"{name} must be a positive number{extra}, got {value!r}")


# ----------------------------------------------------------------------------- geometry
def initial_headings(n: int) -> np.ndarray:
    """``(n, 2)`` headings at reset: every player faces ``+x`` (the opponents' goal)."""
    headings = np.zeros((n, 2), dtype=np.float64)
    headings[:, 0] = 1.0
    return headings


def update_headings(
    prev_headings: np.ndarray, directions: np.ndarray, eps: float = 1e-4
) -> np.ndarray:
    """New unit headings: the normalised movement direction, or the previous heading when the
    movement vector is shorter than ``eps`` (or not finite).

    ``prev_headings`` and ``directions`` are ``(..., 2)`` arrays (extra components of
    ``directions`` beyond the first two, e.g. a ``z``, are ignored). Returns a new array.
    """
    prev = np.asarray(prev_headings, dtype=np.float64)
    d = np.asarray(directions, dtype=np.float64)[..., :2]
    if prev.shape != d.shape:
        raise ValueError(f"headings {prev.shape} and directions {d.shape} do not match")
    norm = np.linalg.norm(d, axis=-1, keepdims=True)
    moving = np.isfinite(norm) & (norm >= eps)
    return np.where(moving, d / np.where(moving, norm, 1.0), prev)


def visible_mask(
    positions: np.ndarray,
    headings: np.ndarray,
    others: np.ndarray,
    distance: float = 0.84,
    cone_deg: float = 200.0,
) -> np.ndarray:
    """``(n_self, n_others)`` bool: which of ``others`` each observer sees.

    ``positions`` ``(n_self, 2)`` and ``headings`` ``(n_self, 2)`` (unit vectors) describe the
    observers, ``others`` ``(n_others, 2)`` the players that may be seen. Inclusive at exactly
    ``distance`` and at exactly ``+-cone_deg / 2`` (up to :data:`DIST_TOL` / :data:`ANGLE_TOL`);
    a player at distance 0 is visible. Vectorised: no loop over observers.
    """
    pos = np.asarray(positions, dtype=np.float64)[:, :2]
    head = np.asarray(headings, dtype=np.float64)[:, :2]
    oth = np.asarray(others, dtype=np.float64)[:, :2]
    delta = oth[None, :, :] - pos[:, None, :]  # (n_self, n_others, 2)
    dist = np.hypot(delta[..., 0], delta[..., 1])
    in_range = dist <= distance + DIST_TOL
    if cone_deg >= 360.0:
        return in_range
    hx, hy = head[:, None, 0], head[:, None, 1]
    dot = hx * delta[..., 0] + hy * delta[..., 1]
    cross = hx * delta[..., 1] - hy * delta[..., 0]
    angle = np.abs(np.arctan2(cross, dot))  # in [0, pi], exact enough near the cone edge
    in_cone = (angle <= np.deg2rad(cone_deg) / 2.0 + ANGLE_TOL) | (dist == 0.0)
    return in_range & in_cone


def other_indices(n_left: int, n_right: int) -> np.ndarray:
    """``(n_left, n_left - 1 + n_right)`` int: for each agent, the indices (into the stacked
    left-then-right players) of its "other player" slots: teammates but itself, then opponents.
    """
    total = n_left + n_right
    grid = np.broadcast_to(np.arange(total), (n_left, total))
    keep = grid != np.arange(n_left)[:, None]
    return grid[keep].reshape(n_left, total - 1)


# ----------------------------------------------------------------------------- layouts
def _layout(parts: list[tuple[str, int]]) -> dict[str, slice]:
    out, start = {}, 0
    for name, width in parts:
        out[name] = slice(start, start + width)
        start += width
    return out


def obs_layout(n_left: int, n_right: int) -> dict[str, slice]:
    """Name -> slice of a per-agent observation (see the module docstring)."""
    n_others = n_left - 1 + n_right
    return _layout([*_SELF_AND_BALL, ("others", OTHER_SLOT * n_others)])


def obs_size(n_left: int, n_right: int) -> int:
    """Length of a per-agent observation: ``18 + 5 * (n_left - 1 + n_right)``."""
    return obs_layout(n_left, n_right)["others"].stop


def state_layout(n_left: int, n_right: int) -> dict[str, slice]:
    """Name -> slice of the global state.

    ``left`` holds ``(x, y, dir_x, dir_y, heading_x, heading_y)`` per left player, ``right``
    ``(x, y, dir_x, dir_y)`` per right player, ``ball_owner_player`` a one-hot over left then
    right players (all 0 when nobody owns the ball), ``score`` ``(ours, theirs)``, ``game_mode``
    a one-hot over the 7 gfootball modes and ``time_left`` ``steps_left / episode_limit``.
    """
    return _layout(
        [
            ("left", 6 * n_left),
            ("right", 4 * n_right),
            ("ball_pos", 3),
            ("ball_dir", 3),
            ("ball_owner_team", 3),
            ("ball_owner_player", n_left + n_right),
            ("score", 2),
            ("game_mode", N_GAME_MODES),
            ("time_left", 1),
        ]
    )


def state_size(n_left: int, n_right: int) -> int:
    """Length of the global state: ``7 * n_left + 5 * n_right + 19``."""
    return state_layout(n_left, n_right)["time_left"].stop


def team_sizes(raw: Mapping[str, Any]) -> tuple[int, int]:
    """``(n_left, n_right)`` players in a raw observation."""
    return len(raw["left_team"]), len(raw["right_team"])


# ----------------------------------------------------------------------------- encoders
def _owner_team_onehot(owned_team: int) -> np.ndarray:
    onehot = np.zeros(3, dtype=np.float32)
    onehot[{-1: 0, 0: 1, 1: 2}.get(int(owned_team), 0)] = 1.0
    return onehot


def encode_observations(
    raw: Mapping[str, Any],
    headings: np.ndarray,
    cfg: ViewConfig | None = None,
    visible: np.ndarray | None = None,
) -> np.ndarray:
    """``(n_left, obs_size)`` float32 observations of the left players (one row per agent).

    ``raw`` is one gfootball raw observation dict, ``headings`` the ``(n_left, 2)`` current
    headings (see :func:`update_headings`). ``visible`` may pass a precomputed
    ``(n_left, n_left + n_right)`` :func:`visible_mask` of the left players over all players.
    """
    cfg = cfg or ViewConfig()
    left = np.asarray(raw["left_team"], dtype=np.float64)
    right = np.asarray(raw["right_team"], dtype=np.float64)
    left_dir = np.asarray(raw["left_team_direction"], dtype=np.float64)
    right_dir = np.asarray(raw["right_team_direction"], dtype=np.float64)
    n_left, n_right = len(left), len(right)
    headings = np.asarray(headings, dtype=np.float64)
    if headings.shape != (n_left, 2):
        raise ValueError(f"headings must have shape ({n_left}, 2), got {headings.shape}")
    ball = np.asarray(raw["ball"], dtype=np.float64)
    ball_dir = np.asarray(raw["ball_direction"], dtype=np.float64)
    owned_team = int(raw["ball_owned_team"])
    owned_player = int(raw["ball_owned_player"])

    all_pos = np.concatenate([left, right])
    all_dir = np.concatenate([left_dir, right_dir])
    if visible is None:
        visible = visible_mask(left, headings, all_pos, cfg.view_distance, cfg.view_cone_deg)
    idx = other_indices(n_left, n_right)  # (n_left, K)
    seen = np.take_along_axis(np.asarray(visible, dtype=bool), idx, axis=1)  # (n_left, K)

    layout = obs_layout(n_left, n_right)
    obs = np.zeros((n_left, layout["others"].stop), dtype=np.float32)
    obs[:, layout["self_pos"]] = left
    obs[:, layout["self_dir"]] = left_dir
    obs[:, layout["self_heading"]] = headings
    obs[:, layout["ball_pos"]] = ball
    obs[:, layout["ball_dir"]] = ball_dir
    obs[:, layout["ball_rel"]] = ball[None, :2] - left
    obs[:, layout["ball_owner_team"]] = _owner_team_onehot(owned_team)
    if owned_team == 0 and 0 <= owned_player < n_left:
        obs[owned_player, layout["ball_owned_by_me"]] = 1.0
    slots = np.zeros((n_left, idx.shape[1], OTHER_SLOT), dtype=np.float64)
    slots[..., 0] = 1.0
    slots[..., 1:3] = all_pos[idx] - left[:, None, :]
    slots[..., 3:5] = all_dir[idx, :2]
    slots[~seen] = 0.0  # overwrite, never multiply: nothing of an unseen player survives
    obs[:, layout["others"]] = slots.reshape(n_left, -1)
    return obs


def encode_state(
    raw: Mapping[str, Any], headings: np.ndarray, episode_limit: int | None = None
) -> np.ndarray:
    """The full-information global state (float32, :func:`state_layout`)."""
    left = np.asarray(raw["left_team"], dtype=np.float32)
    right = np.asarray(raw["right_team"], dtype=np.float32)
    n_left, n_right = len(left), len(right)
    layout = state_layout(n_left, n_right)
    state = np.zeros(layout["time_left"].stop, dtype=np.float32)
    left_block = np.concatenate(
        [left, np.asarray(raw["left_team_direction"])[:, :2], np.asarray(headings)], axis=1
    )
    state[layout["left"]] = left_block.reshape(-1)
    right_block = np.concatenate([right, np.asarray(raw["right_team_direction"])[:, :2]], axis=1)
    state[layout["right"]] = right_block.reshape(-1)
    state[layout["ball_pos"]] = raw["ball"]
    state[layout["ball_dir"]] = raw["ball_direction"]
    owned_team, owned_player = int(raw["ball_owned_team"]), int(raw["ball_owned_player"])
    state[layout["ball_owner_team"]] = _owner_team_onehot(owned_team)
    if owned_team in (0, 1):
        index = owned_player + (n_left if owned_team == 1 else 0)
        if 0 <= owned_player < (n_left if owned_team == 0 else n_right):
            state[layout["ball_owner_player"].start + index] = 1.0
    state[layout["score"]] = raw["score"]
    mode = int(raw["game_mode"])
    if 0 <= mode < N_GAME_MODES:
        state[layout["game_mode"].start + mode] = 1.0
    if episode_limit:
        state[layout["time_left"]] = float(raw["steps_left"]) / float(episode_limit)
    return state
