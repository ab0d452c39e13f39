"""Limits: valid but absurd configs are refused before anything is allocated, with the reason
and the way to raise the limit; arithmetic that would overflow is refused the same way; a
hand-built config that ``validate()`` cannot make sense of is a ConfigError, not a TypeError."""

from __future__ import annotations

import time
import tracemalloc

import pytest

from disco import ConfigError, SimConfig
from disco.cli import main
from disco.config import MachineConfig, VMGroup, WorkloadConfig, limit_paths

HUGE_INT = "1" + "0" * 400  # beyond a float's range

# The cases: (overrides, the key named, what the limit says)
ABSURD = [
    (["machine.nodes=10000000"], "machine.nodes", "at most 4096"),
    (["sim.sample_interval_s=1e-6"], "sim.sample_interval_s", "at least 0.001"),
    (["faults.node_rate=1e9"], "faults.node_rate", "at most 10"),
    (["workload.vms.0.count=1000000"], "workload.vms[0].count", "at most 10000"),
    (["-m", "sim.replicates=1000000"], "sim.replicates", "at most 10000"),
    (["policy.periodic_period_ms=1e-9"], "policy.periodic_period_ms", "at least 0.1"),
    (["policy.memory_tick_ms=1e-9"], "policy.memory_tick_ms", "at least 0.1"),
    (["policy.time_slice_ms=1e-9"], "policy.time_slice_ms", "at least 0.01"),
    (["machine.hop_latency_ns=1e308"], "machine.hop_latency_ns", "at most 1e+09"),
    ([f"machine.nodes={HUGE_INT}"], "machine.nodes", "(401 digits)"),
    ([f"sim.duration_s={HUGE_INT}"], "sim.duration_s", "beyond the range of a float"),
    # within each field's limit, past the run's event budget together
    (["sim.duration_s=100000", "policy.time_slice_ms=0.5"], "policy.time_slice_ms",
     "clocked events"),
    (["-m", "sim.seed=range(0,200000)"], "sweep.max_runs", "200000 runs"),
    (["-m", "sim.seed=range(0,2000)", "sim.replicates=100"], "sweep.max_runs", "200000 runs"),
]


@pytest.mark.parametrize(("overrides", "key", "says"), ABSURD,
                         ids=[" ".join(o)[:40] for o, _, _ in ABSURD])
def test_absurd_sizes_are_rejected_before_allocation(tmp_path, capsys, overrides, key, says):
    t0 = time.perf_counter()
    assert main(["--dry-run", *overrides, f"results_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert key in err and says in err, err
    assert "limit" in err or "float" in err
    assert time.perf_counter() - t0 < 10  # refused, not attempted
    assert not any(tmp_path.iterdir())


def test_absurd_sizes_allocate_nothing_before_the_refusal():
    tracemalloc.start()
    try:
        for data in ({"machine": {"nodes": 10_000_000}},
                     {"workload": {"vms": [{"count": 1_000_000}]}},
                     {"sim": {"replicates": 1_000_000}}):
            with pytest.raises(ConfigError):
                SimConfig.from_dict(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5 * 2**20, peak


def test_a_limit_is_raised_explicitly_and_the_run_config_replays(tmp_path, capsys):
    from disco.framework.plan import make_plan

    over = ["machine.nodes=8192", "cells.count=8"]
    assert main(["--dry-run", *over, f"results_dir={tmp_path}"]) == 2
    assert "+limits.machine.nodes=8192" in capsys.readouterr().err  # the message says how
    plan = make_plan([*over, "+limits.machine.nodes=8192"])
    cfg = plan.runs[0].config
    assert cfg["machine"]["nodes"] == 8192 and cfg["limits"] == {"machine": {"nodes": 8192}}
    assert SimConfig.from_dict(cfg).machine.nodes == 8192  # config.yaml validates on its own
    # a budget, and a lower limit (the new smallest value)
    make_plan(["sim.duration_s=100000", "policy.time_slice_ms=0.5", "+limits.events=1e10"])
    make_plan(["policy.periodic_period_ms=0.01", "+limits.policy.periodic_period_ms=0.01"])
    with pytest.raises(ConfigError, match="at least 0.05"):
        make_plan(["policy.periodic_period_ms=0.01", "+limits.policy.periodic_period_ms=0.05"])


def test_a_raised_limit_must_name_a_limit():
    with pytest.raises(ConfigError, match="did you mean limits.machine.nodes"):
        SimConfig.from_dict({"limits": {"machine": {"node": 5}}})
    with pytest.raises(ConfigError, match="limits.events"):
        SimConfig.from_dict({"limits": {"events": -1}})
    assert {"machine.nodes", "workload.vms.count", "sim.replicates",
            "workload.profiles.burst_ms"} <= set(limit_paths())


def test_every_numeric_field_has_an_upper_bound():
    """Those without a limit of their own get the magnitude cap: no finite typo overflows."""
    with pytest.raises(ConfigError, match="overflow"):
        SimConfig.from_dict({"policy": {"rpc_us": 1e200}})
    with pytest.raises(ConfigError, match="overflow"):
        SimConfig.from_dict({"workload": {"profiles": {"pmake": {"io_ms": 1e300}}}})


@pytest.mark.parametrize("build", [
    lambda: SimConfig(machine=MachineConfig(nodes="16")),  # type: ignore[arg-type]
    lambda: SimConfig(machine={"nodes": 4}),  # type: ignore[arg-type]
    lambda: SimConfig(workload=WorkloadConfig(vms=[{"count": 1}])),  # type: ignore[list-item]
    lambda: SimConfig(workload=WorkloadConfig(vms=None)),  # type: ignore[arg-type]
    lambda: SimConfig(policy=None),  # type: ignore[arg-type]
    lambda: SimConfig(workload=WorkloadConfig(vms=[VMGroup(count=2.5)])),  # type: ignore[arg-type]
    lambda: SimConfig(limits=[1]),  # type: ignore[arg-type]
], ids=["str-for-int", "dict-section", "dict-item", "none-list", "none-section", "float-count",
        "limits-list"])
def test_validate_on_a_hand_built_config_raises_config_error(build):
    with pytest.raises(ConfigError):
        build().validate()
