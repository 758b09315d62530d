"""`import descentlab` loads torch and numpy, not the heavy packages that only some calls use:
each of those is imported where it is needed (pandas alone took 0.66 s of the import here)."""

import subprocess
import sys

HEAVY = (
    "pandas",
    "matplotlib",
    "torch._dynamo",
    "torch._inductor",
    "dask",
    "distributed",
    "plotly",
    "pyvista",
    "sklearn",
)


def python(code: str) -> str:
    """What `code` prints in a fresh interpreter (one that has imported nothing yet)."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout


def test_import_loads_no_heavy_package():
    code = f"import sys, descentlab; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = python(code)
    assert out.strip() == "[]", f"import descentlab loaded {out.strip()}"


def test_the_lazily_imported_parts_still_work():
    import descentlab as dl

    result = dl.bench(["himmelblau"], ["gd"], [0.01], starts=20, steps=30, seeds=1)
    assert list(result.table.phase) == ["tune", "report"]
    assert result.ecdf().fraction.between(0, 1).all()
    assert dl.plot.__name__ == "descentlab.plot"  # loaded on first use


def test_a_cli_run_that_draws_nothing_does_not_import_matplotlib():
    code = (
        "import sys\n"
        "from descentlab.cli import app\n"
        "try:\n"
        "    app(['descend', 'x**2', '--start', '3', '--lr', '0.1', '--steps', '5'])\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "print('matplotlib' in sys.modules, 'pandas' in sys.modules)\n"
    )
    out = python(code)
    assert out.strip().splitlines()[-1] == "False False", out
