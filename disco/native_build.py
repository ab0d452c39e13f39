"""Build the compiled core (``disco.native``): ``python -m disco.native_build [status|clean]``.

mypyc type-checks the core, turns it into C and gcc compiles that; the extensions land in
``disco/_native/`` with a manifest of the sources' hashes, which ``import disco`` checks.
A failed build leaves the previous one (or none) in place.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from disco.native import (
    MANIFEST,
    NATIVE_DIR,
    PACKAGE_DIR,
    SUFFIX,
    core_sources,
    decide,
    describe,
    source_hash,
)

_SETUP = """\
import json, sys
from mypyc.build import mypycify
from setuptools import setup
a = json.loads(sys.argv[1])
# Only the core must type-check; modules it imports (config, policies) are read, not judged.
mods = mypycify(["--follow-imports=silent", *a["paths"]], opt_level="3", target_dir=a["c"])
setup(name="disco-native", ext_modules=mods,
      script_args=["build_ext", "--build-lib", a["lib"], "--build-temp", a["temp"], "-j", "2"])
"""


def build(native_dir: Path = NATIVE_DIR, quiet: bool = True) -> Path:
    """Compile the core into ``native_dir`` (replaced only once the build has succeeded)."""
    if importlib.util.find_spec("mypyc") is None:
        raise SystemExit("disco.native: building the compiled core needs mypy (its mypyc): "
                         "pip install -e '.[native]'")
    root = PACKAGE_DIR.parent
    sources = core_sources()
    hashes = {name: source_hash(path) for name, path in sources.items()}  # what gets compiled
    with tempfile.TemporaryDirectory(prefix="disco-native-") as tmp_name:
        tmp = Path(tmp_name)
        args = {"paths": [path.relative_to(root).as_posix() for path in sources.values()],
                "c": str(tmp / "c"), "lib": str(tmp / "lib"), "temp": str(tmp / "temp")}
        env = {**os.environ, "MYPY_CACHE_DIR": str(tmp / "mypy_cache")}
        out = subprocess.run([sys.executable, "-c", _SETUP, json.dumps(args)], cwd=root,
                             env=env, capture_output=quiet, text=True)
        if out.returncode:
            detail = (out.stdout + out.stderr)[-4000:] if quiet else ""
            raise SystemExit(f"disco.native: the build failed (mypy or the C compiler):\n"
                             f"{detail}")
        staged = tmp / "native"
        staged.mkdir()
        modules: dict[str, dict[str, str]] = {}
        shared: dict[str, str] = {}
        for ext in sorted((tmp / "lib").rglob("*" + SUFFIX)):
            # Kept in the package layout: mypyc's code sets __file__ from it.
            target = ext.relative_to(tmp / "lib").as_posix()
            name = target.removesuffix(SUFFIX).replace("/", ".")
            (staged / target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ext, staged / target)
            if name in sources:
                modules[name] = {"source": sources[name].relative_to(PACKAGE_DIR).as_posix(),
                                 "sha256": hashes[name], "file": target}
            else:  # mypyc's shared library of the group, imported by name by every module
                shared[name] = target
        if set(modules) != set(sources):
            raise SystemExit(f"disco.native: the build made no module for "
                             f"{sorted(set(sources) - set(modules))}")
        manifest = {"suffix": SUFFIX, "python": sys.version.split()[0],
                    "mypy": _version("mypy"), "modules": modules, "shared": shared}
        (staged / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        old = native_dir.with_name(native_dir.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if native_dir.exists():
            native_dir.rename(old)
        shutil.move(str(staged), native_dir)
        shutil.rmtree(old, ignore_errors=True)
    return native_dir


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m disco.native_build",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("command", nargs="?", default="build", choices=("build", "status", "clean"))
    ap.add_argument("-v", "--verbose", action="store_true", help="show mypyc's and gcc's output")
    args = ap.parse_args(argv)
    if args.command == "build":
        build(quiet=not args.verbose)
        # A fresh interpreter must now pick the build up and load every module of the core
        # (the runner imports them all): proves it works, not just that it was built.
        check = subprocess.run(
            [sys.executable, "-c", "import disco.native as n, disco.runner; "
             "print(n.STATE.reason); raise SystemExit(not n.STATE.active)"],
            env={k: v for k, v in os.environ.items() if k != "DISCO_PURE"},
            capture_output=True, text=True)
        print(f"disco.native: {check.stdout.strip() or check.stderr.strip()}")
        return check.returncode
    if args.command == "clean":
        shutil.rmtree(NATIVE_DIR, ignore_errors=True)
        print(f"disco.native: removed {NATIVE_DIR}")
        return 0
    print(f"disco.native: {describe(decide(PACKAGE_DIR, NATIVE_DIR, os.environ))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
