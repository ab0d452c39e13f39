"""Sweep benchmark, end to end through the ``disco`` CLI (Ray start included).

1. A 32-run sweep serial vs on a local Ray (2 CPUs): the ratio (target >= 1.7).
2. The same sweep again from the run cache: the ratio to the first run (target >= 50).
3. A 1000-run sweep of short runs (1 simulated second each) on local Ray (target < 60 s).

    python benchmarks/sweep.py [--skip-1000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time

# 32 runs of ~2 s each (a 1024-CPU machine): on the 32-CPU machine a run takes ~60 ms, and a
# sweep of those is over before a local Ray (~4 s to start) could pay for itself.
SWEEP_32 = ["machine=origin2000_1024", "cells=cells_256", "workload=mix_large",
            "sim.duration_s=12", "policy.periodic_period_ms=50,100,200,400", "sim.replicates=8"]
SWEEP_1000 = ["sim.duration_s=1", "policy.periodic_period_ms=range(10,1010,10)",
              "sim.replicates=10"]


def disco(args: list[str], results: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "disco.cli", "-m", *args, f"results_dir={results}",
                    "sweep.progress=false"], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-1000", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        serial = disco([*SWEEP_32, "sweep.serial=true"], f"{tmp}/serial")
        ray = disco(SWEEP_32, f"{tmp}/ray")
        cached = disco(SWEEP_32, f"{tmp}/ray")
        print(f"32 runs serial {serial:6.2f} s   local Ray {ray:6.2f} s   "
              f"ratio {serial / ray:.2f} (target >= 1.7)")
        print(f"32 runs cached {cached:6.2f} s   ratio to first run {ray / cached:.1f} "
              "(target >= 50)")
        if not args.skip_1000:
            big = disco(SWEEP_1000, f"{tmp}/big")
            print(f"1000 runs of 1 simulated second on local Ray: {big:.1f} s (target < 60)")


if __name__ == "__main__":
    main()
