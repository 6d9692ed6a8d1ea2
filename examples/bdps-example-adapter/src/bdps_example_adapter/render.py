"""The corridor's frame drawer for ``bdps render``: the cells, and each agent as a coloured dot
labelled with its name (and BDPS's role and group, when the policy has them)."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.patches import Circle, Rectangle

from bdps_agents.adapters.base import FrameDrawer
from bdps_agents.adapters.drawing import AGENT_COLORS, adapter_of, agent_label


def draw_corridor(
    ax: Any, env: Any, roles: np.ndarray | None = None, groups: np.ndarray | None = None
) -> dict[str, list[Any]]:
    """Draw the current state of ``env`` (the adapter or a JointEnv around it) on ``ax``."""
    corridor = adapter_of(env)
    n = len(corridor.possible_agents)
    ax.set_xlim(-0.5, corridor.length - 0.5)
    ax.set_ylim(-0.5, n - 0.5)
    ax.set_aspect("equal")
    ax.set_axis_off()
    cells = [
        ax.add_patch(
            Rectangle(
                (c - 0.5, -0.5), 1, n, fill=c == corridor.length - 1, alpha=0.2, edgecolor="0.5"
            )
        )
        for c in range(corridor.length)
    ]
    agents = []
    for i, position in enumerate(corridor.positions):
        color = AGENT_COLORS[i % len(AGENT_COLORS)]
        agents.append(ax.add_patch(Circle((position, i), 0.3, facecolor=color)))
        ax.text(position, i + 0.4, agent_label(i, roles, groups), ha="center", fontsize=6)
    return {"cells": cells, "agents": agents}


def figure_size(env: Any) -> tuple[float, float]:
    corridor = adapter_of(env)
    return max(3.0, 0.6 * corridor.length + 1.0), max(2.0, 0.6 * len(corridor.positions) + 1.2)


DRAWER = FrameDrawer("corridor", draw_corridor, figure_size)
