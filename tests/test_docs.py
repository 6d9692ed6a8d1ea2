"""The documentation can be followed: every repository file it cites exists, and every ``bdps``
command line in it is one the command line accepts (parsed, not run)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from bdps_agents.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted(
    [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *(ROOT / "docs").rglob("*.md")],
    key=lambda path: str(path),
)
# a path in backticks is cited from the repository root when it starts with one of these
ROOT_ENTRIES = ("bdps_agents/", "docs/", "tests/", "benchmarks/", ".ci/")
ROOT_FILES = {"README.md", "CONTRIBUTING.md", "CHANGELOG.md", "LICENSE", "CITATION.cff"}
NOT_A_FILE = re.compile(r"[<>*{}|$ ]|\.\.\.")  # placeholders, globs, shell text


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def cited_paths(doc: Path) -> list[tuple[str, Path]]:
    """(as written, resolved) for every Markdown link target in the repository and every
    backticked path from the repository root."""
    text = doc.read_text()
    found = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        target = target.split("#")[0]
        if target and not re.match(r"[a-z]+:", target):  # not https:, mailto:
            found.append((target, doc.parent / target))
    for code in re.findall(r"`([^`\n]+)`", text):
        for word in code.split():
            word = word.rstrip(",.;:)").split("::")[0]
            if NOT_A_FILE.search(word):
                continue
            if word.startswith(ROOT_ENTRIES) or word in ROOT_FILES:
                found.append((word, ROOT / word))
    return found


def bdps_command_lines(doc: Path) -> list[str]:
    """Every line of a code block, and every inline code span, that starts with ``bdps ``."""
    text = doc.read_text()
    lines = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        joined = block.replace("\\\n", " ")
        lines += [line.strip() for line in joined.splitlines() if line.strip().startswith("bdps ")]
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    spans = [span for span in re.findall(r"`([^`\n]+)`", prose) if span.startswith("bdps ")]
    return lines + [span for span in spans if len(span.split()) > 2]  # not `bdps plot`: a name


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_every_cited_repository_file_exists(doc: Path) -> None:
    missing = [written for written, path in cited_paths(doc) if not path.exists()]
    assert not missing, f"{_name(doc)} cites files that are not in the repository: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_every_bdps_command_line_parses(doc: Path, capsys) -> None:
    parser = build_parser()
    refused = []
    for line in bdps_command_lines(doc):
        # a one-letter placeholder stands for a number ("--seed S" for each seed)
        argv = ["0" if re.fullmatch("[A-Z]", a) else a for a in shlex.split(line, comments=True)]
        argv = argv[1:]
        if "..." in argv:  # an elided command ("bdps train ... --resume") shows options only
            continue
        try:
            parser.parse_args(argv)
        except SystemExit as stop:
            if stop.code != 0:  # 0: --help
                refused.append(f"{line}\n    {capsys.readouterr().err.strip().splitlines()[-1]}")
    assert not refused, f"{_name(doc)}: the CLI refuses\n" + "\n".join(refused)


def test_the_checks_find_what_they_look_for(tmp_path: Path) -> None:
    """The extractors see links, root paths, code blocks and inline commands."""
    doc = tmp_path / "x.md"
    doc.write_text(
        "See [a](missing.md), `bdps_agents/nowhere.py` and `runs/<name>/`.\n"
        "```bash\nbdps train --env lbf:8x8   # old spelling\n```\n"
        "`bdps plot` is `bdps plot --out p results/x`.\n"
    )
    assert [w for w, _ in cited_paths(doc)] == ["missing.md", "bdps_agents/nowhere.py"]
    commands = ["bdps train --env lbf:8x8   # old spelling", "bdps plot --out p results/x"]
    assert bdps_command_lines(doc) == commands
    with pytest.raises(SystemExit):
        build_parser().parse_args(shlex.split(bdps_command_lines(doc)[0], comments=True)[1:])
