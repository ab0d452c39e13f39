"""The compiled core (``disco.native``): used only when current, and it computes what the
Python sources compute, bit for bit."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from disco import native
from disco.native import MANIFEST, SUFFIX, core_sources, decide, source_hash

# Runs that take every mechanism of the core through its paces: gang on and off, memory
# pressure with paging, a fault campaign with recovery, fixed partitions, the SMP OS, 128 CPUs.
CONFIGS = {
    "default": ["sim.duration_s=10"],
    "gang_off": ["policy=gang_off", "sim.duration_s=5"],
    "faults": ["faults=campaign", "sim.duration_s=40"],
    "paging": ["+experiment=paging", "machine.memory_per_node_mb=128", "sim.duration_s=8"],
    "fixed": ["policy=fixed_partition", "sim.duration_s=5"],
    "smp": ["policy=smp_os", "sim.duration_s=5"],
    "cpus128": ["machine=origin2000_128", "cells=cells_32", "sim.duration_s=2"],
}

_DIGEST = """
import hashlib, json, sys
import disco.native
from disco import simulate
from disco.framework.compose import compose
out = {"active": disco.native.STATE.active, "runs": {}}
for name, overrides in json.loads(sys.argv[1]).items():
    r = simulate(compose(overrides))
    metrics = {k: v for k, v in r.metrics.items() if k != "wall_time_s"}
    blob = json.dumps([metrics, r.timeline, r.vms, r.tables], sort_keys=True, default=repr)
    exercised = {k: metrics.get(k, 0) for k in ("events", "faults_injected", "pages_out")}
    out["runs"][name] = [hashlib.sha256(blob.encode()).hexdigest(), exercised]
