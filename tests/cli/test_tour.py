"""The tour: the examples' numbers printed, and a gallery whose every item exists."""

import itertools
import re

import pytest

from descentlab.cli.tour import tour
from test_seeds import SEED_000


@pytest.mark.slow
def test_tour_reproduces_the_seeds_into_a_gallery(tmp_path):
    lines = []
    index = tour(tmp_path / "tour", echo=lines.append)
    text = "\n".join(lines)
    assert SEED_000 in text
    assert text.count("Gradient at x = 1.8: dx = 3.6") == 3
    assert "Function minimum found in 27 iterations. X = 0.00" in text
    losses = [
        float(v)
        for v in lines[lines.index(next(x for x in lines if x.startswith("Example 002"))) + 1 :][
            :10
        ]
    ]
    assert all(b < a for a, b in itertools.pairwise(losses))
    page = index.read_text()
    files = set(re.findall(r'(?:src|href)="([^"#]+)', page))
    assert len(files) >= 20
    for name in files:
        target = index.parent / name
        assert target.exists() and target.stat().st_size > 5_000, name
    for kind in (".png", ".gif", ".mp4", ".html"):
        assert any(f.endswith(kind) for f in files), kind
    assert page.count("<figcaption>") == len({f for f in files if not f.endswith(".html")}) + 1
    assert "edge of stability: sharpness" in text and "Left out" not in page


def test_a_tour_without_the_extras_writes_what_it_can_and_says_what_to_install(
    tmp_path, monkeypatch
):
    from descentlab.cli import tour as module

    monkeypatch.setattr(module, "installed", lambda name: name != "mlxtend")

    def without_pictures_of_breaking_down(path, echo):  # (drawn by the test above)
        return module.Section("Example 001", "", [])

    monkeypatch.setattr(module, "_breaking_down", without_pictures_of_breaking_down)
    lines = []
    index = tour(tmp_path / "tour", echo=lines.append)
    page = index.read_text()
    notes = [line for line in lines if line.startswith("note: ")]
    assert len(notes) == 2 and all("pip install 'descentlab[data]'" in n for n in notes)
    assert page.count('class="note">Left out:') == 2
    assert "quadratic_plane.png" in page and "mnist_plane.png" not in page
    assert not (tmp_path / "tour" / "mnist_loss.png").exists()

    def broken(path, echo):
        raise RuntimeError("a section failed")

    monkeypatch.setattr(module, "_breaking_down", broken)
    with pytest.raises(RuntimeError):
        tour(tmp_path / "again", echo=lines.append)
    page = (tmp_path / "again" / "index.html").read_text()
    assert "stopped early (RuntimeError: a section failed)" in page
    assert "parabola_walk.png" in page  # what was made before it is kept and shown
