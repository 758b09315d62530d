"""PyVista 3-D views rendered off-screen: pictures that show the surface and the path, orbit
movies with the expected frames, and a clear message without the [3d] extra."""

import numpy as np
import pytest
from PIL import Image
from test_plot_animate import mp4_info

import descentlab as dl
from conftest import require_module
from descentlab.plot import view3d as surface_module


@pytest.fixture(scope="module")
def walk():
    return dl.descend("himmelblau", start=(-0.4, -0.65), lr=0.01, steps=100)


def test_png_shows_surface_and_path(walk, tmp_path):
    require_module("pyvista")
    out = dl.plot.surface3d(walk, tmp_path / "s.png")
    img = np.asarray(Image.open(out).convert("RGB")).astype(int)
    background = (img.sum(-1) > 750).mean()
    assert 0.2 < background < 0.95  # a surface fills part of a white frame
    path_pixels = (np.abs(img - np.array([0xFF, 0x5A, 0x36])).sum(-1) < 90).sum()
    assert path_pixels > 300  # the tube of the walk


def test_orbit_movie_frames(tmp_path):
    require_module("pyvista")
    grid = dl.descend("himmelblau", start=dl.grid(10), lr=0.01, steps=100)
    out = dl.plot.surface3d(grid, tmp_path / "o.mp4", seconds=2, fps=15)
    frames, w, h = mp4_info(out)
    assert frames == 30 and w >= 600 and h >= 400


def test_race_in_3d(tmp_path):
    require_module("pyvista")
    race = dl.race("himmelblau", start=(-0.4, -0.65), optimizers=["gd", "adam"], steps=50)
    assert dl.plot.surface3d(race, tmp_path / "r.png").stat().st_size > 10_000


def test_without_pyvista_the_message_names_the_extra(walk, tmp_path, monkeypatch):
    monkeypatch.setattr(surface_module, "has_pyvista", lambda: False)
    with pytest.raises(dl.DescentError, match=r"pip install 'descentlab\[3d\]'"):
        dl.plot.surface3d(walk, tmp_path / "s.png")
    assert list(tmp_path.iterdir()) == []


def test_3d_errors(tmp_path):
    one_d = dl.descend(lambda x: x**2, start=1.0, steps=3)
    with pytest.raises(dl.DescentError, match="need a 2-D run"):
        dl.plot.surface3d(one_d, tmp_path / "s.png")
    with pytest.raises(dl.DescentError, match="use one of"):
        dl.plot.surface3d(one_d, tmp_path / "s.gif")


def test_plot_surface_uses_pyvista_when_it_can(walk, tmp_path, monkeypatch):
    require_module("pyvista")
    assert dl.plot.surface(walk, tmp_path / "a.png") == tmp_path / "a.png"  # PyVista wrote it
    monkeypatch.setattr(surface_module, "has_pyvista", lambda: False)
    fig = dl.plot.surface(walk, tmp_path / "b.png")  # the matplotlib fallback
    assert hasattr(fig, "savefig") and (tmp_path / "b.png").exists()
