"""The GRF frame drawer of ``bdps render`` (:data:`DRAWER`, the adapter's ``frame_drawer``): a
top-down pitch with both teams, the ball and each agent's view cone."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.patches import Circle, Rectangle, Wedge

from bdps_agents.adapters.base import FrameDrawer
from bdps_agents.adapters.drawing import AGENT_COLORS, OPPONENT_COLOR, adapter_of, agent_label

__all__ = ["DRAWER", "draw_grf_frame"]

PITCH_X, PITCH_Y = 1.0, 0.42  # gfootball's pitch: x in [-1, 1], y in [-0.42, 0.42]
GOAL_Y = 0.044  # half the goal mouth in gfootball's units
PLAYER_RADIUS = 0.02


def _draw_pitch(ax: Any) -> None:
    """Pitch, halfway line, centre circle, penalty areas and goals (approximate markings)."""
    grass = Rectangle((-PITCH_X - 0.1, -PITCH_Y - 0.05), 2 * PITCH_X + 0.2, 2 * PITCH_Y + 0.1)
    ax.add_patch(grass).set(facecolor="#3f8f3f", edgecolor="none")
    # the markings: white lines, no fill
    ax.add_patch(
        Rectangle(
            (-PITCH_X, -PITCH_Y), 2 * PITCH_X, 2 * PITCH_Y, fill=False, edgecolor="w", linewidth=1.2
        )
    )
    ax.plot([0, 0], [-PITCH_Y, PITCH_Y], color="w", linewidth=1.2)
    ax.add_patch(Circle((0, 0), 0.09, fill=False, edgecolor="w", linewidth=1.2))
    for box_x, goal_x in ((-PITCH_X, -PITCH_X - 0.04), (PITCH_X - 0.3, PITCH_X)):
        penalty_area = Rectangle(
            (box_x, -0.24), 0.3, 0.48, fill=False, edgecolor="w", linewidth=1.2
        )
        ax.add_patch(penalty_area)
        goal = Rectangle(
            (goal_x, -GOAL_Y), 0.04, 2 * GOAL_Y, fill=False, edgecolor="w", linewidth=1.2
        )
        ax.add_patch(goal)
    ax.set_xlim(-PITCH_X - 0.1, PITCH_X + 0.1)  # room for the keepers' labels
    ax.set_ylim(PITCH_Y + 0.05, -PITCH_Y - 0.05)  # gfootball's y grows downwards on screen
    ax.set_aspect("equal")
    ax.set_axis_off()


def _draw_view_cones(ax: Any, adapter: Any, left: np.ndarray) -> None:
    """Shade each agent's view (``view_distance``, ``view_cone_deg`` around its heading)."""
    view = adapter.view
    if not math.isfinite(view.view_distance):
        return
    half = view.view_cone_deg / 2.0
    for i, ((x, y), (hx, hy)) in enumerate(zip(left, adapter.headings, strict=True)):
        angle = math.degrees(math.atan2(hy, hx))
        color = AGENT_COLORS[i % len(AGENT_COLORS)]
        cone = Wedge((x, y), view.view_distance, angle - half, angle + half, alpha=0.15)
        cone.set(facecolor=color, edgecolor=color, linewidth=0.6)
        ax.add_patch(cone)


def draw_grf_frame(
    ax: Any,
    env: Any,
    roles: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    view_cones: bool = True,
) -> dict[str, Any]:
    """Draw gfootball's state top-down: our (left) agents labelled ``agent_i``, the opponents,
    the ball and (optionally) each agent's view cone. Returns the artists
    (``{"left": [...], "right": [...], "ball": patch}``)."""
    adapter = adapter_of(env)
    raw = adapter.raw_observation
    left = np.asarray(raw["left_team"], dtype=float)[:, :2]
    right = np.asarray(raw["right_team"], dtype=float)[:, :2]
    _draw_pitch(ax)
    if view_cones:
        _draw_view_cones(ax, adapter, left)
    artists: dict[str, Any] = {"left": [], "right": []}
    for i, (x, y) in enumerate(left):
        color = AGENT_COLORS[i % len(AGENT_COLORS)]
        dot = Circle((x, y), PLAYER_RADIUS, facecolor=color, edgecolor="w", zorder=3)
        artists["left"].append(ax.add_patch(dot))
        ax.text(x, y - 0.035, agent_label(i, roles, groups), ha="center", fontsize=6, color="w")
    for x, y in right:
        dot = Circle((x, y), PLAYER_RADIUS, facecolor=OPPONENT_COLOR, edgecolor="k", zorder=3)
        artists["right"].append(ax.add_patch(dot))
    bx, by = np.asarray(raw["ball"], dtype=float)[:2]
    ball = Circle((bx, by), 0.012, facecolor="w", edgecolor="k", zorder=4)
    artists["ball"] = ax.add_patch(ball)
    return artists


DRAWER = FrameDrawer("grf", draw_grf_frame, lambda env: (8.0, 4.0))
