"""The simulator never imports the framework's libraries, and ``import disco`` stays light."""

import ast
import pathlib
import subprocess
import sys

FRAMEWORK = ("hydra", "ray", "polars", "seaborn", "omegaconf", "pandas", "matplotlib")
SIMULATOR = ("engine", "hardware", "vmm", "policies", "workload")


def test_import_disco_loads_no_framework_library():
    code = ("import sys, disco; from disco import simulate, SimConfig; "
            f"print([m for m in {FRAMEWORK!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# Conveniences for a notebook that import their library when called, never at import time.
ON_DEMAND = {("result.py", "to_polars"): {"polars"}}


def _imports(tree: ast.AST):
    """(enclosing function or None, top-level module) of every import in ``tree``."""
    def walk(node, func):
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) \
                else func
            if isinstance(child, ast.Import):
                yield from ((func, a.name.split(".")[0]) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and not child.level:
                yield func, child.module.split(".")[0]
            yield from walk(child, inner)
    yield from walk(tree, None)


def test_simulator_modules_do_not_import_framework_libraries():
    root = pathlib.Path(__file__).resolve().parents[1] / "disco"
    files = [f for pkg in SIMULATOR for f in (root / pkg).rglob("*.py")]
    files += [root / "runner.py", root / "config.py", root / "result.py"]
    for f in files:
        for func, mod in _imports(ast.parse(f.read_text())):
            if mod in ON_DEMAND.get((f.name, func), ()):
                continue
            assert mod not in FRAMEWORK, f"{f.name}: import {mod} (in {func or 'module'})"


def test_a_simulation_and_the_results_module_load_no_dataframe_library():
    code = ("import sys, disco, disco.results; from disco import simulate, SimConfig; "
            "c = SimConfig(); c.sim.duration_s = 0.2; r = simulate(c); "
            f"print([m for m in {FRAMEWORK!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
