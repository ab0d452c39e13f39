"""Trace benchmark: the paper machine's runs traced against untraced, in one process.

For the default run (which ends when its VMs finish, ~25 simulated seconds), the fault
campaign (~46 s) and the large mix (``workload=mix_large``: busy for the whole 60 simulated
seconds), alternating untraced and traced runs, prints the best wall time of each, their ratio
(target < 3 for the default run), and the trace's size, plain and gzip (target < 50 MB for 60
simulated seconds). docs/performance.md has the figures.

    python benchmarks/trace.py [--duration 60] [--repeats 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from disco import native, simulate
from disco.framework.compose import compose
from disco.trace import TraceOptions


def measure(label: str, overrides: list[str], repeats: int, tmp: Path) -> None:
    cfg = compose(overrides)
    plain_path, gz_path = tmp / "trace.json", tmp / "trace.json.gz"
    simulate(cfg)  # warm-up
    plain, traced = float("inf"), float("inf")
    for _ in range(repeats):  # alternating: the machine's speed drifts
        t0 = time.perf_counter()
        result = simulate(cfg)
        plain = min(plain, time.perf_counter() - t0)
        t0 = time.perf_counter()
        simulate(cfg, trace=TraceOptions(plain_path))
        traced = min(traced, time.perf_counter() - t0)
    simulate(cfg, trace=TraceOptions(gz_path))
    mb, gz_mb = plain_path.stat().st_size / 1e6, gz_path.stat().st_size / 1e6
    print(f"{label}: simulated {result.metrics['sim_time_s']:.1f} s, untraced {plain:.3f} s, "
          f"traced {traced:.3f} s (best of {repeats}), ratio {traced / plain:.2f} "
          f"(target < 3 default); trace {mb:.1f} MB, {gz_mb:.2f} MB gzip (target < 50 MB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    duration = f"sim.duration_s={args.duration}"
    print(f"core: {native.describe()}")
    with tempfile.TemporaryDirectory() as tmp:
        measure("default run   ", [duration], args.repeats, Path(tmp))
        measure("fault campaign", [duration, "faults=campaign"], args.repeats, Path(tmp))
        measure("large mix     ", [duration, "workload=mix_large"], args.repeats, Path(tmp))


if __name__ == "__main__":
    main()
