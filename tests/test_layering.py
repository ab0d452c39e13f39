"""The layers' arrows point one way, read from the imports themselves (``ast``, every import
in a file, at module level or not): engine <- hardware <- vmm <- policies <- runner <-
framework / CLI, with config (and the limits it declares) below all of them; no circles inside
the vmm; the simulator never imports the framework's libraries, and ``import disco`` stays light."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

FRAMEWORK_LIBS = ("hydra", "ray", "polars", "seaborn", "omegaconf", "pandas", "matplotlib")
ROOT = pathlib.Path(__file__).resolve().parents[1] / "disco"


def _layer(module: str) -> str:
    """``disco.vmm.gang`` -> ``vmm``; ``disco.config`` -> ``config``; ``disco`` -> ``disco``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "disco"


def _imports(path: pathlib.Path) -> set[str]:
    """Every module ``path`` imports (absolute names; relative imports resolved)."""
    package = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts[:-1])
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(pkg + ([base] if base else []))
            out.add(base)
            # ``from disco.vmm import gang`` imports the module disco.vmm.gang
            out.update(f"{base}.{alias.name}" for alias in node.names
                       if (ROOT.parent / (base + "." + alias.name).replace(".", "/")).with_suffix(
                           ".py").exists())
    return out


def _modules() -> dict[str, set[str]]:
    """disco module name -> the disco modules it imports."""
    out = {}
    for path in ROOT.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)
        name = name.removesuffix(".__init__")
        out[name] = {m for m in _imports(path) if m == "disco" or m.startswith("disco.")}
    return out


# layer -> the disco layers it may import (itself always)
ALLOWED = {
    "engine": set(),
    "limits": set(),  # the bounds config.py's fields declare (disco/limits.py)
    "config": {"limits"},
    "hardware": {"engine", "config"},
    "vmm": {"engine", "config", "hardware"},
    "policies": {"config", "vmm"},
    "result": set(),
    # the trace of a run (disco/trace.py): an observer of the model, beside the policies
    "trace": {"engine", "config", "hardware", "vmm"},
    "runner": {"engine", "config", "hardware", "vmm", "policies", "result", "trace"},
}


def test_each_layer_imports_only_the_layers_below_it():
    wrong = []
    for module, imported in _modules().items():
        layer = _layer(module)
        if layer not in ALLOWED:
            continue
        for target in imported:
            other = _layer(target)
            if other != layer and other not in ALLOWED[layer]:
                wrong.append(f"{module} -> {target}")
    assert not wrong, wrong


def test_the_engine_and_the_config_import_nothing_else_of_disco():
    for module, imported in _modules().items():
        if _layer(module) == "engine":
            assert all(_layer(t) == "engine" for t in imported), (module, imported)
        if module == "disco.config":  # but the limits its fields declare
            assert imported <= {"disco.limits"}, imported
        if module == "disco.limits":
            assert not imported, imported


def test_the_vmm_imports_neither_the_policies_nor_the_framework():
    for module, imported in _modules().items():
        if _layer(module) == "vmm":
            assert not {_layer(t) for t in imported} & {"policies", "framework", "runner"}, module


def _circle(graph: dict[str, set[str]]) -> list[str] | None:
    """The first import circle of ``graph`` (module -> modules it imports), or None."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return path[path.index(module):] + [module]
        if module in done:
            return None
        for target in sorted(graph.get(module, ())):
            found = visit(target, path + [module])
            if found:
                return found
        done.add(module)
        return None

    for module in sorted(graph):
        found = visit(module, [])
        if found:
            return found
    return None


def test_the_circle_check_finds_a_circle():
    assert _circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _circle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_there_is_no_import_circle_inside_the_vmm():
    graph = {m: {t for t in imported if _layer(t) == "vmm" and t != "disco.vmm"}
             for m, imported in _modules().items() if _layer(m) == "vmm"}
    # the graph is the real one: the vmm's modules import each other
    assert len(graph) > 20 and sum(len(t) for t in graph.values()) > 20
    circle = _circle(graph)
    assert circle is None, "import circle: " + " -> ".join(circle or [])


def test_simulator_modules_do_not_import_framework_libraries():
    simulator = [p for p in ROOT.rglob("*.py") if _layer(".".join(
        p.relative_to(ROOT.parent).with_suffix("").parts)) in ALLOWED]
    assert len(simulator) > 30
    for path in simulator:
        libs = {m.split(".")[0] for m in _imports(path)} & set(FRAMEWORK_LIBS)
        libs -= ON_DEMAND.get(path.name, set())
        assert not libs, f"{path.relative_to(ROOT.parent)} imports {libs}"


# Conveniences for a notebook that import their library when called, never at import time.
ON_DEMAND = {"result.py": {"polars"}}


def test_on_demand_libraries_are_imported_only_inside_functions():
    for name, libs in ON_DEMAND.items():
        tree = ast.parse((ROOT / name).read_text())
        top = {a.name.split(".")[0] for n in tree.body if isinstance(n, ast.Import)
               for a in n.names}
        top |= {n.module.split(".")[0] for n in tree.body
                if isinstance(n, ast.ImportFrom) and n.module}
        assert not top & libs, f"{name} imports {top & libs} at module level"


def test_import_disco_loads_no_framework_library():
    code = ("import sys, disco; from disco import simulate, SimConfig; "
            f"print([m for m in {FRAMEWORK_LIBS!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_simulation_and_the_results_module_load_no_dataframe_library():
    code = ("import sys, disco, disco.results; from disco import simulate, SimConfig; "
            "c = SimConfig(); c.sim.duration_s = 0.2; r = simulate(c); "
            f"print([m for m in {FRAMEWORK_LIBS!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_import_disco_loads_the_simulator_only_when_a_name_of_it_is_used():
    """A command that never simulates (a re-run answered from its manifest) does not pay for
    the simulator's import; the first use of a name loads it, and validation finds every
    system even when nothing imported ``disco.policies`` before."""
    code = ("import sys, disco; before = 'disco.runner' in sys.modules; "
            "from disco.config import SimConfig; "
            "c = SimConfig.from_dict({'policy': {'name': 'smp_os'}}); "
            "from disco import simulate; "
            "print(before, 'disco.policies' in sys.modules, 'disco.runner' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True", "True"]
