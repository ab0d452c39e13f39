"""Model benchmark: the default paper machine (32 CPUs, 8 cells, default mix, memory on) for
60 simulated seconds, without faults and under the fault campaign (``conf/faults/campaign.yaml``:
about four faults a minute, lost VMs restarted, failed cells repaired).

Prints events, wall time, simulated seconds per wall second and peak memory (RSS).
Target (issue 7): >= 200 x faster than real time. A run ends when every VM has finished, so
the default mix stops at ~25 simulated seconds; the campaign's restarts keep it going longer.

    python benchmarks/model.py [--duration 60] [--repeats 5]
"""

from __future__ import annotations

import argparse
import resource
import time

from disco import SimConfig, native, simulate
from disco.framework.compose import compose


def measure(label: str, cfg: SimConfig, repeats: int) -> None:
    result = simulate(cfg)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = simulate(cfg)
        best = min(best, time.perf_counter() - t0)
    m = result.metrics
    done = f"{m['vms_completed']}/{m['vms_total']}"
    print(f"{label}: simulated {m['sim_time_s']:.2f} s (VMs done: {done}), "
          f"events {m['events']}, wall {best:.3f} s (best of {repeats}), "
          f"{m['events'] / best / 1e3:.0f} k events/s, "
          f"speed {m['sim_time_s'] / best:.0f} x real time (target >= 200)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    duration = f"sim.duration_s={args.duration}"
    print(f"core: {native.describe()}")
    measure("no faults     ", compose([duration]), args.repeats)
    measure("fault campaign", compose([duration, "faults=campaign"]), args.repeats)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {rss_mb:.0f} MB")


if __name__ == "__main__":
    main()
