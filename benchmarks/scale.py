"""Scaling benchmark: the default mix scaled with the machine, 32 -> 1024 CPUs, cells of 4 CPUs.

Prints wall seconds per simulated CPU-second at each size and the ratio to the 32-CPU figure.
Target (issue 7): <= 1.5 x at 1024 CPUs (no O(CPUs) work per event).

Each size runs once to warm up (imports, caches), then at least ``--repeats`` times and until
``--min-time`` seconds have passed, keeping the best: a best-of-many 0.3 s run at 32 CPUs
against a single 20 s run at 1024 CPUs would put the noise of this shared machine into the
ratio. Also printed: events per simulated CPU-second (how much scheduling the scaled mix does:
more gang preemptions per CPU on the big machines) and wall time per event (the simulator's
own cost, which must not grow with the machine).

    python benchmarks/scale.py [--sizes 32,128,512,1024] [--duration 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import time

from disco import SimConfig, simulate


def scaled_config(cpus: int, duration: float, memory_per_node_mb: int | None = None) -> SimConfig:
    base = SimConfig()
    factor = cpus // base.total_cpus
    vms = [dataclasses.replace(g, count=g.count * factor, spacing_s=g.spacing_s / factor)
           for g in base.workload.vms]
    return SimConfig.from_dict({
        "machine": {"nodes": cpus // 2,
                    "memory_per_node_mb": memory_per_node_mb or base.machine.memory_per_node_mb},
        "cells": {"count": None, "nodes_per_cell": 2},
        "workload": {"vms": [dataclasses.asdict(g) for g in vms]},
        "sim": {"duration_s": duration},
    })


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="32,128,512,1024")
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per size, at least")
    ap.add_argument("--min-time", type=float, default=2.0,
                    help="repeat each size until this much wall time has passed; keep the best")
    args = ap.parse_args()
    base_cost = None
    for cpus in (int(s) for s in args.sizes.split(",")):
        cfg = scaled_config(cpus, args.duration)
        m = simulate(cfg).metrics  # warm-up
        wall, spent, repeats = float("inf"), 0.0, 0
        while spent < args.min_time or repeats < args.repeats:
            t0 = time.perf_counter()
            simulate(cfg)
            took = time.perf_counter() - t0
            wall, spent, repeats = min(wall, took), spent + took, repeats + 1
        cpu_s = m["sim_time_s"] * cpus
        cost = wall / cpu_s
        base_cost = base_cost or cost
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{cpus:5d} CPUs {m['vms_total']:4d} VMs  events {m['events']:>8d}"
              f" ({m['events'] / cpu_s:3.0f}/CPU-s)  wall {wall:6.2f} s (best of {repeats})"
              f"  {wall / m['events'] * 1e6:5.2f} us/event  {cost * 1e6:6.1f} us/CPU-s"
              f"  ratio {cost / base_cost:4.2f}  peak RSS {rss:.0f} MB")
    # The memory target: 1024 CPUs in 256 cells with 512 GB of simulated memory (1 GB a node).
    cfg = scaled_config(1024, args.duration, memory_per_node_mb=1024)
    m = simulate(cfg).metrics
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"1024 CPUs, {cfg.machine.nodes // cfg.cells.nodes_per_cell} cells, "
          f"{cfg.machine.nodes * cfg.machine.memory_per_node_mb // 1024} GB simulated: "
          f"events {m['events']}, peak RSS {rss:.0f} MB (target < 1024 MB)")


if __name__ == "__main__":
    main()
