"""Animated GIFs of one episode played by a trained checkpoint.

``render_episode`` rebuilds the checkpoint's algorithm on one env, plays an episode through
Tianshou's own ``Collector`` (so the policy sees exactly what it sees in training and testing:
same observation batching, recurrent state reset, BDPS role/group bookkeeping) and draws one
frame after the reset and after every step from the simulator's own state:

* LBF: the grid, players (circles with their level), food (squares with its level);
* GRF: a top-down pitch with both teams, the ball and each agent's view cone;
* SMAX: the living units of both sides on the map.

BDPS runs also label every agent with the role (and group) it acted under at that step (none on
the reset frame: roles are chosen at the first step). Frames are drawn with
matplotlib on a bare ``Figure`` and written by ``matplotlib.animation.PillowWriter``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.animation import PillowWriter
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Circle, Rectangle, Wedge

from bdps_agents.joint_env import JointEnv

__all__ = [
    "check_output_path",
    "draw_frame",
    "draw_grf_frame",
    "draw_lbf_frame",
    "draw_smax_frame",
    "frame_kind",
    "render_episode",
]

# matplotlib's qualitative palette, one colour per agent: its red is the opponents', its grey
# is dropped and its green comes last (it vanishes on the GRF pitch)
AGENT_COLORS = ["C0", "C1", "C4", "C9", "C6", "C5", "C8", "C2"]
OPPONENT_COLOR = "C3"


def _adapter(env: Any) -> Any:
    """The PettingZoo adapter behind a :class:`JointEnv` (or ``env`` itself)."""
    return env.env if isinstance(env, JointEnv) else env


def frame_kind(env: Any) -> str:
    """``"lbf"``, ``"grf"`` or ``"smax"``: which drawing fits ``env`` (a JointEnv or adapter).

    Duck-typed on the adapters' accessors, so that no simulator is imported here; looked up on
    the class, because e.g. GRF's ``raw_observation`` raises before the first reset.
    """
    adapter = _adapter(env)
    if hasattr(type(adapter), "foraging_env"):
        return "lbf"
    if hasattr(type(adapter), "raw_observation") and hasattr(type(adapter), "headings"):
        return "grf"
    if hasattr(type(getattr(adapter, "env", None)), "smax_state"):
        return "smax"
    raise NotImplementedError(
        f"render supports lbf and grf (and smax), not {type(adapter).__name__}"
    )


def _agent_label(i: int, roles: np.ndarray | None, groups: np.ndarray | None) -> str:
    """``"agent_i"`` plus the BDPS role (r) and group (g) when known."""
    label = f"agent_{i}"
    if roles is not None:
        label += f" r{int(roles[i])}"
    if groups is not None:
        label += f" g{int(groups[i])}"
    return label


# ----------------------------------------------------------------------------- LBF
def draw_lbf_frame(
    ax: Any,
    env: Any,
    roles: np.ndarray | None = None,
    groups: np.ndarray | None = None,
) -> dict[str, list[Any]]:
    """Draw the LBF field: grid, players as coloured circles with their level, food as squares
    with its level. Rows go down, as in lbforaging's own renderer. Returns the artists
    (``{"players": [...], "food": [...]}``)."""
    adapter = _adapter(env)
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
        label = _agent_label(i, roles, groups).replace("agent_", "a")
        ax.text(c, r + 0.48, label, ha="center", va="top", fontsize=6)
    return {"players": players, "food": food}


# ----------------------------------------------------------------------------- GRF
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
    adapter = _adapter(env)
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
        ax.text(x, y - 0.035, _agent_label(i, roles, groups), ha="center", fontsize=6, color="w")
    for x, y in right:
        dot = Circle((x, y), PLAYER_RADIUS, facecolor=OPPONENT_COLOR, edgecolor="k", zorder=3)
        artists["right"].append(ax.add_patch(dot))
    bx, by = np.asarray(raw["ball"], dtype=float)[:2]
    ball = Circle((bx, by), 0.012, facecolor="w", edgecolor="k", zorder=4)
    artists["ball"] = ax.add_patch(ball)
    return artists


# ----------------------------------------------------------------------------- SMAX
def draw_smax_frame(
    ax: Any,
    env: Any,
    roles: np.ndarray | None = None,
    groups: np.ndarray | None = None,
) -> dict[str, list[Any]]:
    """Draw SMAX's living units on the map: allies (our agents, labelled) in colour, enemies in
    red; radius = unit size, opacity = health fraction. Returns ``{"allies", "enemies"}``."""
    sc2 = _adapter(env).env
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
            label = _agent_label(int(u), roles, groups)
            ax.text(pos[u, 0], pos[u, 1] + radius[u] + 0.2, label, ha="center", fontsize=6)
    return artists


# ----------------------------------------------------------------------------- dispatch
_DRAWERS = {"lbf": draw_lbf_frame, "grf": draw_grf_frame, "smax": draw_smax_frame}
_FIGSIZES = {"grf": (8.0, 4.0), "smax": (6.0, 6.4)}


def draw_frame(
    ax: Any,
    env: Any,
    title: str = "",
    roles: np.ndarray | None = None,
    groups: np.ndarray | None = None,
) -> dict[str, Any]:
    """Clear ``ax`` and draw the current state of ``env`` (LBF, GRF or SMAX) with a title."""
    ax.clear()
    artists = _DRAWERS[frame_kind(env)](ax, env, roles=roles, groups=groups)
    ax.set_title(title, fontsize=9)
    return artists


def _figure_for(env: Any) -> Figure:
    kind = frame_kind(env)
    if kind == "lbf":
        rows, cols = _adapter(env).field_size
        size = (max(3.0, 0.55 * cols + 1.0), max(3.0, 0.55 * rows + 1.2))
    else:
        size = _FIGSIZES[kind]
    # fixed margins, not a layout engine: the layout would be recomputed for every frame
    fig = Figure(figsize=size)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.86)
    FigureCanvasAgg(fig)
    return fig


class _EpisodeRecorder:
    """A Collector ``on_step_hook`` that draws a frame after every step of the first episode.

    The hook runs after ``env.step`` and before the Collector resets finished envs, so the env
    still shows the step's result; steps after the first episode ends (the Collector resets and
    may go on) are ignored.
    """

    def __init__(self, env: JointEnv, writer: PillowWriter, ax: Any, label: str, limit: int):
        self.env, self.writer, self.ax, self.label, self.limit = env, writer, ax, label, limit
        self.steps, self.team_return, self.done = 0, 0.0, False

    def frame(self, roles: np.ndarray | None = None, groups: np.ndarray | None = None) -> None:
        title = f"{self.label}\nstep {self.steps}   team return {self.team_return:.3f}"
        draw_frame(self.ax, self.env, title, roles, groups)
        # the step counter in the title keeps frames distinct: Pillow merges identical ones
        self.writer.grab_frame()

    def __call__(self, action_batch: Any, rollout_batch: Any) -> None:
        if self.done:
            return
        self.steps += 1
        self.team_return += float(np.asarray(rollout_batch.rew)[0])
        entry = getattr(action_batch, "policy_entry", None)
        roles = _first_row(entry, "role")
        groups = _first_row(entry, "group")
        self.frame(roles, groups)
        self.done = bool(np.asarray(rollout_batch.done)[0]) or self.steps >= self.limit


def _first_row(entry: Any, key: str) -> np.ndarray | None:
    """``entry[key][0]`` (BDPS's role/group of the single env) or None when not logged."""
    if entry is None or key not in entry.get_keys():
        return None
    return np.asarray(entry[key])[0]


# animated formats that Pillow (matplotlib's PillowWriter) writes, by file extension
ANIMATION_FORMATS = {".gif": "GIF", ".png": "PNG", ".apng": "PNG", ".webp": "WEBP"}


def output_extensions() -> list[str]:
    """The extensions :func:`render_episode` can write: :data:`ANIMATION_FORMATS` that this
    Pillow can save as several frames (WebP needs Pillow built with libwebp)."""
    from PIL import Image

    Image.init()
    return [ext for ext, fmt in ANIMATION_FORMATS.items() if fmt in Image.SAVE_ALL]


def check_output_path(out: str | Path) -> None:
    """Raise ``ValueError`` unless ``out``'s extension is one :func:`render_episode` writes
    (Pillow would refuse it only after the whole episode was played)."""
    extensions = output_extensions()
    if Path(out).suffix.lower() not in extensions:
        raise ValueError(
            f"cannot write an animation to {out}: use a file name ending in "
            f"{', '.join(extensions)} (e.g. episode.gif)"
        )


def render_episode(
    checkpoint: str | Path,
    out: str | Path,
    *,
    seed: int = 0,
    max_steps: int | None = None,
    fps: int = 4,
    greedy: bool = True,
) -> Path:
    """Play one episode with a ``bdps train`` checkpoint and write it as an animated GIF (or
    APNG/WebP, by ``out``'s extension: :func:`output_extensions`).

    One frame after the reset and one after every step (``episode length + 1`` frames, or
    ``max_steps + 1`` when the episode is cut at ``max_steps``). ``greedy=True`` acts with
    ε = 0; ``greedy=False`` with the config's final training ε (``exploration.eps_end``).
    BDPS's role selector samples its latent roles even when greedy; ``seed`` fixes that, the
    episode's start and any ε draws. Returns ``out``.

    Raises ``FileNotFoundError`` / ``ValueError`` (``CheckpointError``) for a missing, foreign
    or mismatched checkpoint, ``ValueError`` for an ``out`` of another extension (before
    playing) and ``NotImplementedError`` for adapters other than lbf, grf and smax.
    """
    import torch
    from tianshou.data import Collector, CollectStats, ReplayBuffer
    from tianshou.env import DummyVectorEnv

    from bdps_agents import training
    from bdps_agents.algorithms import algorithm_spec, build_algorithm

    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    check_output_path(out)  # before the episode is played, not when the file is written
    cfg, data = training.load_checkpoint(checkpoint)
    torch.manual_seed(seed)
    env = training.make_joint(cfg.env)
    venv = DummyVectorEnv([lambda: env])  # in-process: the recorder reads this very env
    try:
        frame_kind(env)  # refuse unsupported adapters before building anything else
        algorithm = build_algorithm(cfg, training.EnvSpec.of(env))
        training.load_algorithm_state(algorithm, data["algorithm"], checkpoint)
        policy = algorithm.policy
        policy.eval()
        policy.set_eps_inference(0.0 if greedy else cfg.exploration.eps_end)
        policy.seed(seed)

        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig = _figure_for(env)
        writer = PillowWriter(fps=fps)
        writer.setup(fig, out, dpi=100)
        limit = max_steps or env.episode_limit or 10_000
        label = f"{cfg.scenario} ({algorithm_spec(cfg.algorithm.name).label(cfg)})"
        recorder = _EpisodeRecorder(env, writer, fig.add_subplot(), label, limit)
        # a plain buffer for the single env: VectorReplayBuffer compiles numba code (seconds)
        buffer = ReplayBuffer(limit + 1)
        collector: Collector[CollectStats] = Collector(policy, venv, buffer, on_step_hook=recorder)
        collector.reset(gym_reset_kwargs={"seed": seed})
        recorder.frame()  # the reset frame
        if max_steps is None:
            collector.collect(n_episode=1)
        else:  # the recorder stops at max_steps or at the episode's end, whichever is first
            collector.collect(n_step=max_steps)
        writer.finish()  # only now is the file written: a failed episode leaves no GIF
    finally:
        venv.close()
    return out
