"""The third-party adapter of examples/bdps-example-adapter, as its user installs and runs it:
found through its ``bdps_agents.adapters`` entry point, its presets through ``--scenario``,
trained, evaluated and rendered by ``bdps``.

"Installed" here means what pip leaves behind: a ``*.dist-info`` with the ``entry_points.txt``
that its pyproject declares, and the package importable. The test writes both from the pyproject
(pip would need the network or a build backend in the test env), so the entry-point snippet that
docs/scripting.md shows is the one tested.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import numpy as np
import pytest

from bdps_agents.adapters.base import check_adapter_conventions

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "bdps-example-adapter"
SRC = EXAMPLE / "src"

TINY = [
    "training.test_interval=300",
    "training.test_episodes=2",
    "training.steps_per_update=10",
    "replay.warmup_episodes=2",
    "replay.batch_episodes=2",
    "replay.capacity_episodes=20",
    "env.num_train_envs=1",
    "env.num_test_envs=1",
    "network.hidden_dim=16",
]


def install_example(site: Path) -> dict[str, str]:
    """The example's dist-info (metadata and entry points from its pyproject) in ``site``; the
    environment of a process that sees it installed."""
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    name, version = project["name"], project["version"]
    dist = site / f"{name.replace('-', '_')}-{version}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = []
    for group, entries in project["entry-points"].items():
        lines += [f"[{group}]", *(f"{key} = {value}" for key, value in entries.items()), ""]
    (dist / "entry_points.txt").write_text("\n".join(lines))
    path = os.pathsep.join(filter(None, [str(site), str(SRC), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


def run_bdps(env: dict[str, str], *commands: list[str]) -> subprocess.CompletedProcess[str]:
    """``bdps`` commands, one after the other, in one fresh interpreter (imports paid once);
    stops at the first that fails and exits with its code."""
    script = textwrap.dedent(
        f"""
        import sys
        from bdps_agents.cli import main
        for argv in {[list(c) for c in commands]!r}:
            print("$ bdps", *argv, flush=True)
            code = main(argv)
            if code:
                sys.exit(code)
        """
    )
    return subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=1200
    )


def test_example_follows_the_adapter_conventions(monkeypatch):
    from pettingzoo.test import parallel_api_test

    monkeypatch.syspath_prepend(str(SRC))
    from bdps_example_adapter.env import CorridorEnv

    check_adapter_conventions(CorridorEnv(n_agents=3, length=5))
    parallel_api_test(CorridorEnv(), num_cycles=50)


def test_installed_example_trains_evaluates_and_renders_from_its_preset(tmp_path):
    env = install_example(tmp_path / "site")
    logdir, gif = tmp_path / "run", tmp_path / "corridor.gif"
    train = ["train", "--scenario", "corridor/2-agents", "--algo", "qmix", "--steps", "300"]
    train += [arg for item in TINY for arg in ("--set", item)]
    out = run_bdps(
        env,
        ["scenarios"],
        ["options", "qmix"],
        [*train, "--seed", "0", "--no-progress", "--logdir", str(logdir)],
        ["eval", "--checkpoint", str(logdir / "checkpoint.pt"), "--episodes", "2"],
        ["render", "--checkpoint", str(logdir / "checkpoint.pt"), "--out", str(gif)],
    )
    assert out.returncode == 0, out.stdout + out.stderr
    listed = out.stdout.split("$ bdps options")[0]
    assert "corridor/2-agents" in listed and "corridor/3-agents" in listed
    assert "on corridor/2-agents, 300 env steps" in out.stdout
    assert '"return_mean"' in out.stdout and "goal_fraction" in out.stdout
    assert (logdir / "checkpoint.pt").is_file() and gif.stat().st_size > 0


def test_unknown_preset_of_the_family_lists_the_installed_ones(tmp_path):
    env = install_example(tmp_path / "site")
    out = run_bdps(env, ["train", "--scenario", "corridor/9-agents", "--steps", "10"])
    assert out.returncode == 2
    assert "unknown scenario 'corridor/9-agents'" in out.stderr
    assert "corridor/2-agents" in out.stderr
    assert "Traceback" not in out.stderr


def test_render_of_an_adapter_without_frame_drawer_says_how_to_add_one(
    monkeypatch, tmp_path, capsys
):
    """The user's step: a learner trained in a script on their own adapter, saved, then
    ``bdps render`` on it: one error line naming the missing frame_drawer and its format."""
    from bdps_agents.adapters import _registry, register_adapter
    from bdps_agents.cli import main
    from bdps_agents.joint_env import make_joint_env
    from bdps_agents.pipeline import build_learner

    monkeypatch.syspath_prepend(str(SRC))
    from bdps_example_adapter.env import CorridorEnv

    class Undrawn(CorridorEnv):
        frame_drawer = None

    register_adapter("undrawn-corridor", Undrawn)
    try:
        env = make_joint_env("undrawn-corridor", reward_aggregation="mean")
        checkpoint = build_learner(env, "qmix").save(tmp_path / "checkpoint.pt")
        code = main(["render", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "x.gif")])
    finally:
        _registry.unregister("undrawn-corridor")
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: cannot render Undrawn: the adapter names no frame_drawer")
    assert 'frame_drawer = "your_package.render:DRAWER"' in err and err.count("\n") == 1
    assert not (tmp_path / "x.gif").exists()


def test_corridor_masks_the_walls(monkeypatch):
    monkeypatch.syspath_prepend(str(SRC))
    from bdps_example_adapter.env import CorridorEnv

    env = CorridorEnv(n_agents=1, length=3)
    _, infos = env.reset(seed=0)
    assert infos["agent_0"]["action_mask"].tolist() == [1, 0, 1]  # no left move at the wall
    _, _, _, _, infos = env.step({"agent_0": 2})
    _, rewards, terms, _, infos = env.step({"agent_0": 2})
    assert rewards == {"agent_0": 1.0} and terms == {"agent_0": True}
    assert np.array_equal(infos["agent_0"]["action_mask"], [1, 1, 0])


def test_example_kwargs_are_checked_when_the_config_is_validated(monkeypatch):
    from bdps_agents.adapters import _registry, register_adapter
    from bdps_agents.config import ConfigError, build_config

    monkeypatch.syspath_prepend(str(SRC))
    from bdps_example_adapter.env import CorridorEnv

    register_adapter("corridor-kwargs", CorridorEnv)
    try:
        with pytest.raises(ConfigError, match="length must be an integer >= 2, got 1"):
            build_config({"env": {"adapter": "corridor-kwargs", "kwargs": {"length": 1}}})
    finally:
        _registry.unregister("corridor-kwargs")
