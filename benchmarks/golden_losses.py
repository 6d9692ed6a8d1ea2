"""Same seed, same learning across a refactoring: record the per-update losses of four short
seeded LBF runs, or compare them with a recording.

    python benchmarks/golden_losses.py record OUT.json
    python benchmarks/golden_losses.py compare benchmarks/golden/losses-e38f8a7.json

The runs are those of tests/algorithms/test_determinism.py (LBF 6x6-2p-1f, 2,100 env steps,
one update per 10 steps, seed 5), for QMIX with full and no sharing and BDPS with one and two
levels. ``losses-679d9c1.json`` was recorded before issue 20's restructure (commit 679d9c1,
where these were ``network.sharing: full | none | individual | bilevel``), ``losses-e38f8a7.json``
after issue 24's fast paths (same values to float rounding, then drifting: benchmarks/README.md).
Exact float equality is expected on the same machine and library versions; another CPU may
differ in the last bits.
"""

from __future__ import annotations

import csv
import json
import sys
import tempfile
from pathlib import Path

import torch

from bdps_agents.config import build_config
from bdps_agents.training import train

# the recording's names -> the algorithm and variant that they were before the restructure
RUNS = {
    "full": {"algorithm": {"name": "qmix"}, "network": {"sharing": "full"}},
    "none": {"algorithm": {"name": "qmix"}, "network": {"sharing": "none"}},
    "individual": {"algorithm": {"name": "bdps"}, "bdps": {"levels": 1}},
    "bilevel": {"algorithm": {"name": "bdps"}, "bdps": {"levels": 2}},
}
METRICS = ("loss", "td_loss", "role_loss", "group_loss", "grad_norm", "delta_h")


def config(name: str):
    data = {
        "env": {
            "adapter": "lbf",
            "kwargs": {"task": "6x6-2p-1f"},
            "num_train_envs": 2,
            "num_test_envs": 2,
        },
        "replay": {"capacity_episodes": 50, "batch_episodes": 4, "warmup_episodes": 4},
        "network": {"hidden_dim": 16},
        "training": {
            "progress": False,
            "test_episodes": 2,
            "total_steps": 2100,
            "steps_per_update": 10,
            "log_interval": 10,
            "test_interval": 700,
            "seed": 5,
        },
    }
    if RUNS[name]["algorithm"]["name"] == "bdps":  # another algorithm's section is refused
        data["bdps"] = {"role_interval": 3, "group_interval_multiple": 2}
    for section, values in RUNS[name].items():
        data[section] = {**data.get(section, {}), **values}
    return build_config(data)


def record() -> dict:
    torch.set_num_threads(1)
    out = {}
    for name in RUNS:
        with tempfile.TemporaryDirectory() as tmp:
            result = train(config(name), Path(tmp) / "run")
            with (result.logdir / "metrics.csv").open(newline="") as f:
                rows = [
                    [int(r["step"]), r["metric"], r["value"]]
                    for r in csv.DictReader(f)
                    if r["scope"] == "update" and r["metric"] in METRICS
                ]
        out[name] = {"losses": rows, "test_history": result.test_history}
        print(f"{name}: {len(rows)} values, test history {result.test_history}", flush=True)
    return out


def compare(golden: dict, now: dict) -> bool:
    same = True
    for name in RUNS:
        want = sorted(tuple(r) for r in golden[name]["losses"] if r[1] in METRICS)
        got = sorted(tuple(r) for r in now[name]["losses"])
        equal = want == got
        tests_equal = [list(t) for t in golden[name]["test_history"]] == [
            list(t) for t in now[name]["test_history"]
        ]
        print(
            f"{name}: {len(got)} values, {'identical' if equal else 'DIFFERENT'}; "
            f"test returns {'identical' if tests_equal else 'DIFFERENT'}"
        )
        if not equal:
            print(f"  {drift(want, got)}")
        same &= equal and tests_equal
    return same


def drift(want: list[tuple], got: list[tuple]) -> str:
    """Where two recordings part: the first update whose values differ, and the largest
    relative difference of the first update's values and of all (float noise compounds)."""
    pairs = {(step, metric): float(value) for step, metric, value in want}
    rel = [
        (step, abs(float(value) - pairs[(step, metric)]) / max(abs(pairs[(step, metric)]), 1e-12))
        for step, metric, value in got
        if (step, metric) in pairs
    ]
    if not rel:
        return "no common (step, metric) values"
    differ = sorted(step for step, r in rel if r > 0)
    first = differ[0] if differ else None
    at_first = max((r for step, r in rel if step == first), default=0.0)
    return (
        f"first different update at env step {first}: max relative difference there "
        f"{at_first:.1e}; over the whole run {max(r for _, r in rel):.1e}"
    )


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("record", "compare"):
        sys.exit(__doc__)
    if sys.argv[1] == "record":
        Path(sys.argv[2]).write_text(json.dumps(record()))
    else:
        sys.exit(0 if compare(json.loads(Path(sys.argv[2]).read_text()), record()) else 1)
