"""Every paper study, and the knob sensitivity, run serially at a reduced size.

Fewer values, fewer replicates, shorter runs: a few seconds of wall time in all, keeping the
values each figure and check needs. ``tests/conftest.py`` runs it once per session
(``paper_results``) for the figure, report and browser tests.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FAST = ["sweep.serial=true", "sweep.progress=false"]
# A two-knob table: a value knob on a deterministic scenario and a group knob on a noisy one.
KNOBS = ("sensitivity.knobs=["
         "{knob:policy.rpc_us,from:16,to:1000,scenario:raytrace2x,metric:vm_runtime_all_s,"
         "expect:up},"
         "{knob:cells,from:cells_8,to:cells_1,scenario:campaign,metric:vms_lost_per_fault,"
         "expect:up}]")
REDUCED = {
    "overhead": ["sim.duration_s=8", "sim.replicates=2"],
    "containment_overhead": ["workload=raytrace,mix_default", "sim.duration_s=30",
                             "sim.replicates=2"],
    "cpu_balance": ["policy.periodic_period_ms=100", "sim.duration_s=30", "sim.replicates=2"],
    "memory_borrowing": ["policy.borrow_trigger_mb=16", "sim.replicates=2"],
    "paging": ["machine.memory_per_node_mb=256,512", "sim.duration_s=20", "sim.replicates=1"],
    "recovery": ["machine.memory_per_node_mb=256,512", "machine.nodes=16,32",
                 "sim.replicates=1"],
    "containment": ["sim.duration_s=30", "sim.replicates=3"],
    "vs_partitioning": ["cells=cells_8", "sim.duration_s=30", "sim.replicates=2"],
    "sensitivity": [KNOBS, "sim.duration_s=20", "sim.replicates=2"],
}


def run_all(root: Path) -> Path:
    """Run every reduced study into ``root``; returns ``root``."""
    from disco.framework.plan import make_plan
    from disco.framework.sweep import run_sweep

    sys.path.insert(0, str(ROOT / "experiments"))
    sys.path.insert(0, str(ROOT / "analysis"))
    import one_at_a_time
    import reproduce

    for study, extra in REDUCED.items():
        overrides = [*FAST, *extra, f"results_dir={root}"]
        if study == "sensitivity":
            outcome = one_at_a_time.run(one_at_a_time.plan_knobs(study, overrides))
        else:
            plan = make_plan([f"+experiment={study}", *overrides])
            outcome = run_sweep(plan)
            if study == "cpu_balance":  # the report's schedule figure, as make run traces it
                reproduce.trace_schedule_pair((plan, None, []))
        assert outcome.failed == 0, study
    return root
