"""The example notebooks run from top to bottom (their cells assert the examples' numbers), show
a picture in every cell that draws one, under matplotlib's own choice of backend, and are
stored without outputs."""

import base64
import io
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient
from PIL import Image

NOTEBOOKS = sorted((Path(__file__).parent.parent / "examples").glob("*.ipynb"))


def test_there_is_a_notebook_per_seed():
    assert [p.name[:3] for p in NOTEBOOKS] == ["000", "001", "002", "003"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                f"{path.name}: strip outputs"
            )


# a call that draws: dl.plot.<anything>(, or a method that returns a picture
DRAWS = re.compile(r"dl\.plot\.\w+\(|\.(plot|plot3d|plot_loss|plot_preds|plot_sharpness|animate)\(")


def pictures(cell) -> list[str]:
    """What a cell's outputs show as pictures: "png" for an image, "player" for an animation."""
    found = []
    for out in cell.outputs:
        data = out.get("data", {})
        if "image/png" in data:
            found.append("png")
        elif "animation" in data.get("text/html", "") and "<img" in data.get("text/html", ""):
            found.append("player")
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_cell_that_draws_is_tagged_to_show_a_picture(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            tagged = "picture" in cell.metadata.get("tags", [])
            assert bool(DRAWS.search(cell.source)) == tagged, cell.source


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path, monkeypatch):
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's own choice: inline
    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    text = "\n".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
    )
    for cell in nb.cells:
        if "picture" in cell.metadata.get("tags", []):
            shown = pictures(cell)
            assert len(shown) == 1, (cell.source, shown)  # one picture, not none, not two
            for out in cell.outputs:
                if "image/png" in out.get("data", {}):
                    image = Image.open(io.BytesIO(base64.b64decode(out["data"]["image/png"])))
                    colours = np.asarray(image.convert("RGB")).reshape(-1, 3)
                    assert image.width > 200 and len(np.unique(colours, axis=0)) > 50
    if path.name.startswith("000"):
        assert "f(-3.0) = 1.5e+01" in text and "f(-0.0083) = 4.0" in text
        code = [c for c in nb.cells if c.cell_type == "code"]
        shown = [o for c in code for o in c.outputs if "text/html" in o.get("data", {})]
        assert any("Trajectory" in o["data"]["text/html"] for o in shown)
    for cell in nb.cells:  # the live explorer shows as a widget
        if cell.cell_type == "code" and "dl.explore(" in cell.source:
            kinds = [k for o in cell.outputs for k in o.get("data", {})]
            assert "application/vnd.jupyter.widget-view+json" in kinds, kinds
    if path.name.startswith("003"):
        assert "the plane explains" in text and "lr 4e-5 is above 2/sharpness" in text
    if path.name.startswith("001"):
        assert any("dl.explore(" in c.source for c in nb.cells)
        assert text.count("Gradient at x = 1.8: dx = 3.6") == 3
        assert "Function minimum found in 27 iterations. X = 0.00" in text
