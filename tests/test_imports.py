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


# what each layer may import when its modules load (a call may import more, lazily): the
# layers of docs/architecture.md, dependencies pointing down
FOUNDATION = {"errors", "files", "status", "memory", "progress", "defaults"}
MAY_IMPORT = {
    "problem": {"problem"},
    "descent": {"problem", "descent"},
    "engine": {"problem", "engine"},
    "training": {"problem", "descent", "training"},
    "bench": {"problem", "descent", "bench"},
    "plot": {"problem", "descent", "training", "bench", "plot"},
    "cli": {"problem", "descent", "training", "bench", "plot", "cli"},
}


def _module_level_imports() -> dict[str, set[str]]:
    """descentlab's modules and the descentlab modules each imports at module level (not in a
    function, nor under TYPE_CHECKING)."""
    import ast
    from pathlib import Path

    import descentlab

    root = Path(descentlab.__file__).parent
    modules = {}
    for path in root.rglob("*.py"):
        parts = ["descentlab", *path.relative_to(root).with_suffix("").parts]
        package = path.name == "__init__.py"
        if package:
            parts = parts[:-1]
        modules[".".join(parts)] = (path, package)
    edges = {}
    for name, (path, package) in modules.items():
        here = name.split(".") if package else name.split(".")[:-1]
        found = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if not isinstance(node, ast.ImportFrom):
                continue
            base = here[: len(here) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            if not target.startswith("descentlab"):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in modules else target)
        edges[name] = found
    return edges


def test_no_module_imports_a_module_that_imports_it_back():
    edges = _module_level_imports()
    state = {}

    def visit(module, trail):
        if state.get(module) == "done":
            return
        assert state.get(module) != "open", " -> ".join([*trail, module])
        state[module] = "open"
        for target in edges.get(module, ()):
            visit(target, [*trail, module])
        state[module] = "done"

    for module in edges:
        visit(module, [])


def test_dependencies_point_down_the_layers():
    for module, targets in _module_level_imports().items():
        parts = module.split(".")
        if len(parts) < 3 and module != "descentlab" and parts[-1] in FOUNDATION:
            assert {t.split(".")[1] for t in targets} <= FOUNDATION, module
            continue
        layer = parts[1] if len(parts) > 1 else None
        if layer not in MAY_IMPORT:
            continue
        for target in targets:
            other = target.split(".")[1]
            assert other in FOUNDATION or other in MAY_IMPORT[layer], f"{module} imports {target}"


def test_import_does_not_load_the_engine():
    out = python(
        "import sys, descentlab; print(any('descentlab.engine' in m for m in sys.modules))"
    )
    assert out.strip() == "False"
