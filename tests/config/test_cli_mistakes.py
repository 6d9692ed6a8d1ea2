"""Issue 33: a user's mistake in a ``bdps train`` setting, an environment variable or a path
ends in one ``error:`` line (exit code 2) naming the fix, before anything is trained."""

from __future__ import annotations

import re

import pytest

from bdps_agents.cli import main as cli_main
from tests.cli_errors import one_error_line

TRAIN = ["train", "--scenario", "lbf/8x8-2p-2f", "--steps", "2000", "--no-progress"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--seed", str(2**32)], "--seed must be an integer from 0 to 4294967295"),
        (["--set", f"training.seed={2**32}"], "training.seed: .*less than or equal to 4294967295"),
        (
            ["--algo", "rode", "--set", "rode.noop_action=99"],
            r"rode.noop_action names actions \[99\], .* actions are 0..5",
        ),
        (
            ["--algo", "rode", "--set", "rode.move_actions=[99]"],
            r"rode.move_actions names actions \[99\]",
        ),
        (
            ["--algo", "rode", "--set", "rode.n_roles=7"],
            r"rode.n_roles \(7\) exceeds the environment's 6 actions",
        ),
    ],
)
def test_a_setting_out_of_range_gets_one_line(capsys, tmp_path, extra, message):
    line = one_error_line(capsys, cli_main([*TRAIN, "--logdir", str(tmp_path / "run"), *extra]))
    assert re.search(message, line), line


def test_a_grid_seed_out_of_range_is_refused_when_the_file_is_read(capsys, tmp_path):
    grid = tmp_path / "g.yaml"
    grid.write_text(
        "scenarios: [lbf/8x8-2p-2f]\nmethods: {q: {algorithm.name: qmix}}\nseeds: [4294967296]\n"
    )
    argv = ["experiment", str(grid), "--local", "--results-dir", str(tmp_path / "r")]
    line = one_error_line(capsys, cli_main(argv))
    assert "seeds.0: Input should be less than or equal to 4294967295" in line
    assert not (tmp_path / "r").exists()


def test_a_wrong_switch_in_the_environment_gets_one_line(capsys, monkeypatch):
    from bdps_agents import settings

    monkeypatch.setenv("BDPS_FAST_PATHS", "banana")
    monkeypatch.setattr(
        settings, "_fast_paths", None
    )  # as in a fresh process: the variable decides
    line = one_error_line(capsys, cli_main(["scenarios"]))
    assert "environment variable BDPS_FAST_PATHS='banana' is not one of" in line
    assert "unset it" in line


@pytest.mark.parametrize(("value", "enabled"), [("0", False), (" Off ", False), ("yes", True)])
def test_the_fast_path_switch_reads_yes_and_no(monkeypatch, value, enabled):
    from bdps_agents import settings

    monkeypatch.setenv("BDPS_FAST_PATHS", value)
    monkeypatch.setattr(settings, "_fast_paths", None)
    assert settings.fast_paths_enabled() is enabled


@pytest.mark.parametrize("variable", ["BDPS_NATIVE_KERNELS", "BDPS_CPU_MATMUL"])
def test_a_removed_switch_is_named_not_silently_ignored(capsys, monkeypatch, variable):
    """Variables of the removed CPU fast paths do nothing now: one warning says so."""
    monkeypatch.setenv(variable, "0")
    with pytest.warns(UserWarning, match=f"{variable} is set but has no effect: .*unset it"):
        assert cli_main(["scenarios"]) == 0


def test_the_section_of_an_algorithm_not_chosen_is_refused(capsys, tmp_path):
    """It was stored unchecked (5 roles for 2 agents) and ignored without a word."""
    argv = [*TRAIN, "--algo", "qmix", "--set", "bdps.n_roles=5", "--logdir", str(tmp_path / "r")]
    line = one_error_line(capsys, cli_main(argv))
    assert "section 'bdps' holds settings of algorithm bdps, but the chosen algorithm is " in line
    assert "'qmix': drop the bdps.* settings, or choose it (--algo bdps)" in line
    assert not (tmp_path / "r").exists()


# the tiny run (conftest's tiny_run) as --set items: a few seconds of training
TINY = [
    "env.num_train_envs=2",
    "env.num_test_envs=2",
    "replay.capacity_episodes=40",
    "replay.batch_episodes=4",
    "replay.warmup_episodes=2",
    "network.hidden_dim=16",
    "training.test_interval=100",
    "training.test_episodes=2",
    "training.steps_per_update=20",
]


def test_diverging_settings_end_in_their_one_line_and_no_progress_keeps_the_plan(capsys, tmp_path):
    items = [*TINY, "algorithm.lr=1e30", "algorithm.max_grad_norm=1e30"]
    argv = [*TRAIN, "--logdir", str(tmp_path / "run"), *(a for i in items for a in ("--set", i))]
    code = cli_main(argv)
    out = capsys.readouterr()
    # --no-progress hides the bar, not what the run will do
    assert "budget: 2,000 env steps of training" in out.out
    assert "warm-up: 2 episodes of random available actions" in out.out
    lines = out.err.strip().splitlines()
    assert code == 2 and len(lines) == 1, out.err
    assert re.match(r"error: training stopped at env step \d+: non-finite", lines[0]), lines[0]
    assert lines[0].endswith(
        "Try a lower algorithm.lr or algorithm.max_grad_norm, or check the scale of the rewards."
    )


def test_a_network_larger_than_the_machine_is_refused_before_allocating(capsys, tmp_path):
    argv = [*TRAIN, "--logdir", str(tmp_path / "run"), "--set", "network.hidden_dim=10000000"]
    line = one_error_line(capsys, cli_main(argv))
    assert re.search(r"network.hidden_dim=10000000 needs at least [\d.]+ GiB for the agent", line)
    assert "use a smaller network.hidden_dim" in line
    assert not (tmp_path / "run").exists()


def test_a_logdir_that_is_not_utf8_is_refused_before_anything_is_written(capsys, tmp_path):
    logdir = str(tmp_path) + "/bad\udcffname"  # what Python makes of the bytes b"bad\xffname"
    line = one_error_line(capsys, cli_main([*TRAIN, "--logdir", logdir]))
    assert (
        "its name is not valid UTF-8 (TensorBoard cannot write there): pick another --logdir"
        in line
    )
    assert list(tmp_path.iterdir()) == []
