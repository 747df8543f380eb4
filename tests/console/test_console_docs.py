"""The console's documented commands exist: every ``candlecast ...`` line of the README's
console section and of docs/console.md parses against the real CLI (command names and options;
nothing is run), and the screenshot the README shows is a real, non-blank PNG."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from candlecast.cli import app

REPO = Path(__file__).resolve().parents[2]


def console_lines() -> list[str]:
    readme = REPO / "README.md"
    text = readme.read_text()
    start = text.index("### The operator's console")
    section = text[start:text.index("\n### ", start + 10)]
    docs = (REPO / "docs" / "console.md").read_text()
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", section + docs, flags=re.S):
        for line in block.splitlines():
            line = line.split(" #")[0].strip().rstrip("&").strip()
            if re.match(r"^(\.venv/bin/)?candlecast ", line):
                lines.append(line)
    return lines


def parse(line: str) -> None:
    """Unknown commands and options fail parsing before ``--help`` (eager) prints anything."""
    result = CliRunner().invoke(app, [*shlex.split(line)[1:], "--help"])
    if result.exit_code != 0:
        raise AssertionError(f"{line!r}: {result.output.strip()[-300:]}")


def test_documented_console_commands_parse():
    lines = console_lines()
    assert any(" dashboard" in x for x in lines) and any(" telegram" in x for x in lines)
    assert any("trade run --replay" in x for x in lines)
    for line in lines:
        parse(line)
    with pytest.raises(AssertionError, match="No such option"):
        parse("candlecast trade run --replay --no-such-option")


def test_readme_screenshot_is_a_real_picture():
    import matplotlib.image

    shot = REPO / "docs" / "console_dashboard.png"
    assert "docs/console_dashboard.png" in (REPO / "README.md").read_text()
    image = matplotlib.image.imread(str(shot))
    assert image.shape[0] >= 800 and image.shape[1] >= 1000
    assert len(np.unique(image.reshape(-1, image.shape[-1])[::11], axis=0)) > 200
