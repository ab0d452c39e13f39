"""Shared helpers for the memory tests: small machines and fully specified profiles."""

from __future__ import annotations

from typing import Any

from conftest import merge, small_config

from disco import simulate
from disco.config import SimConfig
from disco.runner import Simulation, build

# Partial profile overrides replace a whole profile, so tests spell theirs out.
PMAKE = {"burst_ms": 15.0, "io_prob": 0.35, "io_ms": 6.0, "idle_prob": 0.05, "idle_ms": 10.0,
         "kernel_fraction": 0.45, "spin_sensitivity": 0.2, "memory_intensity": 0.3,
         "memory_initial_fraction": 1.0, "working_set_fraction": 0.3, "free_per_s": 0.5}
# A Database whose guest also pages its buffer pool out once its memory is full.
DATABASE = {"burst_ms": 25.0, "io_prob": 0.3, "io_ms": 8.0, "kernel_fraction": 0.25,
            "spin_sensitivity": 0.3, "memory_intensity": 0.8, "memory_initial_fraction": 0.3,
            "memory_growth_mb_per_s": 100.0, "working_set_fraction": 0.5,
            "guest_paging_mb_per_s": 32.0}
# A Database that touches all its memory at boot and does not grow (hot half, cold half) ...
DB_FIXED = {"burst_ms": 25.0, "io_prob": 0.3, "io_ms": 8.0, "kernel_fraction": 0.25,
            "spin_sensitivity": 0.3, "memory_intensity": 0.8, "memory_initial_fraction": 1.0,
            "memory_growth_mb_per_s": 0.0, "working_set_fraction": 0.5}
# ... and one that boots with 30 % and grows at 100 MB per second of progress.
DB_GROW = {**DB_FIXED, "memory_initial_fraction": 0.3, "memory_growth_mb_per_s": 100.0}
# CPU bound, all memory touched at boot, nothing shared: a plain memory hog.
HOG = {"burst_ms": 200.0, "memory_intensity": 0.1, "memory_initial_fraction": 1.0,
       "shared_mb": 0}


def config(extra: dict[str, Any]) -> SimConfig:
    """The small test machine (4 nodes x 2 CPUs, 2 cells, invariants checked) plus ``extra``."""
    return small_config(extra)


def run(cfg: SimConfig, until: float | None = None) -> tuple[Simulation, dict[str, Any]]:
    sim = build(cfg)
    sim.run(until)
    return sim, sim.metrics()


def with_policy(base: dict[str, Any], **policy: Any) -> dict[str, Any]:
    return merge(base, {"policy": policy})


def finished(base: dict[str, Any], seed: int, **policy: Any) -> dict[str, Any]:
    """The metrics of ``base`` (no invariant checks: these runs are compared, not audited) on
    ``seed`` with ``policy`` overrides; every VM must have finished (the same work done)."""
    cfg = merge(base, {"sim": {"seed": seed}, "policy": policy})
    m = simulate(SimConfig.from_dict(cfg)).metrics
    assert m["vms_completed"] == m["vms_total"]
    return m
