"""Sweep benchmark, end to end through the ``disco`` CLI (Ray start included).

1. A 32-run sweep serial vs on a local Ray (2 CPUs): the ratio (target >= 1.7).
2. The same sweep again from the run cache: the ratio to the first run (target >= 50).
3. A 1000-run sweep of short runs (1 simulated second each) on local Ray (target < 60 s).

For the first, it also splits each sweep's wall time into the runs' own time (``run_wall_s``
in runs.parquet) and what is outside them (imports, planning, Ray's start and stop, writing),
because the ratio is bounded by both: two runs at once on 2 cores take ``c`` times as long
each as one alone (they share the last-level cache), so no sweep gets past ``2 / c``; and a
fixed cost ``F`` outside the runs costs ``F`` seconds of every Ray sweep however long.

    python benchmarks/sweep.py [--skip-1000] [--duration 12]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time

import polars as pl

TARGET = 1.7
# 32 runs of ~2 s each (a 1024-CPU machine): on the 32-CPU machine a run takes ~60 ms, and a
# sweep of those is over before a local Ray (~4 s to start) could pay for itself.
SWEEP_32 = ["machine=origin2000_1024", "cells=cells_256", "workload=mix_large",
            "policy.periodic_period_ms=50,100,200,400", "sim.replicates=8"]
SWEEP_1000 = ["sim.duration_s=1", "policy.periodic_period_ms=range(10,1010,10)",
              "sim.replicates=10"]


def disco(args: list[str], results: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "disco.cli", "-m", *args, f"results_dir={results}",
                    "sweep.progress=false"], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def runs_time(results: str) -> float:
    """The runs' own wall time, summed over every study of the sweep."""
    return float(pl.read_parquet(f"{results}/*/runs.parquet")["run_wall_s"].sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-1000", action="store_true")
    ap.add_argument("--duration", type=float, default=12.0,
                    help="simulated seconds of each of the 32 runs (12: ~2 s a run)")
    args = ap.parse_args()
    sweep = [*SWEEP_32, f"sim.duration_s={args.duration:g}"]
    with tempfile.TemporaryDirectory() as tmp:
        serial = disco([*sweep, "sweep.serial=true"], f"{tmp}/serial")
        ray = disco(sweep, f"{tmp}/ray")
        cached = disco(sweep, f"{tmp}/ray")
        print(f"32 runs serial {serial:6.2f} s   local Ray {ray:6.2f} s   "
              f"ratio {serial / ray:.2f} (target >= {TARGET})")
        own_serial, own_ray = runs_time(f"{tmp}/serial"), runs_time(f"{tmp}/ray")
        slowdown = own_ray / own_serial
        fixed_serial, fixed_ray = serial - own_serial, ray - own_ray / 2
        print(f"  the runs' own time: {own_serial:.1f} s serial, {own_ray:.1f} s on Ray: "
              f"c = {slowdown:.2f} (two at once), so no sweep passes 2 / c = "
              f"{2 / slowdown:.2f} x")
        print(f"  outside the runs: {fixed_serial:.1f} s serial, {fixed_ray:.1f} s on Ray "
              f"(Ray's start and stop, workers' start, the last run's tail)")
        if TARGET * slowdown < 2:
            need = (TARGET * fixed_ray - fixed_serial) / (1 - TARGET * slowdown / 2)
            print(f"  with these, {TARGET} x needs >= {need:.0f} s of runs (serial); "
                  f"this sweep has {own_serial:.0f} s")
        else:
            print(f"  with c = {slowdown:.2f}, {TARGET} x is out of reach however long the sweep")
        print(f"32 runs cached {cached:6.2f} s   ratio to first run {ray / cached:.1f} "
              "(target >= 50)")
        if not args.skip_1000:
            big = disco(SWEEP_1000, f"{tmp}/big")
            print(f"1000 runs of 1 simulated second on local Ray: {big:.1f} s (target < 60)")


if __name__ == "__main__":
    main()
