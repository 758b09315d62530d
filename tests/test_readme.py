"""The README is for a newcomer: short, every link and picture it names exists, and its Python
example runs as written and writes what it says."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


def test_it_is_short_and_its_links_exist():
    assert len(README.splitlines()) <= 150
    targets = re.findall(r"\]\(([^)#]+)\)", README)
    assert "docs/images/race.png" in targets and len(targets) >= 8
    for target in targets:
        assert (ROOT / target).is_file(), target


@pytest.mark.slow
def test_the_python_example_runs_as_written(tmp_path):
    (code,) = re.findall(r"```python\n(.*?)```", README, re.S)
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[-1] == "f(-0.0083) = 4.0"  # as its comment says
    assert (tmp_path / "race.gif").stat().st_size > 10_000


def test_its_python_race_and_its_command_line_race_give_the_same_numbers():
    # the same defaults everywhere: the README's `dl.race(...)` (a formula for Himmelblau) and
    # its `descentlab race himmelblau ...` run the same steps and end at the same values
    from typer.testing import CliRunner

    import descentlab as dl
    from descentlab.cli import app

    (python,) = re.findall(r"^race = (dl\.race\(.*\))$", README, re.M)
    race = eval(python, {"dl": dl})
    (command,) = re.findall(r"^descentlab race (himmelblau [^\n]*?) --animate", README, re.M)
    done = CliRunner().invoke(app, ["race", *command.split()], env={"COLUMNS": "200"})
    assert done.exit_code == 0, done.output
    for label, run in race:
        row = next(line for line in done.output.splitlines() if line.startswith(f"│ {label} "))
        best = row.split("│")[2].strip()
        assert best == f"{float(run.value):.3g}", (label, row)
        assert run.meta["steps"] == 200
    assert race["adam"].status == "step limit" and race["gd"].status == "converged"
