"""Animated GIFs of one episode played by a trained checkpoint.

``render_episode`` rebuilds the checkpoint's algorithm on one env, plays an episode through
Tianshou's own ``Collector`` (so the policy sees exactly what it sees in training and testing:
same observation batching, recurrent state reset, BDPS role/group bookkeeping) and draws one
frame after the reset and after every step from the simulator's own state, with the drawer
that the adapter names in its ``frame_drawer`` (:class:`~bdps_agents.adapters.base.FrameDrawer`,
in the adapter's package: ``bdps_agents.adapters.{lbf,grf,smax}.render``):

* LBF: the grid, players (circles with their level), food (squares with its level);
* GRF: a top-down pitch with both teams, the ball and each agent's view cone;
* SMAX: the living units of both sides on the map.

BDPS runs also label every agent with the role (and group) it acted under at that step (none on
the reset frame: roles are chosen at the first step). Frames are drawn with
matplotlib on a bare ``Figure`` and written by ``matplotlib.animation.PillowWriter``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.animation import PillowWriter
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bdps_agents.adapters.base import FrameDrawer
from bdps_agents.adapters.drawing import adapter_of
from bdps_agents.config import ConfigError
from bdps_agents.joint_env import JointEnv

__all__ = [
    "NoFrameDrawerError",
    "check_output_path",
    "draw_frame",
    "frame_drawer",
    "frame_kind",
    "render_episode",
]


class NoFrameDrawerError(ConfigError, NotImplementedError):
    """The adapter names no ``frame_drawer``: ``bdps render`` prints it as one ``error:`` line
    (a :class:`~bdps_agents.config.ConfigError`) saying how to add one."""


def frame_drawer(env: Any) -> FrameDrawer:
    """The :class:`~bdps_agents.adapters.base.FrameDrawer` that the adapter behind ``env`` (a
    JointEnv or an adapter) names in its ``frame_drawer`` (``"module:attr"``, imported now).

    Looked up on the adapter's declared ``frame_drawer`` alone: no simulator is inspected."""
    adapter = adapter_of(env)
    target = getattr(adapter, "frame_drawer", None)
    if target is None:
        raise NoFrameDrawerError(
            f"cannot render {type(adapter).__name__}: the adapter names no frame_drawer. Give "
            'its class frame_drawer = "your_package.render:DRAWER", a '
            "bdps_agents.adapters.base.FrameDrawer(kind, draw, figsize) whose draw(ax, env, "
            "roles=None, groups=None) draws the current state on a matplotlib Axes "
            "(docs/scripting.md, CONTRIBUTING.md)"
        )
    module_name, _, attr = str(target).partition(":")
    drawer = getattr(importlib.import_module(module_name), attr)
    if not isinstance(drawer, FrameDrawer):
        raise TypeError(f"frame_drawer {target!r} of {type(adapter).__name__} is no FrameDrawer")
    return drawer


def frame_kind(env: Any) -> str:
    """The kind of drawing that fits ``env`` (a JointEnv or adapter): ``"lbf"``, ``"grf"``,
    ``"smax"``; ``NotImplementedError`` for an adapter without a ``frame_drawer``."""
    return frame_drawer(env).kind


def draw_frame(
    ax: Any,
    env: Any,
    title: str = "",
    roles: np.ndarray | None = None,
    groups: np.ndarray | None = None,
) -> dict[str, Any]:
    """Clear ``ax`` and draw the current state of ``env`` with its adapter's drawer and a title."""
    ax.clear()
    artists = frame_drawer(env).draw(ax, env, roles=roles, groups=groups)
    ax.set_title(title, fontsize=9)
    return artists


def _figure_for(env: Any) -> Figure:
    # fixed margins, not a layout engine: the layout would be recomputed for every frame
    fig = Figure(figsize=frame_drawer(env).figsize(env))
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
    playing) and :class:`NoFrameDrawerError` (a ``NotImplementedError``) for an adapter that
    names no ``frame_drawer``.
    """
    import torch
    from tianshou.data import Collector, CollectStats, ReplayBuffer
    from tianshou.env import DummyVectorEnv

    from bdps_agents import training
    from bdps_agents.algorithms import build_algorithm, run_label

    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    check_output_path(out)  # before the episode is played, not when the file is written
    cfg, data = training.load_checkpoint(checkpoint)
    training.check_env_rebuildable(data, checkpoint)
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
        label = f"{cfg.scenario} ({run_label(cfg)})"
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
