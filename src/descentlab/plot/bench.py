"""The report of a `bench` sweep: a success heatmap, ECDF curves and one HTML page."""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path

import numpy as np

from ..bench.sweep import pool_ecdf, save_table
from ..files import atomic_file
from ._common import new_figure, save_figure


def heatmap(result, path=None):
    """Success rate of each optimizer's chosen rate (mean over the fresh seeds), one row per
    function; each cell also names the rate. Returns the Figure, or the path written."""
    chosen = result.chosen
    fns = list(dict.fromkeys(chosen.function))
    opts = list(dict.fromkeys(chosen.optimizer))
    grid = np.full((len(fns), len(opts)), np.nan)
    label = {}
    for row in chosen.itertuples():
        i, j = fns.index(row.function), opts.index(row.optimizer)
        grid[i, j] = row.success_rate
        label[i, j] = f"{row.success_rate:.0%}\nlr {row.lr:g}"
    fig, ax = new_figure(figsize=(1.3 * len(opts) + 2.5, 0.62 * len(fns) + 1.6))
    image = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    for (i, j), text in label.items():
        ax.text(
            j,
            i,
            text,
            ha="center",
            va="center",
            fontsize=8,
            color="black" if grid[i, j] > 0.6 else "white",
        )
    ax.set_xticks(range(len(opts)), opts)
    ax.set_yticks(range(len(fns)), fns)
    target = result.table.target.iloc[0]
    ax.set_title(f"success rate (f − f* ≤ {target:g}) at the tuned rate, fresh seeds")
    fig.colorbar(image, ax=ax, fraction=0.04, format=lambda v, _: f"{v:.0%}")
    return fig if path is None else save_figure(fig, path)


def ecdf_curves(ecdf, path=None):
    """Fraction of starts at the target by step t (`BenchResult.ecdf`), one panel per
    function, one curve per optimizer (COCO's runtime ECDF); with several functions, a first
    panel aggregates them, each function weighing the same, as COCO's summary plots do."""
    fns = list(dict.fromkeys(ecdf.function))
    panels = [(fn, ecdf[ecdf.function == fn]) for fn in fns]
    if len(fns) > 1:
        panels.insert(0, (f"all {len(fns)} functions", pool_ecdf(ecdf)))
    cols = min(4, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = new_figure(rows, cols, figsize=(3.4 * cols, 2.7 * rows), squeeze=False, sharey=True)
    for ax, (title, part) in zip(axes.flat, panels, strict=False):
        for opt, curve in part.groupby("optimizer", sort=False):
            ax.step(np.maximum(curve.step, 1), curve.fraction, where="post", label=opt)
        ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(title, fontsize=10, fontweight="bold" if title not in fns else "normal")
        ax.set_xlabel("steps")
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("fraction at target")
    axes.flat[0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig if path is None else save_figure(fig, path)


def report(result, folder) -> Path:
    """Write success.png, ecdf.png, table.csv, ecdf.csv and index.html into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ecdf = result.ecdf()
    pictures = [heatmap(result, folder / "success.png"), ecdf_curves(ecdf, folder / "ecdf.png")]
    save_table(result.table, folder / "table.csv")
    save_table(ecdf, folder / "ecdf.csv")
    t = result.table
    facts = (
        f"{t.function.nunique()} functions × {t.optimizer.nunique()} optimizers × "
        f"{t[t.phase == 'tune'].lr.nunique()} rates; {int(t.starts.iloc[0]):,} random starts × "
        f"{int(t.steps.iloc[0]):,} steps per block; target f − f* ≤ {t.target.iloc[0]:g}; "
        f"rates tuned on seed {int(t[t.phase == 'tune'].seed.iloc[0])}, reported on seeds "
        f"{', '.join(map(str, sorted(t[t.phase == 'report'].seed.unique())))}; "
        f"{t.time_s.sum():.3g} s of compute"
    )
    images = "".join(
        f'<figure><img alt="{p.stem}" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode()}"></figure>'
        for p in pictures
    )
    chosen = result.chosen.to_html(index=False, float_format=lambda v: f"{v:.3g}", border=0)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>descentlab bench</title>
<style>
body {{ font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px;
       padding: 0 1em; color: #222; }}
img {{ max-width: 100%; }} figure {{ margin: 1.5em 0; }}
table {{ border-collapse: collapse; font-size: 13px; }}
td, th {{ padding: 3px 10px; border-bottom: 1px solid #ddd; text-align: right; }}
</style></head><body>
<h1>Optimizer benchmark</h1>
<p>{html.escape(facts)}.</p>
<p>Each optimizer's learning rate was chosen per function on the tuning seed (most successes,
then fewest steps to target, then fewest diverged, then the smallest final gap); the numbers below
come from fresh seeds only.
Data: <a href="table.csv">table.csv</a> (every block), <a href="ecdf.csv">ecdf.csv</a>.</p>
{images}
<h2>Chosen rates, mean over fresh seeds</h2>
{chosen}
</body></html>
"""
    target = folder / "index.html"
    with atomic_file(target) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
    return target
