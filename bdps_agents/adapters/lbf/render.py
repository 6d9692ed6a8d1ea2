"""The LBF frame drawer of ``bdps render`` (:data:`DRAWER`, the adapter's ``frame_drawer``)."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.patches import Circle, Rectangle

from bdps_agents.adapters.base import FrameDrawer
from bdps_agents.adapters.drawing import AGENT_COLORS, adapter_of, agent_label

__all__ = ["DRAWER", "draw_lbf_frame"]


def draw_lbf_frame(
    ax: Any,
    env: Any,
    roles: np.ndarray | None = None,
    groups: np.ndarray | None = None,
) -> dict[str, list[Any]]:
    """Draw the LBF field: grid, players as coloured circles with their level, food as squares
    with its level. Rows go down, as in lbforaging's own renderer. Returns the artists
    (``{"players": [...], "food": [...]}``)."""
    adapter = adapter_of(env)
    fenv = adapter.foraging_env
    rows, cols = adapter.field_size
    ax.set_xlim(-0.5, cols - 0.5)
    ax.set_ylim(rows - 0.5, -0.5)  # row 0 at the top
    ax.set_aspect("equal")
    ax.set_axis_off()  # cell lines drawn directly: ticks and grids are slow to lay out
    grid = {"color": "0.75", "linewidth": 0.8, "clip_on": False}  # keep the outer border whole
    ax.vlines(np.arange(-0.5, cols), -0.5, rows - 0.5, **grid)
    ax.hlines(np.arange(-0.5, rows), -0.5, cols - 0.5, **grid)
    food = []
    for r, c in zip(*np.nonzero(fenv.field), strict=True):
        square = Rectangle((c - 0.3, r - 0.3), 0.6, 0.6, facecolor="#c8a165", edgecolor="0.3")
        food.append(ax.add_patch(square))
        ax.text(c, r, str(int(fenv.field[r, c])), ha="center", va="center", fontsize=9)
    players = []
    for i, player in enumerate(fenv.players):
        r, c = player.position
        color = AGENT_COLORS[i % len(AGENT_COLORS)]
        players.append(ax.add_patch(Circle((c, r), 0.36, facecolor=color, edgecolor="0.2")))
        ax.text(c, r, str(int(player.level)), ha="center", va="center", color="w", fontsize=9)
        # "a0", or "a0 r1 g0" with BDPS's role and group: agent_i is too long for a cell
        label = agent_label(i, roles, groups).replace("agent_", "a")
        ax.text(c, r + 0.48, label, ha="center", va="top", fontsize=6)
    return {"players": players, "food": food}


def figure_size(env: Any) -> tuple[float, float]:
    """Room for the field's cells (at least 3 x 3 inches)."""
    rows, cols = adapter_of(env).field_size
    return max(3.0, 0.55 * cols + 1.0), max(3.0, 0.55 * rows + 1.2)


DRAWER = FrameDrawer("lbf", draw_lbf_frame, figure_size)
