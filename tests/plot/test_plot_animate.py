"""Animations: the expected frames, decodable files, pictures that move; errors leave nothing."""

import re
import subprocess

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

import descentlab as dl
from descentlab.plot.animate import frame_rows


def gif_frames(path):
    im = Image.open(path)
    frames = []
    for k in range(im.n_frames):
        im.seek(k)
        frames.append(np.asarray(im.convert("RGB")).astype(int))
    return frames


def mp4_info(path):
    """(frames, width, height) by decoding the whole file with the bundled ffmpeg."""
    ff = imageio_ffmpeg.get_ffmpeg_exe()
    done = subprocess.run(
        [ff, "-i", str(path), "-map", "0:v:0", "-f", "null", "-"], capture_output=True, text=True
    )
    frames = int(re.findall(r"frame=\s*(\d+)", done.stderr)[-1])
    w, h = map(int, re.search(r"Video: h264.*?, (\d{2,5})x(\d{2,5})", done.stderr).groups())
    return frames, w, h


def test_frame_rows_keep_first_and_last():
    rows = frame_rows(301, 100)
    assert rows[0] == 0 and rows[-1] == 300 and len(rows) == 100
    assert frame_rows(20, 100).tolist() == list(range(20))


def test_single_walk_gif_moves(tmp_path):
    run = dl.descend("himmelblau", start=(-0.4, -0.65), lr=0.01, steps=60, tol=None)
    path, n = dl.animate(run, tmp_path / "w.gif", fps=10, seconds=3)
    frames = gif_frames(path)
    assert n == len(frames) == 30
    assert frames[0].std() > 30  # a landscape, not a blank canvas
    trail = [(np.abs(f - np.array([0xFF, 0x5A, 0x36])).sum(-1) < 60).sum() for f in frames]
    assert trail[-1] > trail[0] + 200  # the trail grows as the walk moves


def test_grid_mp4_decodes_with_the_expected_frames(tmp_path):
    grid = dl.descend("six_hump_camel", start=dl.grid(50), lr=0.01, steps=200)
    path, n = dl.animate(grid, tmp_path / "g.mp4")
    frames, w, h = mp4_info(path)
    assert n == frames == 100
    assert w % 2 == 0 and h % 2 == 0 and w > 300 and h > 200


def test_race_and_fit_and_curve(tmp_path):
    race = dl.race("himmelblau", start=(-0.4, -0.65), optimizers=["gd", "adam"], steps=40)
    assert dl.animate(race, tmp_path / "r.gif", fps=10, seconds=2)[1] == 20
    time, speed = dl.datasets.noisy_quadratic(seed=0)
    learn = dl.Learner(
        dl.models.Polynomial(2), data=(time, speed), loss="mse", lr=1e-5, verbose=False
    )
    learn.fit(10)
    frames = gif_frames(dl.animate(learn, tmp_path / "f.gif")[0])
    assert len(frames) == 11 and np.abs(frames[0] - frames[-1]).mean() > 0.5
    walk = dl.descend(lambda x: x**2, start=1.8, lr=0.1, tol=0.01)
    assert dl.animate(walk, tmp_path / "c.gif")[1] == 28


def test_animation_errors_leave_nothing(tmp_path):
    run = dl.descend("rastrigin", start=(1.0, 2.0, 3.0), dim=3, steps=5)
    with pytest.raises(dl.DescentError, match="1-D and 2-D"):
        dl.animate(run, tmp_path / "x.gif")
    walk = dl.descend("sphere", (1.0, 1.0), steps=5)
    with pytest.raises(dl.DescentError, match="use one of .gif, .mp4"):
        dl.animate(walk, tmp_path / "x.avi")
    with pytest.raises(dl.DescentError, match="does not exist"):
        dl.animate(walk, tmp_path / "no" / "x.gif")
    with pytest.raises(dl.DescentError, match="fps"):
        dl.animate(walk, tmp_path / "x.gif", fps=0)
    assert list(tmp_path.iterdir()) == []
