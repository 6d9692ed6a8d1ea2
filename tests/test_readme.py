"""The README's "use it in your own Tianshou script" block runs verbatim."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_snippet() -> str:
    text = README.read_text()
    m = re.search(
        r"<!-- readme-snippet:start -->\s*```python\n(.*?)```\s*<!-- readme-snippet:end -->",
        text,
        re.S,
    )
    assert m, "README.md lost its marked Tianshou snippet"
    return m.group(1)


def test_readme_quick_start_commands_are_there():
    text = README.read_text()
    head = text[: text.index("## Install for development")]
    assert "pip install tox" in head and "tox -e train-lbf" in head and "\ntox " in head


def test_readme_tianshou_snippet_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_snippet(), str(README), "exec"), {"__name__": "readme_snippet"})
    out = capsys.readouterr().out
    assert re.search(r"best greedy return -?\d+\.\d{3}", out)
    assert (tmp_path / "runs/readme-example/algorithm.pt").is_file()
    assert any((tmp_path / "runs/readme-example").glob("events.out.tfevents.*"))
