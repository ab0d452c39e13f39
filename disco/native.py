"""The simulator core compiled with mypyc: the same source, faster, the same metrics
(``docs/performance.md``).

``python -m disco.native_build`` (``make native``; ``make setup`` runs it) compiles the core,
every module of ``disco/engine``, ``disco/hardware`` and ``disco/vmm`` but the invariant checker,
into ``disco/_native/``, with a manifest of the hashes of the sources it compiled. ``import
disco`` calls ``enable``, which serves the core from there when all of these hold:

- ``DISCO_PURE`` is unset or ``0`` (set it to profile with cProfile, which cannot see into
  compiled functions, or to step through the core in a debugger);
- the build is for this interpreter (its extension suffix);
- every compiled source still has the hash it was built from.

Otherwise the ``.py`` files are imported as usual. It is all or nothing: compiled modules call
each other directly in C, so one stale module would keep running its old code inside the
others. Editing a core file therefore never runs old code: disco warns that the build is stale
and runs the sources until the next build. Policies, config, runner and framework are never
compiled, so a policy variant is still a Python class plus a YAML file.

mypyc compiles the type hints into checks: a value that contradicts its annotation raises
``TypeError`` in the compiled core where the sources would run on, so the hints in the core
must be true (the build type-checks them first). ``tests/test_native.py`` checks that compiled
and pure runs give identical metrics, timelines and tables.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.abc import MetaPathFinder
from pathlib import Path
from types import ModuleType
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent
NATIVE_DIR = PACKAGE_DIR / "_native"
MANIFEST = "manifest.json"
CORE_PACKAGES = ("engine", "hardware", "vmm")
# The invariant checker is a debug hook, and its error subclasses AssertionError, which mypyc
# cannot compile.
NOT_COMPILED = frozenset({"vmm/invariants.py"})
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]  # e.g. .cpython-311-x86_64-linux-gnu.so


class NativeCoreWarning(UserWarning):
    """The compiled core exists but cannot be used: disco runs the Python sources."""


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether to serve the core compiled: ``files`` maps module name -> extension path."""

    files: dict[str, Path]
    reason: str  # why not, when ``files`` is empty; what is used otherwise
    warn: bool = False  # a build exists but is unusable: tell the user

    @property
    def active(self) -> bool:
        return bool(self.files)


# Set by ``enable``: what this process runs.
STATE = Decision({}, "not decided yet (disco not imported)")


def core_sources(package_dir: Path = PACKAGE_DIR) -> dict[str, Path]:
    """Module name -> source file of every compiled module, in name order."""
    out: dict[str, Path] = {}
    for sub in CORE_PACKAGES:
        for path in sorted((package_dir / sub).glob("*.py")):
            rel = path.relative_to(package_dir).as_posix()
            if path.name != "__init__.py" and rel not in NOT_COMPILED:
                out["disco." + rel.removesuffix(".py").replace("/", ".")] = path
    return out


def source_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def decide(package_dir: Path, native_dir: Path, environ: Mapping[str, str]) -> Decision:
    """Can the build in ``native_dir`` stand in for the sources in ``package_dir``?"""
    if environ.get("DISCO_PURE", "0") not in ("", "0"):
        return Decision({}, f"DISCO_PURE={environ['DISCO_PURE']}: running the Python sources")
    path = native_dir / MANIFEST
    if not path.exists():
        return Decision({}, f"not built ({path} is missing; run `make native`)")
    try:
        manifest = json.loads(path.read_text())
        suffix, modules, shared = manifest["suffix"], manifest["modules"], manifest["shared"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return Decision({}, f"unreadable build manifest {path}: {exc!r}", warn=True)
    if suffix != SUFFIX:
        return Decision({}, f"built for {suffix}, this interpreter loads {SUFFIX}", warn=True)
    changed = sorted(entry["source"] for entry in modules.values()
                     if not (package_dir / entry["source"]).exists()
                     or source_hash(package_dir / entry["source"]) != entry["sha256"])
    if changed:
        return Decision({}, f"stale: {', '.join(changed)} changed since the build", warn=True)
    files = {name: native_dir / entry["file"] for name, entry in modules.items()}
    files.update({name: native_dir / file for name, file in shared.items()})
    missing = sorted(str(file) for file in files.values() if not file.exists())
    if missing:
        return Decision({}, f"incomplete build: {', '.join(missing)} missing", warn=True)
    return Decision(files, f"compiled core from {native_dir}")


class _NativeFinder(MetaPathFinder):
    """Serves the compiled modules by name, ahead of the ``.py`` files."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = files

    def find_spec(self, fullname: str, path: Any = None, target: ModuleType | None = None
                  ) -> importlib.machinery.ModuleSpec | None:
        file = self.files.get(fullname)
        if file is None:
            return None
        loader = importlib.machinery.ExtensionFileLoader(fullname, str(file))
        return importlib.util.spec_from_file_location(fullname, file, loader=loader)


def describe(decision: Decision | None = None) -> str:
    """What this process runs (or ``decision`` would run), for benchmarks and logs."""
    decision = STATE if decision is None else decision
    kind = "compiled" if decision.active else "Python sources"
    return f"{kind} ({decision.reason})"


def enable() -> Decision:
    """Decide once per process, before any core module is imported (``disco/__init__.py``)."""
    global STATE
    if any(isinstance(finder, _NativeFinder) for finder in sys.meta_path):
        return STATE
    STATE = decide(PACKAGE_DIR, NATIVE_DIR, os.environ)
    if STATE.active:
        sys.meta_path.insert(0, _NativeFinder(STATE.files))
    elif STATE.warn:
        warnings.warn(f"disco runs its Python sources (slower), not the compiled core: "
                      f"{STATE.reason}. Rebuild it with `make native`.", NativeCoreWarning,
                      stacklevel=2)
    return STATE
