"""Answer a re-run of a finished sweep without Hydra, polars or Ray.

Planning a sweep costs ~0.5 s (importing Hydra, composing, reading every run's metrics row);
a re-run of a complete sweep needs none of it. After a sweep whose runs all succeeded, the
driver stores a small manifest under a fingerprint of everything that decides the plan: the
command-line overrides, the working directory (``results_dir`` may be relative), the contents of
every file of the config search path (``conf/``, ``--config-dir``, ``$DISCO_CONF_DIR``), the
simulator's code version and the framework's own source. A later
identical command finds the manifest and checks on disk, by content (sha256, not times: ``cp -p``
and ``rsync -a`` keep those), that each ``runs.parquet`` is the one it wrote and that every run
still passes ``results.verify`` with the run manifest it had. Any doubt means a miss, and the
normal path (which skips complete runs anyway, with the same check) takes over.

``experiments/reproduce.py`` keeps one for a whole reproduction, with the report's files and
the lines it printed, its own sources and the analysis scripts in the fingerprint.

Manifests live in ``$DISCO_CACHE_DIR`` (default ``~/.cache/disco/sweeps``); deleting them is safe.
The folder is made 0700 and used only while it is this user's and nobody else may write to it
(nor to a manifest): a manifest decides what a re-run trusts without looking.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from disco.framework import results
from disco.framework.compose import PlanError
from disco.framework.provenance import code_version

_FRAMEWORK = Path(__file__).resolve().parent


def cache_dir() -> Path:
    env = os.environ.get("DISCO_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "disco" / "sweeps"


def _owned_safely(path: Path) -> bool:
    """Is ``path`` this user's (not a symlink) and writable by nobody else?"""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return (not stat.S_ISLNK(st.st_mode) and st.st_uid == os.getuid()
            and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def fingerprint(overrides: list[str], config_dirs: list[str] | None = None,
                extra_roots: Sequence[Path] = (), packages: Sequence[str] = ()) -> str:
    """Everything that decides the plan (and, with ``extra_roots`` and ``packages``, what else
    a caller's output depends on: its scripts (folders or files) and the versions of what
    draws)."""
    from importlib import metadata

    from disco.framework.compose import search_path

    roots = [c.path for c in search_path(config_dirs or [])]
    h = hashlib.sha256()
    h.update(json.dumps({"overrides": overrides, "cwd": os.getcwd(),
                         "search": [str(r) for r in roots],
                         "extra": [str(r) for r in extra_roots],
                         "packages": {p: metadata.version(p) for p in packages},
                         "code": code_version(_FRAMEWORK.parent)}).encode())
    for root in (*roots, _FRAMEWORK, *extra_roots):
        for path in [root] if root.is_file() else sorted(root.rglob("*")):
            if path.is_file() and path.suffix in (".yaml", ".yml", ".py", ".j2"):
                h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    h.update((_FRAMEWORK.parent / "cli.py").read_bytes())
    return h.hexdigest()[:32]


def _digest(path: Path) -> tuple[int, str]:
    data = path.read_bytes()
    return len(data), hashlib.sha256(data).hexdigest()


def lookup(overrides: list[str], config_dirs: list[str] | None = None,
           extra_roots: Sequence[Path] = (), packages: Sequence[str] = ()
           ) -> dict[str, Any] | None:
    """The manifest of a complete, unchanged sweep for exactly this command, or None."""
    try:
        fp = fingerprint(overrides, config_dirs, extra_roots, packages)
        stored = cache_dir() / f"{fp}.json"
        if not (_owned_safely(cache_dir()) and _owned_safely(stored)):
            return None
        manifest = json.loads(stored.read_text())
        for path, size, digest in [*manifest["runs"], *manifest.get("files", [])]:
            if _digest(Path(path)) != (size, digest):
                return None
        base = Path(manifest["results_dir"])
        for study, key, digest in manifest["keys"]:
            run = base / study / "runs" / key
            if _digest(run / results.MANIFEST)[1] != digest or not results.verify(run):
                return None
    except (OSError, ValueError, KeyError, TypeError, PlanError):
        return None
    manifest["runs_paths"] = [r[0] for r in manifest["runs"]]
    return manifest


def remember(overrides: list[str], config_dirs: list[str] | None, label: str,
             results_dir: Path, runs_paths: list[Path], keys: list[tuple[str, str]], *,
             files: Sequence[Path] = (), extra_roots: Sequence[Path] = (),
             packages: Sequence[str] = (), lines: Sequence[str] = ()) -> None:
    """Store the manifest of a sweep whose runs are all complete and ok (best effort).

    ``files``: more outputs a hit must find unchanged (a report's); ``lines``: what the
    command printed, for a hit to print again."""
    try:
        runs = [[str(p), *_digest(p)] for p in runs_paths]
        runs_of = [[study, key, _digest(results_dir / study / "runs" / key / results.MANIFEST)[1]]
                   for study, key in keys]
        manifest = {"label": label, "results_dir": str(results_dir), "runs": runs,
                    "keys": runs_of, "files": [[str(p), *_digest(p)] for p in files],
                    "lines": list(lines)}
        out = cache_dir()
        out.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not _owned_safely(out):
            return
        path = out / f"{fingerprint(overrides, config_dirs, extra_roots, packages)}.json"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(manifest))
        os.replace(tmp, path)
    except (OSError, PlanError):
        pass
