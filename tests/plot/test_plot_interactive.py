"""The interactive page, opened in headless Chromium as a person would: it renders without
console errors, and moving the step slider moves the walks."""

import os

import numpy as np
import pytest
from PIL import Image

import descentlab as dl
from conftest import CHROMIUM_FLAGS, require_tool


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

    kw = dict(optimizers=["gd", "adam"], steps=30, tol=None)
    race = dl.race("himmelblau", start=(-0.4, -0.65), **kw)
    fig = figure(list(race), race.objective, frames=10)
    labels = [int(s.label) for s in fig.layout.sliders[0].steps]
    assert labels == list(range(0, 31, 3)) and len(fig.frames) == 11  # evenly spaced steps
    names = {t.name for t in fig.data if t.showlegend is not False and t.name}
    assert {"gd", "adam", "global minima"} <= names
    assert fig.data[-1].name == "global minima"  # drawn over the paths
    # the map is a picture behind the axes, spanning them exactly, with a colour bar
    (image,) = fig.layout.images
    assert image.source.startswith("data:image/png;base64,") and image.layer == "below"
    assert (image.x, image.sizex) == (fig.layout.xaxis.range[0], np.ptp(fig.layout.xaxis.range))
    bars = [t for t in fig.data if t.type == "scatter" and t.marker.showscale]
    assert len(bars) == 1 and bars[0].marker.colorbar.title.text == "f"
    assert not any(t.type == "contour" for t in fig.data)  # plotly blanks those while playing
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
        page.mouse.move(grip["x"] + grip["width"] / 2, y)  # back to the start, then play
        page.mouse.down()
        page.mouse.move(rail["x"] + 1, y, steps=10)
        page.mouse.up()
        page.get_by_text("▶ play").click()
        page.wait_for_timeout(1500)
        page.screenshot(path=tmp_path / "playing.png")
        playing_label = page.locator(".slider-label").first.text_content()
        browser.close()
    a = np.asarray(Image.open(tmp_path / "a.png").convert("RGB")).astype(int)
    b = np.asarray(Image.open(tmp_path / "b.png").convert("RGB")).astype(int)
    playing = np.asarray(Image.open(tmp_path / "playing.png").convert("RGB")).astype(int)
    assert errors == []
    assert a.std() > 40  # a rendered landscape, not a blank page
    assert (np.abs(a - b).sum(-1) > 30).sum() > 500  # the walks moved with the slider
    assert label.strip() == "step 200"
    assert playing_label.strip() not in ("step 0", "step 200")  # caught mid-play
    # while it plays the map stays drawn: the contour panel is as colourful as at rest (it
    # turned a flat grey before)
    panel = (slice(160, 540), slice(170, 650))
    assert playing[panel].std() > 0.8 * a[panel].std() > 20


def test_page_errors(tmp_path):
    walk = dl.descend(lambda x: x**2, start=1.0, steps=3)
    with pytest.raises(dl.DescentError, match="html draws 2-D runs"):
        dl.plot.html(walk, tmp_path / "p.html")
    two = dl.descend("sphere", (1.0, 1.0), steps=3)
    with pytest.raises(dl.DescentError, match="use one of"):
        dl.plot.html(two, tmp_path / "p.txt")
    assert list(tmp_path.iterdir()) == []
