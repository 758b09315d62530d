"""The interactive page, opened in headless Chromium as a person would: it renders without
console errors, and moving the step slider moves the walks."""

import os

import numpy as np
import pytest
from PIL import Image

import descentlab as dl
from conftest import require_tool

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def race_page(tmp_path_factory):
    race = dl.race(
        "himmelblau",
        start=(-0.4, -0.65),
        optimizers=["gd", "momentum", "rmsprop", "adam"],
        steps=200,
    )
    return dl.plot.html(race, tmp_path_factory.mktemp("page") / "race.html")


def test_page_is_self_contained_and_small(race_page):
    text = race_page.read_text()
    assert os.path.getsize(race_page) < 10e6
    assert 'src="http' not in text  # plotly.js is inlined, nothing is fetched
    assert "Plotly.newPlot" in text and "Plotly.addFrames" in text


def test_figure_structure(race_page):
    from descentlab.plot.interactive import figure

    race = dl.race("himmelblau", start=(-0.4, -0.65), optimizers=["gd", "adam"], steps=30)
    fig = figure(list(race), race.objective, frames=10)
    assert len(fig.frames) == 10
    names = {t.name for t in fig.data if t.showlegend is not False and t.name}
    assert {"gd", "adam", "global minima"} <= names
    assert fig.layout.sliders[0].steps[-1].label == "30"
    hover = [t.hovertemplate for t in fig.data if t.hovertemplate]
    assert any("|∇f|" in h and "step 0" in h for h in hover)


def test_page_in_headless_chromium(race_page, tmp_path):
    chromium = require_tool("chromium")
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1300, "height": 700})
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(race_page.as_uri())
        page.wait_for_selector(".slider-grip-rect", timeout=60_000)
        page.wait_for_timeout(1000)
        page.screenshot(path=tmp_path / "a.png")
        rail = page.locator(".slider-rail-rect").first.bounding_box()
        grip = page.locator(".slider-grip-rect").first.bounding_box()
        y = grip["y"] + grip["height"] / 2
        page.mouse.move(grip["x"] + grip["width"] / 2, y)
        page.mouse.down()
        page.mouse.move(rail["x"] + rail["width"] - 2, y, steps=10)
        page.mouse.up()
        page.wait_for_timeout(1000)
        page.screenshot(path=tmp_path / "b.png")
        label = page.locator(".slider-label").first.text_content()
        browser.close()
    a = np.asarray(Image.open(tmp_path / "a.png").convert("RGB")).astype(int)
    b = np.asarray(Image.open(tmp_path / "b.png").convert("RGB")).astype(int)
    assert errors == []
    assert a.std() > 40  # a rendered landscape, not a blank page
    assert (np.abs(a - b).sum(-1) > 30).sum() > 500  # the walks moved with the slider
    assert label.strip() == "step 200"


def test_page_errors(tmp_path):
    walk = dl.descend(lambda x: x**2, start=1.0, steps=3)
    with pytest.raises(dl.DescentError, match="html draws 2-D runs"):
        dl.plot.html(walk, tmp_path / "p.html")
    two = dl.descend("sphere", (1.0, 1.0), steps=3)
    with pytest.raises(dl.DescentError, match="use one of"):
        dl.plot.html(two, tmp_path / "p.txt")
    assert list(tmp_path.iterdir()) == []
