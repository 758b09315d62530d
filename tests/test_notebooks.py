"""The example notebooks run from top to bottom (their cells assert the seeds' numbers), and are
stored without outputs."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parent.parent / "examples").glob("*.ipynb"))


def test_there_is_a_notebook_per_seed():
    assert [p.name[:3] for p in NOTEBOOKS] == ["000", "001", "002"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                f"{path.name}: strip outputs"
            )


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    text = "\n".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
    )
    if path.name.startswith("000"):
        assert "f(-3.0) = 1.5e+01" in text and "f(-0.0083) = 4.0" in text
    if path.name.startswith("001"):
        assert text.count("Gradient at x = 1.8: dx = 3.6") == 3
        assert "Function minimum found in 27 iterations. X = 0.00" in text
