"""Scaling benchmark: the default mix scaled with the machine, 32 -> 1024 CPUs, cells of 4 CPUs.

Prints wall seconds per simulated CPU-second at each size and the ratio to the 32-CPU figure.
Target (issue 7): <= 1.5 x at 1024 CPUs (no O(CPUs) work per event).

    python benchmarks/scale.py [--sizes 32,128,512,1024] [--duration 20]
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import time

from disco import SimConfig, simulate


def scaled_config(cpus: int, duration: float) -> SimConfig:
    base = SimConfig()
    factor = cpus // base.total_cpus
    vms = [dataclasses.replace(g, count=g.count * factor, spacing_s=g.spacing_s / factor)
           for g in base.workload.vms]
    return SimConfig.from_dict({
        "machine": {"nodes": cpus // 2},
        "cells": {"count": None, "nodes_per_cell": 2},
        "workload": {"vms": [dataclasses.asdict(g) for g in vms]},
        "sim": {"duration_s": duration},
    })


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="32,128,512,1024")
    ap.add_argument("--duration", type=float, default=20.0)
    args = ap.parse_args()
    base_cost = None
    for cpus in (int(s) for s in args.sizes.split(",")):
        cfg = scaled_config(cpus, args.duration)
        t0 = time.perf_counter()
        m = simulate(cfg).metrics
        wall = time.perf_counter() - t0
        cost = wall / (m["sim_time_s"] * cpus)
        base_cost = base_cost or cost
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{cpus:5d} CPUs {m['vms_total']:5d} VMs  events {m['events']:>9d}"
              f"  wall {wall:7.2f} s"
              f"  {cost * 1e6:7.2f} us/CPU-s  ratio {cost / base_cost:5.2f}  peak RSS {rss:.0f} MB")


if __name__ == "__main__":
    main()
