"""What a user mistake must look like on the command line."""

from __future__ import annotations

import pytest


def one_error_line(capsys: pytest.CaptureFixture[str], code: int) -> str:
    """The CLI's single ``error:`` line on stderr (and exit code 2)."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]
