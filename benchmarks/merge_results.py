"""Merge the results of experiments run in several results directories (e.g. to use both
cores, one ``bdps experiment --local`` per core) into one directory for ``bdps plot`` and the
docs: ``results.csv`` (rows whose metric starts with one of ``--keep``) and, where present,
``selector_value.csv`` (``bdps selector-value``).

    python benchmarks/merge_results.py docs/results/selector-value results/a results/b ...
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

KEEP = (
    "test/", "final/", "update/roles_per_env", "update/groups_per_env", "update/role_switch",
    "update/group_switch", "update/role_recon_ratio", "update/delta_h", "update/loss",
)  # fmt: skip


def merge(out: Path, sources: list[Path], name: str, keep: tuple[str, ...] | None) -> int:
    """Concatenate ``name`` of each source into ``out/name`` (one header); returns the rows."""
    rows, header = 0, None
    tmp = out / f"{name}.tmp"
    with tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        for source in sources:
            path = source / name
            if not path.is_file():
                continue
            with path.open(newline="") as g:
                reader = csv.reader(g)
                head = next(reader)
                if header is None:
                    header = head
                    writer.writerow(header)
                elif head != header:
                    raise SystemExit(f"{path}: header {head} differs from {header}")
                column = header.index("metric") if keep is not None else -1
                for row in reader:
                    if keep is None or row[column].startswith(keep):
                        writer.writerow(row)
                        rows += 1
    tmp.replace(out / name)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("sources", type=Path, nargs="+")
    parser.add_argument("--keep", default=",".join(KEEP), help="metric prefixes to keep")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    keep = tuple(args.keep.split(","))
    print("results.csv rows:", merge(args.out, args.sources, "results.csv", keep))
    print("selector_value.csv rows:", merge(args.out, args.sources, "selector_value.csv", None))


if __name__ == "__main__":
    main()