print(json.dumps(out))
"""


def _digests(pure: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "DISCO_PURE"}
    if pure:
        env["DISCO_PURE"] = "1"
    out = subprocess.run([sys.executable, "-c", _DIGEST, json.dumps(CONFIGS)], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_make_test_runs_the_compiled_core():
    """``make test`` sets DISCO_EXPECT_NATIVE=1 (NATIVE=1, the default): the suite must then
    have run compiled, or a broken build would pass unnoticed on the sources."""
    if os.environ.get("DISCO_EXPECT_NATIVE") != "1":
        pytest.skip("not run by `make test` with NATIVE=1")
    assert native.STATE.active, native.STATE.reason
    from disco.vmm import execution, gang

    assert gang.__file__.endswith(SUFFIX) and execution.__file__.endswith(SUFFIX)


def test_compiled_and_python_sources_give_identical_results():
    if not decide(native.PACKAGE_DIR, native.NATIVE_DIR, {}).active:
        pytest.skip(f"no current compiled core: {native.STATE.reason}")
    compiled, pure = _digests(pure=False), _digests(pure=True)
    assert compiled["active"] and not pure["active"]
    assert compiled["runs"] == pure["runs"]
    runs = {name: exercised for name, (_, exercised) in pure["runs"].items()}
    assert all(r["events"] > 1000 for r in runs.values())
    assert runs["faults"]["faults_injected"] > 0 and runs["paging"]["pages_out"] > 0


def _fake_build(tmp_path: Path) -> tuple[Path, Path]:
    """A package with two core sources and a build manifest that matches them."""
    pkg, built = tmp_path / "disco", tmp_path / "_native"
    (pkg / "engine").mkdir(parents=True)
    (pkg / "vmm").mkdir()
    built.mkdir()
    for rel in ("engine/loop.py", "vmm/gang.py", "vmm/invariants.py", "vmm/__init__.py"):
        (pkg / rel).write_text(f"# {rel}\n")
    sources = core_sources(pkg)
    modules = {}
    for name, path in sources.items():
        file = name + SUFFIX
        (built / file).write_bytes(b"")
        modules[name] = {"source": path.relative_to(pkg).as_posix(),
                         "sha256": source_hash(path), "file": file}
    (built / ("abc__mypyc" + SUFFIX)).write_bytes(b"")
    shared = {"abc__mypyc": "abc__mypyc" + SUFFIX}
    manifest = {"suffix": SUFFIX, "modules": modules, "shared": shared}
    (built / MANIFEST).write_text(json.dumps(manifest))
    return pkg, built


def test_core_is_engine_hardware_vmm_without_the_invariant_checker(tmp_path):
    pkg, _ = _fake_build(tmp_path)
    assert list(core_sources(pkg)) == ["disco.engine.loop", "disco.vmm.gang"]
    real = core_sources()
    assert "disco.vmm.execution" in real and "disco.engine.loop" in real
    assert not any(name.startswith(("disco.policies", "disco.framework")) or
                   name in ("disco.config", "disco.runner", "disco.vmm.invariants")
                   for name in real)


def test_a_current_build_serves_every_core_module_and_the_shared_library(tmp_path):
    pkg, built = _fake_build(tmp_path)
    decision = decide(pkg, built, {})
    assert decision.active, decision.reason
    assert set(decision.files) == {"disco.engine.loop", "disco.vmm.gang", "abc__mypyc"}


def test_an_edited_source_makes_the_whole_build_unused(tmp_path):
    pkg, built = _fake_build(tmp_path)
    (pkg / "vmm" / "gang.py").write_text("# edited\n")
    decision = decide(pkg, built, {})
    assert not decision.active and decision.warn  # not even the unchanged loop.py
    assert "vmm/gang.py" in decision.reason and "stale" in decision.reason


def test_a_deleted_source_or_extension_makes_the_build_unused(tmp_path):
    pkg, built = _fake_build(tmp_path)
    (pkg / "engine" / "loop.py").unlink()
    assert "engine/loop.py" in decide(pkg, built, {}).reason
    pkg, built = _fake_build(tmp_path / "again")
    (built / ("disco.vmm.gang" + SUFFIX)).unlink()
    decision = decide(pkg, built, {})
    assert not decision.active and "incomplete" in decision.reason


def test_other_interpreter_pure_request_missing_or_bad_manifest(tmp_path):
    pkg, built = _fake_build(tmp_path)
    assert "DISCO_PURE=1" in decide(pkg, built, {"DISCO_PURE": "1"}).reason
    assert decide(pkg, built, {"DISCO_PURE": "0"}).active
    manifest = json.loads((built / MANIFEST).read_text())
    (built / MANIFEST).write_text(json.dumps({**manifest, "suffix": ".cpython-399-x.so"}))
    decision = decide(pkg, built, {})
    assert not decision.active and ".cpython-399-x.so" in decision.reason
    (built / MANIFEST).write_text("{not json")
    assert "unreadable" in decide(pkg, built, {}).reason
    (built / MANIFEST).unlink()
    decision = decide(pkg, built, {})
    assert not decision.active and not decision.warn and "not built" in decision.reason


def test_a_stale_build_warns_and_runs_the_sources(tmp_path):
    """End to end in a fresh interpreter: a copy of the package whose build no longer matches
    one source imports every core module from ``.py`` files and says why."""
    if not decide(native.PACKAGE_DIR, native.NATIVE_DIR, {}).active:
        pytest.skip(f"no current compiled core: {native.STATE.reason}")
    import shutil

    root = tmp_path / "repo"
    shutil.copytree(native.PACKAGE_DIR, root / "disco",
                    ignore=shutil.ignore_patterns("__pycache__"))
    gang = root / "disco" / "vmm" / "gang.py"
    gang.write_text(gang.read_text() + "\n# edited after the build\n")
    code = ("import warnings; warnings.simplefilter('always')\n"
            "import disco, disco.native as n, disco.vmm.execution as m\n"
            "print(n.STATE.active, m.__file__)")
    env = {k: v for k, v in os.environ.items() if k != "DISCO_PURE"}
    env["PYTHONPATH"] = str(root)
    out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env,
                         capture_output=True, text=True, check=True)
    active, module_file = out.stdout.split()
    assert active == "False" and module_file.endswith("execution.py")
    assert "NativeCoreWarning" in out.stderr and "vmm/gang.py" in out.stderr
    digest = hashlib.sha256(gang.read_bytes()).hexdigest()
    assert digest != source_hash(native.PACKAGE_DIR / "vmm" / "gang.py")
