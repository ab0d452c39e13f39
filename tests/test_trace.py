"""The trace of a run (disco/trace.py): it changes nothing, it parses, and what it shows is
what the run did (slices inside the run, one VCPU per CPU at a time, gangs starting together,
busy time matching the accounts, a fault's recovery phases in order)."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path

import pytest
from conftest import small_config

from disco import simulate
from disco.framework.compose import compose
from disco.runner import build
from disco.trace import CELL_PID0, MACHINE_PID, VMS_PID, TraceOptions, Tracer, load

# Raytrace never blocks (VMs 0-2), Pmake blocks often (VMs 3-5) and so shifts the CPUs' slices.
MIX = {"workload": {"vms": [
    {"workload": "raytrace", "count": 3, "vcpus": 4, "memory_mb": 128, "work_s": 2.0},
    {"workload": "pmake", "count": 3, "vcpus": 2, "memory_mb": 128, "work_s": 2.0}]}}
RAYTRACE_VMS = {0, 1, 2}


def _digest(result) -> str:
    metrics = {k: v for k, v in result.metrics.items() if k != "wall_time_s"}
    blob = json.dumps([metrics, result.timeline, result.vms, result.tables], sort_keys=True,
                      default=repr)
    return hashlib.sha256(blob.encode()).hexdigest()


def _slices(trace: dict, pid_filter=lambda pid: pid >= CELL_PID0) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = defaultdict(list)
    for e in trace["traceEvents"]:
        if e["ph"] == "X" and pid_filter(e["pid"]):
            out[e["tid"]].append(e)
    for events in out.values():
        events.sort(key=lambda e: e["ts"])
    return out


@pytest.mark.parametrize("overrides", [
    ["sim.duration_s=3"],
    ["policy=gang_off", "sim.duration_s=2"],
    ["faults=campaign", "sim.duration_s=12"],
    ["+experiment=paging", "machine.memory_per_node_mb=128", "sim.duration_s=4"],
    ["faults=evacuate", "sim.duration_s=8"],
    ["policy=smp_os", "faults=one_node", "sim.duration_s=12"],
], ids=["default", "gang_off", "faults", "paging", "evacuate", "smp_fault"])
def test_tracing_on_and_off_give_bit_identical_results(tmp_path, overrides):
    cfg = compose(overrides)
    plain = simulate(cfg)
    traced = simulate(cfg, trace=TraceOptions(tmp_path / "t.json"))
    assert _digest(traced) == _digest(plain)
    assert load(tmp_path / "t.json")["traceEvents"]


def test_tracing_off_leaves_no_hook_in_the_model():
    sim = build(small_config())
    assert type(sim.execution).__name__ == "Execution"
    for part in (sim.gang, sim.idle, sim.periodic, sim.recovery):
        assert type(part.trace).__name__ == "TraceHooks"


def test_the_trace_parses_and_names_every_cpu_track(tmp_path):
    cfg = small_config({"sim": {"duration_s": 2.0}})
    simulate(cfg, trace=TraceOptions(tmp_path / "t.json.gz"))
    raw = (tmp_path / "t.json.gz").read_bytes()
    assert raw[:2] == b"\x1f\x8b"  # gzip, which both viewers open as is
    trace = load(tmp_path / "t.json.gz")
    assert trace["otherData"]["cpus"] == 8
    phases = {e["ph"] for e in trace["traceEvents"]}
    assert {"X", "M", "C"} <= phases
    for e in trace["traceEvents"]:
        assert e["ph"] in {"X", "M", "C", "i"}
        assert isinstance(e["pid"], int) and isinstance(e["name"], str)
        if e["ph"] != "M":
            assert isinstance(e["ts"], int | float)
    names = {(e["pid"], e.get("tid")): e["args"]["name"] for e in trace["traceEvents"]
             if e["ph"] == "M" and e["name"] == "thread_name"}
    for cpu in range(8):
        assert names[(CELL_PID0 + cpu // 4, cpu)] == f"node {cpu // 2} / cpu {cpu}"
    procs = {e["pid"]: e["args"]["name"] for e in trace["traceEvents"]
             if e["ph"] == "M" and e["name"] == "process_name"}
    assert procs[MACHINE_PID] == "machine" and procs[CELL_PID0 + 1] == "cell 1"
    assert VMS_PID in procs


def test_cpu_slices_lie_within_the_run_and_never_overlap(tmp_path):
    cfg = small_config({"sim": {"duration_s": 3.0}})
    result = simulate(cfg, trace=TraceOptions(tmp_path / "t.json"))
    end_us = result.metrics["sim_time_s"] * 1e6
    tracks = _slices(load(tmp_path / "t.json"))
    assert sorted(tracks) == list(range(8))
    for events in tracks.values():
        prev_end = 0.0
        for e in events:
            assert e["dur"] > 0 and 0.0 <= e["ts"] and e["ts"] + e["dur"] <= end_us + 1e-3
            assert e["ts"] >= prev_end - 2e-3, "two VCPUs on one CPU at once"  # ns rounding
            prev_end = e["ts"] + e["dur"]


def test_slice_time_per_cell_equals_the_cells_busy_time_in_the_accounts(tmp_path):
    cfg = small_config({"sim": {"duration_s": 3.0}})
    tracer = Tracer(TraceOptions(tmp_path / "t.json"))
    sim = build(cfg, tracer=tracer)
    sim.run()
    sim.execution.flush()
    tracer.close()
    busy = [sim.acct.guest[c] + sim.acct.spin[c] + sim.acct.overhead[c] for c in range(2)]
    tracks = _slices(load(tmp_path / "t.json"))
    traced = [sum(e["dur"] for cpu in range(4 * c, 4 * c + 4) for e in tracks[cpu]) * 1e-6
              for c in range(2)]
    assert busy[0] > 1.0 and busy[1] > 1.0
    assert traced == pytest.approx(busy, rel=1e-6)


def _gang_aligned(trace: dict, vms: set[int], tolerance_us: float) -> float:
    """Share of the slice starts of ``vms`` at which every sibling starts too (within
    ``tolerance_us``): 1.0 when their gangs always start whole."""
    starts: dict[int, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for events in _slices(trace).values():
        for e in events:
            if e["args"]["vm"] in vms:
                starts[e["args"]["vm"]][e["args"]["vcpu"]].append(e["ts"])
    hits = total = 0
    for vcpus in starts.values():
        for i, ts in vcpus.items():
            for t in ts:
                total += 1
                hits += all(any(abs(u - t) <= tolerance_us for u in other)
                            for j, other in vcpus.items() if j != i)
    return hits / total


@pytest.mark.parametrize("gang", [True, False])
def test_a_gang_scheduled_vms_slices_start_together(tmp_path, gang):
    """A Raytrace VM never blocks, so with gang scheduling each of its dispatches starts all
    four VCPUs at one instant (the RPC cost is paid inside the slices); without it, the CPUs'
    slices, shifted by the Pmake VMs sharing them, start its VCPUs apart."""
    cfg = small_config({**MIX, "policy": {"gang": gang}, "sim": {"duration_s": 2.0}})
    simulate(cfg, trace=TraceOptions(tmp_path / "t.json"))
    trace = load(tmp_path / "t.json")
    aligned = _gang_aligned(trace, RAYTRACE_VMS, trace["otherData"]["rpc_us"])
    if gang:
        assert aligned == 1.0
    else:
        assert aligned < 0.5


def test_gang_preemptions_and_vm_states_appear(tmp_path):
    cfg = small_config({**MIX, "sim": {"duration_s": 2.0}})
    result = simulate(cfg, trace=TraceOptions(tmp_path / "t.json"))
    trace = load(tmp_path / "t.json")
    preempted = [e for e in trace["traceEvents"] if e["name"] == "gang preempted"]
    assert len(preempted) == result.metrics["gang_preemptions"] > 0
    states = {e["name"] for tid, events in _slices(trace, lambda p: p == VMS_PID).items()
              for e in events}
    assert states == {"running", "waiting", "descheduled"}


def test_balancer_moves_are_named_by_balancer(tmp_path):
    # One cell: with issue 17's costed steals and containment price the default 8 cells move
    # nothing in 14 s; on one cell both balancers act (about 1350 steals, 200 moves).
    cfg = compose(["sim.duration_s=14", "cells=cells_1"])
    result = simulate(cfg, trace=TraceOptions(tmp_path / "t.json"))
    names = [e["name"] for e in load(tmp_path / "t.json")["traceEvents"] if e["ph"] == "i"]
    assert names.count("idle steal") == result.metrics["balancer_moves_idle"] > 0
    assert names.count("periodic move") == result.metrics["balancer_moves_periodic"] > 0


def test_a_fault_appears_with_its_recovery_phases_in_order(tmp_path):
    cfg = compose(["faults=one_node", "sim.duration_s=12"])
    simulate(cfg, trace=TraceOptions(tmp_path / "t.json"))
    trace = load(tmp_path / "t.json")
    events = [e for e in trace["traceEvents"] if e["pid"] == MACHINE_PID and e.get("tid") == 1]
    fault = [e for e in events if e["ph"] == "i" and e["name"] == "fault"]
    assert len(fault) == 1 and fault[0]["ts"] == pytest.approx(10e6)
    phases = sorted((e for e in events if e["ph"] == "X"), key=lambda e: e["ts"])
    assert [e["name"] for e in phases] == ["detection", "diagnosis", "agreement", "unwedge",
                                           "termination"]
    t = fault[0]["ts"]
    for e in phases:  # back to back from the fault
        assert e["ts"] == pytest.approx(t, abs=1e-3)
        t = e["ts"] + e["dur"]
    assert phases[-1]["args"]["vms_killed"]
    killed = [e for e in trace["traceEvents"] if e["name"] == "VM killed"]
    assert len(killed) == len(phases[-1]["args"]["vms_killed"])
    assert any(e["name"] == "cell failed" for e in trace["traceEvents"])


def test_a_window_keeps_only_what_overlaps_it(tmp_path):
    cfg = small_config({"sim": {"duration_s": 3.0}})
    simulate(cfg, trace=TraceOptions(tmp_path / "t.json", window=(1.0, 1.5)))
    timed = [e for e in load(tmp_path / "t.json")["traceEvents"] if e["ph"] != "M"]
    assert timed
    for e in timed:
        assert 1e6 - 1e-3 <= e["ts"] and e["ts"] + e.get("dur", 0) <= 1.5e6 + 1e-3


def test_a_failed_run_leaves_no_partial_trace(tmp_path):
    tracer = Tracer(TraceOptions(tmp_path / "t.json"))
    build(small_config(), tracer=tracer)
    tracer.abort()
    assert not list(Path(tmp_path).iterdir())


# -- the framework: trace keys, rows, the cache ------------------------------------------------

@pytest.fixture
def _private_sweep_cache(tmp_path_factory, monkeypatch):
    """Keep the re-run manifests (disco/framework/fastpath.py) out of ~/.cache."""
    monkeypatch.setenv("DISCO_CACHE_DIR", str(tmp_path_factory.mktemp("sweep_cache")))


SWEEP = ["machine.nodes=4", "cells.count=2", "sim.duration_s=1", "sweep.progress=false",
         "ray.address=none"]


def _rows(results: Path) -> list[dict]:
    import polars as pl

    return pl.read_parquet(results / "default" / "runs.parquet").to_dicts()


@pytest.mark.usefixtures("_private_sweep_cache")
def test_trace_runs_first_traces_replicate_zero_and_the_row_records_the_path(tmp_path):
    from disco.cli import main

    assert main(["-m", *SWEEP, "sim.replicates=2", f"results_dir={tmp_path}",
                 "trace.runs=first"]) == 0
    rows = sorted(_rows(tmp_path), key=lambda r: r["replicate"])
    assert Path(rows[0]["trace_path"]).name == "trace.json"
    assert load(rows[0]["trace_path"])["traceEvents"]
    assert rows[1].get("trace_path") is None
    assert not (Path(rows[0]["trace_path"]).parent.parent / rows[1]["key"] / "trace.json").exists()


@pytest.mark.usefixtures("_private_sweep_cache")
def test_a_trace_is_not_in_the_run_key_but_the_cache_still_writes_one(tmp_path):
    from disco.cli import main

    assert main([*SWEEP, f"results_dir={tmp_path}"]) == 0
    (plain,) = _rows(tmp_path)
    assert plain.get("trace_path") is None
    assert main([*SWEEP, f"results_dir={tmp_path}", "trace=true"]) == 0
    (traced,) = _rows(tmp_path)
    assert traced["key"] == plain["key"]  # the same run, run again to write its trace
    assert traced["cpu_utilization"] == plain["cpu_utilization"]
    first = Path(traced["trace_path"]).stat().st_mtime_ns
    assert main([*SWEEP, f"results_dir={tmp_path}", "trace=true"]) == 0  # complete: skipped
    assert Path(traced["trace_path"]).stat().st_mtime_ns == first
    assert main([*SWEEP, f"results_dir={tmp_path}", "trace=true", "trace.window=[0.2,0.4]"]) == 0
    (windowed,) = _rows(tmp_path)
    assert load(windowed["trace_path"])["otherData"]["window_s"] == [0.2, 0.4]
    assert main([*SWEEP, f"results_dir={tmp_path}", "trace.gzip=true", "trace=true"]) == 0
    assert Path(_rows(tmp_path)[0]["trace_path"]).name == "trace.json.gz"


@pytest.mark.parametrize("override, key", [
    ("trace=maybe", "trace"), ("trace.runs=some", "trace.runs"),
    ("trace.window=[3,1]", "trace.window"), ("trace.counter_ms=0", "trace.counter_ms"),
    ("trace.window=abc", "trace.window"),
])
def test_bad_trace_keys_exit_2_naming_key_and_value(tmp_path, capsys, override, key):
    from disco.cli import main

    assert main([*SWEEP, f"results_dir={tmp_path}", override]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert key in err[0] and override.split("=", 1)[1].strip("[]").split(",")[0] in err[0]
    assert not (tmp_path / "default").exists()


def test_tracing_needs_the_default_task(tmp_path, capsys):
    from disco.cli import main

    assert main([*SWEEP, f"results_dir={tmp_path}", "trace=true",
                 "sweep.task=framework_helpers.tasks:slow"]) == 2
    assert "sweep.task" in capsys.readouterr().err


# -- analysis/schedule.py ----------------------------------------------------------------------

def test_schedule_py_draws_a_non_empty_png_of_a_traced_run(tmp_path):
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    run = tmp_path / "run"
    cfg = compose(["faults=one_node", "machine.nodes=8", "cells.count=4", "sim.duration_s=11"])
    simulate(cfg, trace=TraceOptions(run / "trace.json", window=(9.5, 11.0)))
    out = tmp_path / "gantt.png"
    proc = subprocess.run([sys.executable, str(root / "analysis" / "schedule.py"), str(run),
                           "--from", "9.8", "--to", "10.6", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    sys.path.insert(0, str(root / "analysis"))
    import schedule

    assert schedule.main([str(tmp_path), "--from", "1"]) == 2  # no trace there
    assert schedule.main([str(run), "--from", "3", "--to", "2"]) == 2  # an empty window
