"""What a notebook shows for descentlab's objects (their ``_repr_html_``): a compact table of
what matters and, for a 2-D run or race, a small picture of the walk."""

from __future__ import annotations

import base64
import html

import numpy as np

from ._common import png_bytes

_STYLE = (
    "<style>.dl-box{display:flex;gap:14px;align-items:flex-start;font-size:13px}"
    ".dl-box table{border-collapse:collapse}.dl-box th{text-align:left;padding:1px 10px 1px 0;"
    "color:#666;font-weight:normal}.dl-box td{padding:1px 10px 1px 0}"
    ".dl-box img{max-width:320px}</style>"
)


def _table(title: str, rows: list[tuple[str, object]], picture: str | None = None) -> str:
    cells = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows
    )
    image = f'<img alt="{html.escape(title)}" src="{picture}">' if picture else ""
    return (
        f'{_STYLE}<div class="dl-box"><div><b>{html.escape(title)}</b>'
        f"<table>{cells}</table></div>{image}</div>"
    )


def _picture(fig) -> str:
    data = base64.b64encode(png_bytes(fig, dpi=60)).decode()
    return f"data:image/png;base64,{data}"


def _hyper(meta: dict) -> str:
    parts = [f"lr={meta.get('lr'):g}"] if meta.get("lr") is not None else []
    parts += [f"{k}={v}" for k, v in (meta.get("hyper") or {}).items()]
    return ", ".join(parts)


def _thumbnail(obj) -> str | None:
    """A small contour with the walks, for 2-D runs whose function is at hand."""
    from .static import contour

    runs = list(obj) if not hasattr(obj, "dim") else [("", obj)]
    if runs[0][1].dim != 2 or runs[0][1].objective is None:
        return None
    return _picture(contour(obj, levels=20))


def trajectory(run) -> str:
    meta = run.meta
    rows = [
        ("function", meta.get("function")),
        ("optimizer", f"{meta.get('optimizer')} ({_hyper(meta)})"),
        ("points", f"{run.n_points:,}"),
        ("iterations", run.iterations),
        ("status", run.status_text(",")),
        ("best f", f"{float(np.nanmin(run.value_)):.6g}"),
    ]
    if run.minima:
        s = run.summary()
        reached = ", ".join(f"{m['count']:,} at {_point(m['point'])}" for m in s["minima"])
        rows.append(("minima reached", f"{reached}; {s['no_minimum']:,} at none"))
    kernel = f" ({meta['kernel']})" if meta.get("kernel") else ""
    rows.append(("engine", f"{meta.get('engine')}{kernel}"))
    return _table("Trajectory", rows, _thumbnail(run))


def race(contest) -> str:
    rows = []
    for label, run in contest:
        best = float(np.nanmin(run.value_))
        rows.append((label, f"{_hyper(run.meta)} · best f {best:.4g} · {run.status_text(',')}"))
    first = next(iter(contest.runs.values()))
    title = f"Race on {first.meta.get('function')} · {first.n_points:,} points"
    return _table(title, rows, _thumbnail(contest))


def bench(result) -> str:
    chosen = result.chosen
    rows = [
        (
            f"{r.function} / {r.optimizer}",
            f"lr {r.lr:g} · success {r.success_rate:.0%} · median steps "
            f"{r.median_steps_to_target:g}",
        )
        for r in chosen.itertuples()
    ]
    return _table(f"Sweep · {len(result.table)} blocks", rows)


def learner(learn) -> str:
    history = learn.history["loss"]
    rows = [
        ("model", type(learn.model).__name__),
        ("loss", learn.loss_name),
        ("optimizer", f"{learn.plan.name} (lr={learn.lr:g})"),
        ("train / valid", f"{len(learn.x):,} / {len(learn.x_valid) if learn.has_valid else 0:,}"),
        ("steps", learn.steps_done),
    ]
    if history:
        rows.append(("loss", f"{history[0]:.4g} → {history[-1]:.4g}"))
    picture = None
    if history:
        from .fits import loss

        picture = _picture(loss(learn))
    return _table("Learner", rows, picture)


def objective(obj) -> str:
    rows = [("dimension", obj.dim)]
    if obj.formula:
        rows.append(("formula", obj.formula))
    if obj.domain:
        rows.append(("domain", " × ".join(f"[{lo:g}, {hi:g}]" for lo, hi in obj.domain)))
    if obj.minima:
        rows.append(("minima", "; ".join(_point(m) for m in obj.minima[:6])))
    if obj.minimum_value is not None:
        rows.append(("f*", f"{obj.minimum_value:.6g}"))
    return _table(f"Objective {obj.name}", rows)


def _point(p) -> str:
    return "(" + ", ".join(f"{float(c):.4g}" for c in p) + ")"
