"""The explorer's page in headless Chromium, against a real server: what is drawn is the
engine's numbers, and clicks, drags, sliders, the formula box, play and the copy buttons do
what they say. Screenshots go to $DESCENTLAB_SHOTS when it is set (to look at them)."""

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

import descentlab as dl
from conftest import CHROMIUM_FLAGS, explorer_server, require_tool

TOKEN = "page-test-token"
HASH = "#f=himmelblau&opt=gd,adam&lr=0.01,0.05&start=-0.4,-0.65&steps=200"


@pytest.fixture(scope="module")
def base_url():
    with explorer_server(TOKEN) as port:
        yield f"http://127.0.0.1:{port}/?token={TOKEN}"  # as the command prints it


@pytest.fixture(scope="module")
def browser():
    chromium = require_tool("chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, base_url, request):
    context = browser.new_context(viewport={"width": 1300, "height": 1000})
    pg = context.new_page()
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.base = base_url
    yield pg
    shots = os.environ.get("DESCENTLAB_SHOTS")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        pg.screenshot(path=str(Path(shots) / f"{request.node.name}.png"), full_page=True)
    context.close()
    assert not errors, errors


def _open(page, hash_=HASH):
    page.goto(page.base + hash_)
    _settled(page)


def _settled(page, before=None):
    """Wait for the reply to the latest request to be drawn."""
    page.wait_for_selector(".dlx[data-busy='0']", state="attached", timeout=30000)
    page.wait_for_timeout(150)


def _traces(page):
    return page.evaluate(
        "() => document.querySelector('.dlx-map').data.map(t => ({type: t.type, name: t.name,"
        " x: Array.from(t.x || []), y: Array.from(t.y || [])}))"
    )


def _pixel(page, x, y):
    """Page coordinates of the data point (x, y) on the map."""
    return page.evaluate(
        """([x, y]) => { const m = document.querySelector('.dlx-map'), l = m._fullLayout;
        const r = m.getBoundingClientRect();
        return [r.left + l._size.l + l.xaxis.d2p(x), r.top + l._size.t + l.yaxis.d2p(y)]; }""",
        [x, y],
    )


def _state(page):
    return page.evaluate("() => window.descentlabModel.state")


def _path_of(traces, name):
    t = next(t for t in traces if t["name"] == name)
    return np.array([t["x"], t["y"]], dtype=object)


def _race_of_hash(**kw):
    """The race `HASH` shows, run directly."""
    return dl.race(
        "himmelblau",
        start=(-0.4, -0.65),
        optimizers=["gd", "adam"],
        lr={"gd": 0.01, "adam": 0.05},
        steps=200,
        **kw,
    )


def test_draws_the_engines_walks(page):
    _open(page)
    traces = _traces(page)
    assert traces[0]["type"] == "contour"
    expected = _race_of_hash()
    for label, name in (("gd", "gd lr=0.01"), ("adam", "adam lr=0.05")):
        t = next(t for t in traces if t["name"] == name)
        xs = np.array([v for v in t["x"] if v is not None], dtype=np.float32)
        ys = np.array([v for v in t["y"] if v is not None], dtype=np.float32)
        run = expected[label]
        n = run.steps + 1
        np.testing.assert_array_equal(xs, run.path[:n, 0, 0])
        np.testing.assert_array_equal(ys, run.path[:n, 0, 1])
    # the colour bar and the minima
    assert page.locator(".dlx-map .colorbar").count() == 1
    minima = next(t for t in traces if t["name"] == "minima")
    assert len(minima["x"]) == 4
    assert "step limit" in page.locator(".dlx-curve").inner_text()


def test_click_adds_a_start_and_drag_moves_it(page):
    _open(page)
    x, y = _pixel(page, 2.0, -1.0)
    page.mouse.click(x, y)
    _settled(page)
    starts = _state(page)["start"]
    assert len(starts) == 2 and starts[1] == pytest.approx([2.0, -1.0], abs=0.05)
    assert "start=-0.4,-0.65;" in page.evaluate("location.hash")
    gd = next(t for t in _traces(page) if t["name"] == "gd lr=0.01")
    assert gd["x"].count(None) == 2  # two walks, each ended by a gap
    # drag the first start from (-0.4, -0.65) to (1, 1)
    a, b = _pixel(page, -0.4, -0.65), _pixel(page, 1.0, 1.0)
    page.mouse.move(*a)
    page.mouse.down()
    for k in range(1, 9):
        page.mouse.move(a[0] + (b[0] - a[0]) * k / 8, a[1] + (b[1] - a[1]) * k / 8)
        page.wait_for_timeout(30)
    page.mouse.up()
    _settled(page)
    moved = _state(page)["start"][0]
    assert moved == pytest.approx([1.0, 1.0], abs=0.05)
    gd = next(t for t in _traces(page) if t["name"] == "gd lr=0.01")
    expected = dl.descend("himmelblau", start=tuple(moved), lr=0.01, steps=200)
    assert gd["x"][0] == pytest.approx(moved[0]) and gd["y"][0] == pytest.approx(moved[1])
    end = gd["x"].index(None) - 1
    assert (gd["x"][end], gd["y"][end]) == pytest.approx(tuple(expected.x), abs=1e-5)


def test_learning_rate_slider_is_log_scale_and_reruns(page):
    _open(page)
    slider = page.locator(".dlx-lr").first
    slider.evaluate("(s) => { s.value = '-1'; s.dispatchEvent(new Event('input')); }")
    _settled(page)
    assert _state(page)["lr"][0] == 0.1
    assert "lr=0.1,0.05" in page.evaluate("location.hash")
    assert page.locator(".dlx-lrtext").first.input_value() == "0.1"
    gd = next(t for t in _traces(page) if t["name"] == "gd lr=0.1")
    expected = dl.descend("himmelblau", start=(-0.4, -0.65), lr=0.1, steps=200)
    assert gd["x"][1] == pytest.approx(float(expected.path[1, 0, 0]), abs=1e-6)
    # the slider keeps 3 significant figures (0.02 to 0.021 is a step), and a rate may be typed
    slider.evaluate(
        "(s) => { s.value = String(Math.log10(0.0215)); s.dispatchEvent(new Event('input')); }"
    )
    _settled(page)
    assert _state(page)["lr"][0] == 0.0215
    page.locator(".dlx-lrtext").first.fill("0.021")
    page.locator(".dlx-lrtext").first.dispatch_event("change")
    _settled(page)
    assert _state(page)["lr"][0] == 0.021 and "lr=0.021,0.05" in page.evaluate("location.hash")
    assert any(t["name"] == "gd lr=0.021" for t in _traces(page))


def test_formula_box_shows_errors_and_keeps_working(page):
    _open(page)
    box = page.locator(".dlx-formula")
    box.fill("x**2 + (y")
    box.press("Enter")
    page.wait_for_selector(".dlx-error >> text=column 8")
    assert "^" in page.locator(".dlx-caret").inner_text()
    box.fill("x**2 + 10*y**2")
    box.press("Enter")
    page.wait_for_function(
        "() => getComputedStyle(document.querySelector('.dlx-error')).display === 'none'"
    )
    _settled(page)
    assert "x**2 + 10*y**2" in page.locator(".dlx-map .gtitle").text_content()
    assert page.evaluate("location.hash").startswith(
        "#f=x**2%20%2B%2010*y**2"
    ) or "f=x" in page.evaluate("location.hash")


def test_huge_request_is_refused_in_the_page(page):
    _open(page, "#f=booth&opt=gd&steps=100000")
    page.wait_for_selector(".dlx-error >> text=at most 5000 steps")
    page.locator(".dlx-steps").fill("50")
    page.locator(".dlx-steps").dispatch_event("change")
    page.wait_for_function(
        "() => getComputedStyle(document.querySelector('.dlx-error')).display === 'none'"
    )
    _settled(page)
    assert page.locator(".dlx-steptext").inner_text() == "step 0 / 50"


def test_play_keeps_the_contour_and_moves_the_walkers(page):
    _open(page)
    page.locator(".dlx-play").click()
    seen = []
    for _ in range(6):
        page.wait_for_timeout(250)
        seen.append(
            page.evaluate(
                "() => [Number(document.querySelector('.dlx-slider').value),"
                " document.querySelectorAll('.dlx-map .contourlayer path').length]"
            )
        )
    steps = [s for s, _ in seen]
    assert steps == sorted(steps) and steps[-1] > steps[0]
    assert all(paths > 10 for _, paths in seen)  # the map stays drawn while it plays
    page.locator(".dlx-play").click()
    stopped = page.locator(".dlx-slider").input_value()
    page.wait_for_timeout(300)
    assert page.locator(".dlx-slider").input_value() == stopped
    page.locator(".dlx-next").click()
    assert int(page.locator(".dlx-slider").input_value()) == int(stopped) + 1
    # the walkers and the arrows of the step shown, on the overlay over the plot area
    overlay = page.locator(".dlx-overlay")
    assert int(overlay.get_attribute("data-arrows")) >= 2
    assert int(overlay.get_attribute("data-walkers")) == 2


def test_grid_of_starts(page):
    _open(page)
    page.locator(".dlx-gridn").fill("10")
    page.locator(".dlx-grid").click()
    _settled(page)
    assert "grid=10" in page.evaluate("location.hash")
    gd = next(t for t in _traces(page) if t["name"] == "gd lr=0.01")
    assert gd["x"].count(None) == 100
    assert "100 starts on a grid" in page.locator(".dlx-readout").inner_text()


def test_copy_as_python_and_cli(page):
    _open(page)
    page.locator(".dlx-copy-python").click()
    code = page.locator(".dlx-code").inner_text()
    assert "dl.race(" in code and "'adam lr=0.05': 0.05" in code
    page.locator(".dlx-copy-cli").click()
    assert (
        page.locator(".dlx-code")
        .inner_text()
        .startswith(
            "descentlab race himmelblau --optimizers 'gd,adam' --lr 0.01,0.05 --start '-0.4,-0.65'"
        )
    )


def test_hash_edit_changes_the_view(page):
    _open(page)
    page.evaluate("location.hash = '#f=rosenbrock&opt=momentum&lr=0.001&start=-1,2&steps=40'")
    page.wait_for_function(
        "() => document.querySelector('.dlx-steptext').textContent === 'step 0 / 40'"
    )
    _settled(page)
    assert page.locator(".dlx-f").input_value() == "rosenbrock"
    names = [t["name"] for t in _traces(page)]
    assert "momentum lr=0.001" in names
    # one walk alone in the colour every picture gives one walk; several in the palette's
    from descentlab import defaults

    def colours():
        line = page.evaluate(
            "() => document.querySelector('.dlx-map').data.filter(t => (t.name || '')"
            ".includes(' lr=')).map(t => t.line.color)"
        )
        swatch = page.evaluate(
            "() => [...document.querySelectorAll('.dlx-optrow .dlx-swatch')]"
            ".map(s => s.style.background)"
        )
        return line, swatch

    assert colours() == ([defaults.SINGLE], ["rgb(255, 90, 54)"])
    _open(page)
    line, swatch = colours()
    assert line == list(defaults.PALETTE[:2]) and swatch[0] == "rgb(230, 25, 75)"


def test_a_schedule_is_chosen_drawn_and_kept_in_the_hash(page):
    _open(page)
    page.select_option(".dlx-schedule", "step")
    page.fill(".dlx-schedule-settings", "step_size=50, gamma=0.2")
    page.press(".dlx-schedule-settings", "Enter")
    _settled(page)
    assert "sched=step,step_size:50,gamma:0.2" in page.evaluate("location.hash")
    expected = _race_of_hash(schedule=("step", {"step_size": 50, "gamma": 0.2}))
    gd = next(t for t in _traces(page) if t["name"] == "gd lr=0.01")
    xs = np.array([v for v in gd["x"] if v is not None], dtype=np.float32)
    np.testing.assert_array_equal(xs, expected["gd"].path[: expected["gd"].steps + 1, 0, 0])
    # each walk's rate per step is drawn on the curve's right-hand axis
    rates = page.evaluate(
        "() => document.querySelector('.dlx-curve').data.filter(t => t.yaxis === 'y2')"
        ".map(t => Array.from(t.y))"
    )
    assert len(rates) == 2 and rates[0] == pytest.approx(expected["gd"].rates.tolist())
    # the table shows each walk's rate at the step on screen: adam's 0.05 * 0.2 after step 50
    # (gd converged at step 25, at its rate then)
    page.fill(".dlx-slider", "60")
    page.dispatch_event(".dlx-slider", "input")
    adam = page.locator(".dlx-readout tr").filter(has_text="adam").inner_text()
    gd = page.locator(".dlx-readout tr").filter(has_text="gd").inner_text()
    assert "lr = 0.01;" in adam and "converged at step 25" in gd and "lr = 0.01" in gd
    # a setting the schedule lacks is said in the page, and the next good one runs
    page.fill(".dlx-schedule-settings", "")
    page.press(".dlx-schedule-settings", "Enter")
    _settled(page)
    assert "needs step_size=" in page.locator(".dlx-error").inner_text()
    page.select_option(".dlx-schedule", "")
    _settled(page)
    assert page.locator(".dlx-error").inner_text() == ""
    assert "sched=" not in page.evaluate("location.hash")
    # a list setting survives the hash, a one-item list too
    for typed, hashed, kept in (
        ("milestones=[50, 120]", "milestones:50;120", [50, 120]),
        ("milestones=(50,)", "milestones:50;", [50]),
    ):
        page.select_option(".dlx-schedule", "multistep")
        page.fill(".dlx-schedule-settings", typed)
        page.press(".dlx-schedule-settings", "Enter")
        _settled(page)
        assert hashed in page.evaluate("location.hash")
        page.reload()  # the view read back from the hash alone
        _settled(page)
        assert _state(page)["schedule"] == {"name": "multistep", "milestones": kept}
        assert page.locator(".dlx-error").inner_text() == ""


def test_a_grid_too_large_to_send_whole_is_shown_every_kth_step(page, monkeypatch):
    from descentlab.explorer import request

    # (the server's budget made small, so a small grid, quick to draw, is over it)
    monkeypatch.setitem(request.LIMITS, "reply", 200_000)
    _open(page, "#f=booth&opt=gd,adam&grid=6&steps=200")
    page.wait_for_function(
        "() => document.querySelector('.dlx-steptext').textContent.includes('every')"
    )
    _settled(page)
    text = page.locator(".dlx-steptext").inner_text()
    assert text == "step 0 / 200 (every 3rd step shown)", text
    assert page.locator(".dlx-error").evaluate("e => getComputedStyle(e).display") == "none"
    every = dl.race(
        "booth",
        start=dl.grid(6, bounds=((-10, 10), (-10, 10))),
        optimizers=["gd"],
        lr=0.01,
        steps=200,
        record=3,
    )["gd"]
    gd = next(t for t in _traces(page) if t["name"] == "gd lr=0.01")
    first = np.array(gd["x"][: gd["x"].index(None)], dtype=np.float32)
    assert np.array_equal(first, every.path[:, 0, 0])  # the rows every 3rd step, exact
    curve = page.evaluate("() => Array.from(document.querySelector('.dlx-curve').data[0].x)")
    assert curve[:3] == [0, 3, 6] and curve[-1] == 200
    page.locator(".dlx-slider").fill("5")
    assert page.locator(".dlx-steptext").inner_text().startswith("step 15 / 200")
    assert "of 2 s allowed" in page.locator(".dlx-info").inner_text()  # the budget, shown
    page.locator(".dlx-copy-cli").click()
    assert page.locator(".dlx-code").inner_text().endswith("--steps 200 --record 3")


def _rows(page):
    return {
        r.split("\n")[0].strip(): r for r in page.locator(".dlx-readout tr").all_inner_texts()[1:]
    }


def test_a_diverging_walk_does_not_cut_the_timeline_and_is_marked_where_it_left(page):
    # Rosenbrock with the default optimizers: gd and momentum diverge within a few steps,
    # rmsprop and adam walk all 200
    _open(page, "#f=rosenbrock&start=-0.4,-0.65")
    assert page.locator(".dlx-steptext").inner_text() == "step 0 / 200"
    race = dl.race("rosenbrock", start=(-0.4, -0.65), steps=200)
    left = next(t for t in _traces(page) if t["name"] == "left the view")
    texts = page.evaluate(
        "() => document.querySelector('.dlx-map').data.find(t => t.name === 'left the view').text"
    )
    for label in ("gd", "momentum"):
        assert race[label].status == "diverged"
        assert f"diverged at {race[label].steps}" in texts
    (x0, x1), (y0, y1) = race.objective.domain
    for x, y in zip(left["x"], left["y"], strict=True):  # on the view's edge
        assert min(abs(x - x0), abs(x - x1), abs(y - y0), abs(y - y1)) < 1e-9
    # the legend names each walk's outcome
    curve = page.locator(".dlx-curve").inner_text()
    assert f"gd: diverged at step {race['gd'].steps}" in curve
    assert "adam: step limit (200)" in curve
    # at the end, the diverged walks' rows show their last finite numbers, compactly
    page.locator(".dlx-slider").fill("200")
    rows = _rows(page)
    assert "diverged at step" in rows["gd"]
    f_text = rows["gd"].split("\t")[2]  # e.g. 1.352e12, not 1352190525440
    assert re.fullmatch(r"-?\d(\.\d+)?e\d+", f_text), f_text
    assert float(f_text) == pytest.approx(float(race["gd"].value), rel=1e-3)
    # the walkers still walking are drawn; the two that left are not
    assert page.locator(".dlx-overlay").get_attribute("data-walkers") == "2"


def test_the_timeline_is_the_longest_walk_whichever_is_listed_first(page):
    for opt, lr in (("gd,momentum", "0.021,0.01"), ("momentum,gd", "0.01,0.021")):
        _open(page, f"#f=0.5*x**2%20%2B%2050*y**2&opt={opt}&lr={lr}&start=-4,1&steps=200")
        race = dl.race(
            "0.5*x**2 + 50*y**2",
            start=(-4, 1),
            optimizers=["gd", "momentum"],
            lr={"gd": 0.021, "momentum": 0.01},
            steps=200,
        )
        longest = max(run.iterations for _, run in race)
        assert page.locator(".dlx-steptext").inner_text() == f"step 0 / {longest}"


def test_a_grid_draws_one_path_trace_per_optimizer_and_its_size_applies_at_once(page):
    _open(page, "#f=himmelblau&grid=12&steps=60")
    paths = [t for t in _traces(page) if (t["name"] or "").endswith("lr=0.01")]
    assert len(paths) == 4 and all(t["type"] == "scattergl" for t in paths)
    assert all(t["x"].count(None) == 144 for t in paths)
    # every walker is on the canvas (none is a start dot hiding the paths)
    assert int(page.locator(".dlx-overlay").get_attribute("data-walkers")) == 4 * 144
    assert not any(t["name"] == "starts (drag)" and t["x"] for t in _traces(page))
    page.locator(".dlx-gridn").fill("5")
    page.locator(".dlx-gridn").dispatch_event("change")
    _settled(page)
    assert "grid=5" in page.evaluate("location.hash")
    assert next(t for t in _traces(page) if t["name"] == "gd lr=0.01")["x"].count(None) == 25


def test_arrows_are_drawn_at_the_steps_length_inside_the_map(page):
    _open(page, "#f=himmelblau&opt=gd,adam&lr=0.01,0.05&start=-0.4,-0.65&steps=200")
    arrows = page.evaluate("() => document.querySelector('.dlx-overlay').drawnArrows")
    size = page.evaluate(
        "() => { const s = document.querySelector('.dlx-map')._fullLayout._size;"
        " return [s.w, s.h]; }"
    )
    by = {(a["run"], a["name"]): a for a in arrows}
    # Adam's first step is lr = 0.05 long per coordinate: its gradient and first-moment
    # arrows are directions drawn at that length, not the plain gradient step across the map
    update = by[("adam", "update")]["length"]
    assert by[("adam", "gradient")]["length"] == pytest.approx(update, rel=1e-6)
    assert by[("adam", "first moment")]["length"] == pytest.approx(update, rel=1e-6)
    px_per_unit = size[0] / 10  # the view is -5..5
    assert update == pytest.approx(max(10, 0.05 * np.sqrt(2) * px_per_unit), rel=0.05)
    # gd's gradient arrow is its step (the update), at its true length
    assert by[("gd", "gradient")]["length"] == pytest.approx(by[("gd", "update")]["length"])
    for a in arrows:  # drawn on the plot area's canvas, so cut at its edge
        assert a["length"] >= 10 - 1e-9


def test_zoom_pan_fit_and_whole_view_change_the_hash(page):
    _open(page, "#f=rosenbrock&opt=rmsprop,adam&start=-0.4,-0.65")
    page.locator(".dlx-fit").click()
    _settled(page)
    box = [float(v) for v in _state(page)["box"]]
    race = dl.race("rosenbrock", start=(-0.4, -0.65), optimizers=["rmsprop", "adam"])
    points = np.concatenate([run.path[:, 0] for _, run in race])
    assert box[0] <= points[:, 0].min() and box[1] >= points[:, 0].max()
    assert box[2] <= points[:, 1].min() and box[3] >= points[:, 1].max()
    assert box[1] - box[0] < 5  # much closer than the function's own -5..10
    assert "box=" in page.evaluate("location.hash")
    # the wheel zooms about the pointer
    before = _state(page)["box"]
    x, y = _pixel(page, (box[0] + box[1]) / 2, (box[2] + box[3]) / 2)
    page.mouse.move(x, y)
    page.mouse.wheel(0, -200)
    page.wait_for_function(
        "(b) => JSON.stringify(window.descentlabModel.state.box) !== b",
        arg=json.dumps(before, separators=(",", ":")),
    )
    _settled(page)
    after = _state(page)["box"]
    assert after[1] - after[0] < before[1] - before[0]
    # a drag on empty map pans (and adds no start)
    a = _pixel(page, after[0] + 0.1 * (after[1] - after[0]), after[2] + 0.1 * (after[3] - after[2]))
    page.mouse.move(*a)
    page.mouse.down()
    for k in range(1, 6):
        page.mouse.move(a[0] + 20 * k, a[1])
        page.wait_for_timeout(20)
    page.mouse.up()
    _settled(page)
    panned = _state(page)["box"]
    assert len(_state(page)["start"]) == 1
    assert panned[0] < after[0] and panned[1] - panned[0] == pytest.approx(after[1] - after[0])
    page.locator(".dlx-whole").click()
    _settled(page)
    assert "box=" not in page.evaluate("location.hash")


def test_the_curve_is_log_where_f_spans_decades_and_can_be_switched(page):
    _open(page, "#f=x**2%20%2B%2010*y**2&opt=gd&lr=0.05&start=3,1")
    layout = "() => document.querySelector('.dlx-curve').layout.yaxis"
    axis = page.evaluate(layout)
    assert axis["type"] == "log" and axis["title"]["text"] == "f"
    page.locator(".dlx-curve-scale").click()
    assert page.evaluate(layout)["type"] == "linear"
    # the info line says which engine ran, in words
    assert "ran on the C loop" in page.locator(".dlx-info").inner_text()
