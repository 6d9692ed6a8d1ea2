"""Figures and statistics from a synthetic ``results.csv`` with known values."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from bdps_agents.plotting import plot_results, summary_table
from bdps_agents.results import RESULTS_COLUMNS, curves, load_results, mean_ci, t_cdf, t_quantile

SCENARIOS = ["lbf/15x15-4p-5f", "grf/academy_3_vs_1_with_keeper"]
METHODS = {"bdps": 2e-4, "qmix": 1e-4}  # slope of the test return per env step
SEEDS = [0, 1, 2]
T_975_DF2 = 4.302652729911275  # t_{0.975} with 3 seeds


def _rows():
    """Every value is linear in env_step plus a per-seed offset (0, 1, 2), so that linear
    interpolation is exact and the across-seed mean/CI is known anywhere: mean = slope * step +
    1, sample std = 1. Seeds evaluate 10 env steps apart (different warm-ups)."""
    for scenario in SCENARIOS:
        for method, slope in METHODS.items():
            for seed in SEEDS:
                run_id = f"{scenario.replace('/', '_')}--{method}--seed{seed}"
                short = (scenario, method, seed) == (SCENARIOS[1], "qmix", 1)
                last = 1000 * (8 if short else 10) + 10 * seed
                base = [run_id, scenario, method, seed]
                for k in range(11):
                    step = 1000 * k + 10 * seed
                    if step > last:
                        break
                    yield [*base, step, "test/greedy_return", slope * step + seed]
                    if scenario.startswith("grf"):
                        yield [*base, step, "test/goal_score", 0.1 * seed]
                yield [*base, last, "final/greedy_return", 1.0 + seed]
                if method != "bdps":
                    continue
                for step in range(100, 10_001, 10):  # dense update rows
                    yield [*base, step, "update/delta_h", -1e-4 * step + 0.1 * seed]
                    frac = 0.5 + 0.3 * step / 10_000
                    # both spellings: the trainer's "assignments/" prefix and the short one
                    yield [*base, step, "update/assignments/role_0_frac", frac]
                    yield [*base, step, "update/assignments/role_1_frac", 1 - frac]
                    yield [*base, step, "update/group_0_frac", 0.25]
                    yield [*base, step, "update/group_1_frac", 0.75]
                    yield [*base, step, "update/loss", 1.0]
                    # 1.0 early, 0.4 + 0.1 * seed over the last 10% of the updates
                    late = step >= 9_010
                    yield [
                        *base,
                        step,
                        "update/role_recon_ratio",
                        0.4 + 0.1 * seed if late else 1.0,
                    ]


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    with (root / "results.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(RESULTS_COLUMNS)
        writer.writerows(_rows())
    return root


@pytest.mark.parametrize(
    ("df", "expected"), [(1, 12.706), (2, 4.303), (4, 2.776), (10, 2.228), (30, 2.042)]
)
def test_t_quantiles_match_the_table(df, expected):
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=5e-4)
    assert t_quantile(0.025, df) == pytest.approx(-expected, abs=5e-4)
    assert t_cdf(t_quantile(0.9, df), df) == pytest.approx(0.9, abs=1e-9)


def test_t_quantile_approaches_the_normal_one():
    assert t_quantile(0.975, 1e6) == pytest.approx(1.959964, abs=1e-5)
    assert t_quantile(0.995, 1) == pytest.approx(63.657, abs=1e-3)
    assert t_quantile(0.5, 3) == 0.0


def test_mean_ci_known_values():
    mean, low, high = mean_ci(np.array([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0]]))
    half = T_975_DF2 * 1.0 / math.sqrt(3)
    np.testing.assert_allclose(mean, [2.0, 5.0])
    np.testing.assert_allclose(low, [2.0 - half, 5.0])
    np.testing.assert_allclose(high, [2.0 + half, 5.0])


def test_mean_ci_with_one_seed_is_the_mean():
    mean, low, high = mean_ci(np.array([[0.5, 0.7]]))
    for arr in (mean, low, high):
        np.testing.assert_array_equal(arr, [0.5, 0.7])
    with pytest.raises(ValueError, match="confidence"):
        mean_ci(np.ones((2, 2)), confidence=1.5)


def test_load_results_groups_runs(results_dir):
    results = load_results(results_dir)
    assert results.scenarios == SCENARIOS
    assert results.methods == list(METHODS)
    runs = results.runs(SCENARIOS[0], "bdps", "test/greedy_return")
    assert sorted(runs) == SEEDS
    assert runs[2].steps[:2].tolist() == [20.0, 1020.0]
    assert results.runs(SCENARIOS[0], "qmix", "update/delta_h") == {}


def test_curves_interpolate_onto_the_common_range(results_dir):
    results = load_results(results_dir)
    steps, values = curves(results, "test/greedy_return", SCENARIOS[0], "bdps")
    assert values.shape == (3, len(steps))
    # latest first evaluation (seed 2 at 20) to earliest last one (seed 0 at 10000)
    assert steps[0] == 20.0 and steps[-1] == 10_000.0
    j = 5
    np.testing.assert_allclose(values[:, j], 2e-4 * steps[j] + np.array([0.0, 1.0, 2.0]))
    mean, low, high = mean_ci(values)
    half = T_975_DF2 / math.sqrt(3)
    assert mean[j] == pytest.approx(2e-4 * steps[j] + 1.0)
    assert high[j] - mean[j] == pytest.approx(half)
    assert mean[j] - low[j] == pytest.approx(half)
    # a shorter run (qmix seed 1 stops at 8010) cuts the common range
    steps, _ = curves(results, "test/greedy_return", SCENARIOS[1], "qmix", grid_points=9)
    assert len(steps) == 9 and steps[-1] == 8010.0


def test_dense_update_rows_are_binned(results_dir):
    results = load_results(results_dir)
    steps, values = curves(results, "update/delta_h", SCENARIOS[0], "bdps", bins=100)
    assert 50 <= len(steps) <= 100  # ~1000 rows per run -> about 100 points
    # binning and interpolation preserve a linear signal
    expected = -1e-4 * steps + 0.1 * np.array([0, 1, 2])[:, None]
    np.testing.assert_allclose(values, expected, atol=1e-9)


def test_plot_results_writes_the_figures(results_dir, tmp_path):
    paths = plot_results(results_dir, tmp_path / "plots")
    names = sorted(p.name for p in paths)
    # win_rate / food_collected were never logged: no figure
    assert names == [
        "delta_h.png",
        "goal_score.png",
        "groups.png",
        "returns.png",
        "role_recon_ratio.png",
        "roles.png",
    ]
    from PIL import Image

    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 10_000, path
        with Image.open(path) as image:
            assert min(image.size) > 200
    # the default output folder is RESULTS_DIR/plots
    assert plot_results(results_dir)[0].parent == results_dir / "plots"


def test_summary_table(results_dir):
    table = summary_table(load_results(results_dir))
    lines = table.splitlines()
    assert lines[0].startswith("| scenario | method | seeds | test return |")
    assert "goal" in lines[0] and "win rate" not in lines[0]
    half = T_975_DF2 / math.sqrt(3)  # final returns 1, 2, 3
    row = next(line for line in lines if line.startswith(f"| {SCENARIOS[0]} | bdps |"))
    assert f"| 3 | 2.000 ± {half:.3f} |" in row
    assert len([line for line in lines if line.startswith(("| lbf/", "| grf/"))]) == 4
    # BDPS's diagnostic over the last 10% of training; QMIX has none
    assert lines[0].endswith("| role_recon_ratio (last 10%) |")
    assert row.endswith(f"| 0.500 ± {0.1 * half:.3f} |")
    qmix = next(line for line in lines if line.startswith(f"| {SCENARIOS[0]} | qmix |"))
    assert qmix.endswith("| – |")


def test_max_step_compares_runs_at_a_common_budget(results_dir):
    """Rows after max_step are dropped; the last test before it replaces the final value."""
    results = load_results(results_dir, max_step=5000)
    runs = results.runs(SCENARIOS[0], "qmix", "test/greedy_return")
    assert all(run.steps.max() <= 5000 for run in runs.values())
    assert runs[1].steps.max() == 4010  # seed 1 tests at 10 + 1000 k
    assert results.runs(SCENARIOS[0], "qmix", "final/greedy_return") == {}
    table = summary_table(results)
    row = next(line for line in table.splitlines() if line.startswith(f"| {SCENARIOS[0]} | qmix |"))
    # last tests at 5000, 4010, 4020: 1e-4 * step + seed -> 0.5, 1.401, 2.402
    mean = (0.5 + 1.401 + 2.402) / 3
    assert f"| 3 | {mean:.3f} ±" in row


def test_missing_or_malformed_results_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="results.csv"):
        load_results(tmp_path)
    path = tmp_path / "results.csv"
    path.write_text("run_id,scenario,method,seed,env_step,value\nr,s,m,0,10,1.0\n")
    with pytest.raises(ValueError, match=r"results\.csv.*'metric'"):
        load_results(tmp_path)
    path.write_text(",".join(RESULTS_COLUMNS) + "\nr,s,m,0,10,test/greedy_return,abc\n")
    with pytest.raises(ValueError, match=r"line 2: column 'value'.*'abc'"):
        load_results(tmp_path)
