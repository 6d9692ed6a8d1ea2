"""What the adapters' frame drawers (``adapters/<name>/render.py``) share: agent colours, the
adapter behind a joint env, agent labels with BDPS's role and group."""

from __future__ import annotations

from typing import Any

import numpy as np

from bdps_agents.joint_env import JointEnv

# matplotlib's qualitative palette, one colour per agent: its red is the opponents', its grey
# is dropped and its green comes last (it vanishes on the GRF pitch)
AGENT_COLORS = ["C0", "C1", "C4", "C9", "C6", "C5", "C8", "C2"]
OPPONENT_COLOR = "C3"


def adapter_of(env: Any) -> Any:
    """The PettingZoo adapter behind a :class:`JointEnv` (or ``env`` itself)."""
    return env.env if isinstance(env, JointEnv) else env


def agent_label(i: int, roles: np.ndarray | None, groups: np.ndarray | None) -> str:
    """``"agent_i"`` plus the BDPS role (r) and group (g) when known."""
    label = f"agent_{i}"
    if roles is not None:
        label += f" r{int(roles[i])}"
    if groups is not None:
        label += f" g{int(groups[i])}"
    return label
