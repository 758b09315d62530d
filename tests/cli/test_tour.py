"""The tour: the seeds' numbers printed, and a gallery whose every item exists."""

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
        for v in lines[lines.index(next(x for x in lines if x.startswith("Seed 002"))) + 1 :][:10]
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
