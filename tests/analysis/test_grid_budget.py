"""``bdps reproduce`` / ``--list``: the shipped experiments with their runs, env steps and a
rough duration from the measured rates."""

from __future__ import annotations

import pytest

from bdps_agents.cli import main
from bdps_agents.grid import expand, experiment_names, load_grid
from bdps_agents.run_rates import (
    QMIX_STEPS_PER_S,
    RunCost,
    grid_cost,
    steps_per_second,
    steps_text,
)


@pytest.mark.parametrize("argv", [["reproduce"], ["reproduce", "--list"]])
def test_reproduce_without_a_name_lists_every_shipped_experiment(argv, capsys) -> None:
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split() for line in lines[1 : len(experiment_names()) + 1]}
    assert sorted(rows) == experiment_names()
    for name, row in rows.items():
        specs = expand(load_grid(name))
        total = sum(spec.config.training.total_steps for spec in specs)
        assert row[1] == str(len(specs)) and row[3] == steps_text(total), name
    assert rows["lbf-ablation"][1:4] == ["12", "200k", "2.4M"]
    assert rows["paper-fig3-smax"][2] == "2M-5M"
    # a scenario nobody measured is named, and the duration becomes a lower bound
    fig3 = " ".join(rows["paper-fig3-smax"])
    assert "≥" in fig3 and "smax/3s_vs_5z" in fig3 and "smax/5m_vs_6m" not in fig3
    assert "bdps_agents/run_rates.py" in "\n".join(lines)


def test_duration_sums_steps_over_rates_and_splits_over_parallel_runs() -> None:
    rate = QMIX_STEPS_PER_S["lbf/15x15-4p-5f"]
    cost = grid_cost([RunCost("lbf/15x15-4p-5f", "qmix", int(rate * 3600))] * 2)
    assert cost.runs == 2 and cost.unknown == ()
    assert cost.duration(1) == "≈ 2.0 h of one CPU core"
    assert cost.duration(4) == "≈ 2.0 h of one CPU core (≈ 1.0 h as 2 parallel runs)"


def test_unmeasured_pairs_use_the_cost_factor_and_unknown_scenarios_no_guess() -> None:
    qmix = steps_per_second("smax/5m_vs_6m", "qmix")
    assert qmix is not None and steps_per_second("smax/5m_vs_6m", "rode") == qmix / 2.0
    assert steps_per_second("smax/6h_vs_8z", "qmix") is None
    cost = grid_cost([RunCost("smax/6h_vs_8z", "qmix", 1000)])
    assert cost.duration(1) == "unknown (no measured rate for smax/6h_vs_8z)"
