"""The SMAX frame drawer of ``bdps render`` (:data:`DRAWER`, the ``frame_drawer`` of
:class:`~bdps_agents.adapters.smax.SMAXStarCraft2Env`, which the ``smax`` adapter passes on)."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.patches import Circle

from bdps_agents.adapters.base import FrameDrawer
from bdps_agents.adapters.drawing import AGENT_COLORS, OPPONENT_COLOR, adapter_of, agent_label

__all__ = ["DRAWER", "draw_smax_frame"]


def draw_smax_frame(
    ax: Any,
    env: Any,
    roles: np.ndarray | None = None,
    groups: np.ndarray | None = None,
) -> dict[str, list[Any]]:
    """Draw SMAX's living units on the map: allies (our agents, labelled) in colour, enemies in
    red; radius = unit size, opacity = health fraction. Returns ``{"allies", "enemies"}``."""
    sc2 = adapter_of(env).env
    smax, state = sc2.smax_env, sc2.smax_state
    artists: dict[str, list[Any]] = {"allies": [], "enemies": []}
    ax.set_xlim(0, smax.map_width)
    ax.set_ylim(0, smax.map_height)  # y grows northwards, as in SC2
    ax.set_aspect("equal")
    ax.set_facecolor("#f4f1e8")
    ax.set_xticks([])  # the fixed margins leave no room for tick labels
    ax.set_yticks([])
    if state is None:
        return artists
    units = state.state
    pos = np.asarray(units.unit_positions, dtype=float)
    alive = np.asarray(units.unit_alive, dtype=bool)
    types = np.asarray(units.unit_types, dtype=int)
    health = np.asarray(units.unit_health, dtype=float)
    max_health = np.asarray(smax.unit_type_health, dtype=float)[types]
    radius = np.asarray(smax.unit_type_radiuses, dtype=float)[types]
    for u in np.flatnonzero(alive):
        ally = u < sc2.n_agents
        color = AGENT_COLORS[u % len(AGENT_COLORS)] if ally else OPPONENT_COLOR
        alpha = 0.3 + 0.7 * float(np.clip(health[u] / max_health[u], 0.0, 1.0))
        dot = Circle(pos[u], radius[u], facecolor=color, edgecolor="k", alpha=alpha)
        artists["allies" if ally else "enemies"].append(ax.add_patch(dot))
        if ally:
            label = agent_label(int(u), roles, groups)
            ax.text(pos[u, 0], pos[u, 1] + radius[u] + 0.2, label, ha="center", fontsize=6)
    return artists


DRAWER = FrameDrawer("smax", draw_smax_frame, lambda env: (6.0, 6.4))
