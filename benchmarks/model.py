"""Model benchmark: the default paper machine for 60 simulated seconds.

Prints events, wall time, simulated seconds per wall second and peak memory (RSS).
Target (issue 7): >= 200 x faster than real time.

    python benchmarks/model.py [--duration 60] [--repeats 3]
"""

from __future__ import annotations

import argparse
import resource
import time

from disco import SimConfig, simulate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    cfg = SimConfig.from_dict({"sim": {"duration_s": args.duration}})
    best = float("inf")
    result = None
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        result = simulate(cfg)
        best = min(best, time.perf_counter() - t0)
    m = result.metrics
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    done = f"{m['vms_completed']}/{m['vms_total']}"
    print(f"simulated {m['sim_time_s']:.2f} s (VMs done: {done})")
    print(f"events {m['events']}, wall {best:.3f} s, {m['events'] / best / 1e3:.0f} k events/s")
    print(f"speed {m['sim_time_s'] / best:.0f} x real time (target >= 200)")
    print(f"peak RSS {rss_mb:.0f} MB")


if __name__ == "__main__":
    main()
