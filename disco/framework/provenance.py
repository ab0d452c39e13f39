"""Where a run came from: code version, git state, package versions, host, times.

Computed once per sweep in the driver (git and package metadata are slow-ish) and shipped to the
workers, which add the per-run part (host, pid, seed, start and end).
"""

from __future__ import annotations

import hashlib
import platform
import socket
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("disco", "numpy", "hydra-core", "omegaconf", "ray", "polars", "pyarrow", "PyYAML")
# The framework and CLI do not change what a run computes, so editing them must not
# invalidate finished runs; everything else under disco/ does.
_NOT_SIMULATOR = ("framework", "cli.py", "results.py")


def code_version(package_dir: Path) -> str:
    """Hash of the simulator's source files: part of every run key."""
    h = hashlib.sha256()
    for path in sorted(package_dir.rglob("*.py")):
        rel = path.relative_to(package_dir)
        if rel.parts[0] in _NOT_SIMULATOR:
            continue
        h.update(str(rel).encode())
        h.update(b"\0")
        h.update(path.read_bytes())
        h.update(b"\0")
    return h.hexdigest()[:16]


def git_state(root: Path) -> dict[str, Any]:
    """Commit and dirty flag of the checkout; nulls when git or the repo is missing."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(root), *args], capture_output=True,
                                 text=True, timeout=10, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": None if status is None else bool(status)}


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def sweep_provenance(root: Path, code: str, argv: list[str]) -> dict[str, Any]:
    return {
        **git_state(root),
        "code_version": code,
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "driver_host": socket.gethostname(),
        "command": argv,
    }


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
