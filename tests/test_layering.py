"""The simulator never imports the framework's libraries, and ``import disco`` stays light."""

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


def test_simulator_modules_do_not_import_framework_libraries():
    root = pathlib.Path(__file__).resolve().parents[1] / "disco"
    files = [f for pkg in SIMULATOR for f in (root / pkg).rglob("*.py")]
    files += [root / "runner.py", root / "config.py", root / "result.py"]
    for f in files:
        for line in f.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith(("import ", "from ")):
                mod = stripped.split()[1].split(".")[0]
                assert mod not in FRAMEWORK, f"{f.name}: {stripped}"
