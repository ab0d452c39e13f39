"""Fault containment: a hardware fault kills exactly the VMs that depended on the failed cell
(PAPER.md, Faults and recovery: 1000 injections, every one contained)."""

from __future__ import annotations

import pytest
from conftest import small_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from parts import Footprint, world

from disco import SimConfig
from disco.runner import Simulation, build
from disco.vmm.bus import Bus
from disco.vmm.containment import Containment


def _run(cfg: SimConfig, bus: Bus | None = None, probe_at: float | None = None, probe=None):
    """Build (with observers already on ``bus``), run; ``probe(sim)`` runs just after a fault
    at ``probe_at`` (the fault was scheduled first, so it has already struck)."""
    sim = build(cfg, bus)
    if probe is not None:
        sim.loop.at(probe_at, probe, sim)
    sim.run()
    return sim, sim.metrics()


class Oracle:
    """An independent record of the dependency rule: home cells (monitor data), cells with a
    VCPU now, cells a VCPU left less than ``data_follow_s`` ago (never forgotten when it is
    null), and the cells holding the VM's memory. It watches through the bus, subscribed
    before the model's own subscribers, so at ``cell_failed`` it sees the memory as it was
    when the cell died."""

    def __init__(self, follow: float | None) -> None:
        self.follow = follow
        self.left: dict[tuple[int, int], float] = {}  # (vm, cell) -> last time a VCPU left
        self.bus = Bus()
        self.sim: Simulation | None = None
        self.bus.on_vcpu_moved(self._moved)

    def _moved(self, v, src, dst):
        if src.cell != dst.cell:
            self.left[(v.vm.id, src.cell)] = self.sim.loop.now

    def run(self, cfg: SimConfig):
        self.sim = sim = build(cfg, self.bus)
        sim.run()
        return sim, sim.metrics()

    def dependents(self, cells: set[int]) -> set[int]:
        sim = self.sim
        now = sim.loop.now
        out = set()
        for vm in sim.vms:
            if vm.status != "running":
                continue
            tied = set(vm.home_cells) | set(vm.cell_vcpus) | sim.guest.memory_cells(vm)
            for (vm_id, cell), when in self.left.items():
                if vm_id == vm.id and (self.follow is None or when + self.follow > now):
                    tied.add(cell)
            if tied & cells:
                out.add(vm.id)
        return out


def _lost(sim) -> set[int]:
    # A VM that never arrived (no live cells could hold it) is not a fault's victim.
    return {vm.id for vm in sim.vms if vm.status == "lost" and vm.home_cells}


@st.composite
def machines_and_mixes(draw):
    nodes = draw(st.sampled_from([2, 4, 8]))
    cpn = draw(st.sampled_from([1, 2]))
    cells = draw(st.sampled_from([c for c in (1, 2, 4, 8) if nodes % c == 0]))
    cpus = nodes * cpn
    groups = []
    for _ in range(draw(st.integers(1, 4))):
        groups.append({
            "workload": draw(st.sampled_from(["raytrace", "pmake", "database", "webserver"])),
            "count": draw(st.integers(1, 3)),
            "vcpus": draw(st.integers(1, min(cpus, 4))),
            "work_s": draw(st.floats(0.3, 2.0)),
            "arrival_s": draw(st.floats(0.0, 1.0)),
            "spacing_s": draw(st.floats(0.0, 0.5)),
            "memory_mb": draw(st.sampled_from([16, 64, 128, 256])),
        })
    kind = draw(st.sampled_from(["node", "router", "link", "firmware"]))
    node = draw(st.integers(0, nodes - 1))
    at = draw(st.floats(0.05, 2.0))
    seed = draw(st.integers(0, 1000))
    follow = draw(st.sampled_from([None, 0.0, 0.05, 0.3]))
    policy = draw(st.sampled_from([{}, {"periodic_period_ms": 20.0, "periodic_threshold": 0.5}]))
    return {
        "machine": {"nodes": nodes, "cpus_per_node": cpn,
                    "memory_per_node_mb": draw(st.sampled_from([64, 128, 512]))},
        "cells": {"count": cells},
        "workload": {"vms": groups},
        "policy": policy,
        "sim": {"duration_s": 4.0, "seed": seed, "check_invariants": True},
        "faults": {"scheduled": [{"type": kind, "node": node, "at_s": at}],
                   "data_follow_s": follow},
    }


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(machines_and_mixes())
def test_a_cell_fault_kills_exactly_the_vms_that_depended_on_it(data):
    cfg = SimConfig.from_dict(data)
    oracle = Oracle(cfg.faults.data_follow_s)
    seen: dict[str, set[int]] = {}

    def snapshot(cell):
        if not seen:
            rec = oracle.sim.recovery.records[0]
            seen["cells"] = set(rec.cells)
            seen["dependent"] = oracle.dependents(set(rec.cells))

    oracle.bus.on_cell_failed(snapshot)
    sim, m = oracle.run(cfg)
    lost = _lost(sim)
    if not seen:  # every VM finished before the fault: the run ended first
        assert not lost and m["faults_injected"] == 0
        return
    assert lost == seen["dependent"]
    assert m["faults_injected"] == 1 and m["faults_contained"] == 1
    assert m["vms_lost"] == m["vms_lost_dependent"] == len(lost)
    # No VM outside the failed cells was touched, and none runs on there afterwards.
    for vm in sim.vms:
        if vm.status == "running":
            assert not seen["cells"] & set(vm.cell_vcpus)
    row = sim.report().tables["faults"]
    assert row["contained"] == [True] and row["vms_lost"] == [len(lost)]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(machines_and_mixes(), st.floats(0.0, 0.6), st.integers(0, 7),
       st.sampled_from(["node", "router", "link", "firmware"]))
def test_two_faults_even_during_recovery_kill_exactly_their_dependents(data, gap, node, kind):
    first = data["faults"]["scheduled"][0]
    second = {"type": kind, "node": node % data["machine"]["nodes"],
              "at_s": first["at_s"] + gap}
    data["faults"]["scheduled"].append(second)
    cfg = SimConfig.from_dict(data)
    oracle = Oracle(cfg.faults.data_follow_s)
    expected: dict[int, set[int]] = {}  # fault index -> dependents when it struck

    def snapshot(cell):
        for i, rec in enumerate(oracle.sim.recovery.records):  # faults at one instant: in order
            if i not in expected and rec.cells:
                taken = set().union(*expected.values()) if expected else set()
                expected[i] = oracle.dependents(set(rec.cells)) - taken

    oracle.bus.on_cell_failed(snapshot)
    sim, m = oracle.run(cfg)
    lost = _lost(sim)
    assert lost == set().union(*expected.values()) if expected else not lost
    assert m["faults_contained"] == m["faults_injected"]
    assert m["vms_lost"] == m["vms_lost_dependent"] == len(lost)
    table = sim.report().tables["faults"]
    for i, n in enumerate(table["vms_lost"]):
        assert n == len(expected.get(i, ()))
    if m["faults_injected"] == 2 and table["cells"][1] and gap < 0.05:
        assert m["recovery_restarts"] == 1


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(machines_and_mixes(), st.floats(0.2, 2.0), st.booleans(),
       st.sampled_from(["cellular_disco", "disco_one_cell", "fixed_partition", "smp_os"]),
       st.booleans())
def test_many_random_faults_keep_the_invariants_and_are_all_contained(data, rate, lazy, policy,
                                                                      gang):
    per_cell = data["machine"]["nodes"] // data["cells"]["count"] * data["machine"]["cpus_per_node"]
    if policy == "fixed_partition" and any(g["vcpus"] > per_cell for g in data["workload"]["vms"]):
        policy = "cellular_disco"
    data["policy"] = {**data["policy"], "name": policy, "gang": gang}
    data["faults"] = {"node_rate": rate / 4, "router_rate": rate / 4, "link_rate": rate / 4,
                      "firmware_rate": rate / 4, "software_rate": rate / 4,
                      "restart_lost": True, "cell_repair_s": 0.5, "smp_reboot_s": 0.5,
                      "kill_policy": "lazy" if lazy else "early",
                      "evacuate": [{"cell": 0, "at_s": 0.3}]}
    sim, m = _run(SimConfig.from_dict(data))
    # A fault whose recovery the end of the run cut short is censored, not contained.
    assert m["faults_contained"] == m["faults_injected"] - m["faults_censored"]
    assert m["vms_lost"] <= m["vms_lost_dependent"]


def _eight_cells(extra=None):
    data = {
        "workload": {"vms": [
            {"workload": "raytrace", "count": 8, "vcpus": 4, "work_s": 3.0},
            {"workload": "pmake", "count": 4, "vcpus": 2, "work_s": 3.0, "arrival_s": 0.2},
        ]},
        "policy": {"periodic_balancer": False},
        "sim": {"duration_s": 15.0, "check_invariants": True},
        "faults": {"scheduled": [{"type": "node", "node": 5, "at_s": 1.0}]},
    }
    if extra:
        data.update(extra)
    return SimConfig.from_dict(data)


def test_eight_cells_lose_only_the_dependents_and_one_cell_loses_every_vm():
    mon8, m8 = _run(_eight_cells())
    assert 0 < m8["vms_lost"] < len(mon8.vms)
    assert m8["vms_lost"] == m8["vms_lost_dependent"] and m8["faults_contained"] == 1
    assert all(vm.status == "done" for vm in mon8.vms if vm.status != "lost")
    mon1, m1 = _run(_eight_cells({"policy": {"name": "disco_one_cell"}}))
    running_at_fault = [vm for vm in mon1.vms if vm.arrival_s <= 1.0]
    assert m1["vms_lost"] == len(running_at_fault) == len(mon1.vms)
    assert m1["faults_contained"] == 1


def _borrow_config(kill_policy="early", touch_rate_per_s=10.0):
    """Four cells of one node (128 MB, 2 CPUs each). VM 0 (192 MB, home cell 0) must borrow,
    from cell 1 (nearest) first; VM 2 runs in cell 1; VM 1 in cell 2 has nothing there. Cell
    1 fails at 1 s: VM 0 depends on it by its memory alone."""
    return SimConfig.from_dict({
        "machine": {"nodes": 4, "cpus_per_node": 2, "memory_per_node_mb": 128},
        "cells": {"count": 4},
        "workload": {"vms": [
            {"workload": "raytrace", "vcpus": 2, "memory_mb": 192, "work_s": 3.0, "home_cell": 0},
            {"workload": "raytrace", "vcpus": 2, "memory_mb": 64, "work_s": 3.0, "home_cell": 2},
            {"workload": "raytrace", "vcpus": 2, "memory_mb": 32, "work_s": 3.0, "home_cell": 1},
        ]},
        "policy": {"periodic_balancer": False},
        "sim": {"duration_s": 10.0, "check_invariants": True},
        "faults": {"kill_policy": kill_policy, "touch_rate_per_s": touch_rate_per_s,
                   "scheduled": [{"type": "node", "cell": 1, "at_s": 1.0}]},
    })


def test_a_vm_that_borrowed_from_the_failed_cell_dies_one_that_never_touched_it_lives():
    before = {}

    def look(sim):
        before.update({vm.id: sim.guest.memory_cells(vm) for vm in sim.vms})

    sim, m = _run(_borrow_config(), probe_at=0.99, probe=look)
    assert 1 in before[0] and 1 not in before[1]  # VM 0 borrowed from cell 1, VM 1 did not
    assert [vm.status for vm in sim.vms] == ["lost", "done", "lost"]
    assert m["faults_contained"] == 1 and m["vms_lost"] == m["vms_lost_dependent"] == 2


def test_lazy_kill_lets_a_memory_only_dependent_run_until_it_touches_a_bad_line():
    sim, m = _run(_borrow_config("lazy", touch_rate_per_s=5.0))
    assert [vm.status for vm in sim.vms] == ["lost", "done", "lost"]
    # VM 2 (VCPUs on the failed cell) died at recovery; the borrower ran on for a while.
    assert sim.vms[0].finish_s > sim.vms[2].finish_s + 0.01
    assert m["faults_contained"] == 1


def test_lazy_kill_spares_a_borrower_that_finishes_before_touching_bad_memory():
    sim, m = _run(_borrow_config("lazy", touch_rate_per_s=1e-6))
    assert [vm.status for vm in sim.vms] == ["done", "done", "lost"]
    assert m["vms_lost"] == 1 and m["vms_lost_dependent"] == 2 and m["faults_contained"] == 1


LIGHT_MIX = {"vms": [
    {"workload": "raytrace", "count": 2, "vcpus": 2, "work_s": 1.5},
    {"workload": "pmake", "count": 2, "vcpus": 2, "work_s": 1.5, "arrival_s": 0.1},
    {"workload": "webserver", "count": 2, "vcpus": 1, "work_s": 1.0, "arrival_s": 0.2,
     "spacing_s": 0.5},
]}


def test_a_guest_os_crash_kills_only_its_vm():
    cfg = small_config({"workload": LIGHT_MIX,
                        "faults": {"scheduled": [{"type": "software", "vm": 1, "at_s": 0.5}]}})
    mon, m = _run(cfg)
    assert [vm.id for vm in mon.vms if vm.status == "lost"] == [1]
    assert m["faults_software"] == 1 and m["faults_hardware"] == 0
    assert m["vms_lost"] == 1 and m["faults_contained"] == 1
    assert m["recovery_pause_s"] == 0.0


def test_random_faults_are_deterministic_and_every_one_is_contained():
    cfg = small_config({"workload": LIGHT_MIX, "faults": {"node_rate": 0.05, "router_rate": 0.05,
                                   "software_rate": 0.05, "link_rate": 0.05,
                                   "firmware_rate": 0.05, "restart_lost": True}})
    cfg.sim.duration_s = 20.0
    cfg.cells.count = 4
    cfg.faults.cell_repair_s = 2.0
    _, a = _run(cfg)
    _, b = _run(cfg)
    a.pop("wall_time_s", None)
    b.pop("wall_time_s", None)
    assert repr(a) == repr(b)  # repr: NaN equals NaN
    assert a["faults_injected"] >= 3
    assert a["faults_contained"] == a["faults_injected"] - a["faults_censored"]


def test_invariant_checker_catches_a_vm_left_on_a_failed_cell():
    sim, _ = _run(_eight_cells())
    vm = next(vm for vm in sim.vms if vm.status == "done")
    vm.status = "running"
    vm.cell_vcpus[sim.recovery.records[0].cells[0]] = 1
    with pytest.raises(AssertionError, match="failed cell"):
        sim.checker().check_faults()


# -- the containment rule alone ------------------------------------------------------------

def test_the_rule_alone_a_vm_depends_on_its_vcpus_its_monitor_data_and_its_memory():
    w = world(nodes=3, cpus_per_node=1, nodes_per_cell=1)
    vm = w.queue(w.vm(1), [0])
    rule = Containment(w.loop, w.state, Footprint({vm.id: {2}}), data_follow_s=0.5)
    w.bus.on_vcpu_moved(rule.on_vcpu_moved)
    rule.on_vm_arrived(vm)
    assert rule.dependency(vm, [0]) == "vcpu"
    assert rule.dependency(vm, [2]) == "memory"  # its footprint says it holds memory there
    assert rule.dependency(vm, [1]) is None
    migrator = w.migrator()
    migrator.migrate(vm.vcpus[0], w.cpus[1])
    migrator.migrate(vm.vcpus[0], w.cpus[2])
    assert rule.dependency(vm, [1]) == "data"  # the VCPU's data left on cell 1 ...
    assert rule.dependency(vm, [0]) == "data"  # ... and its home cell's stays
    w.loop.run(until=0.6)
    assert rule.dependency(vm, [1]) is None  # ... has followed it after data_follow_s
    assert rule.dependents([1]) == [] and rule.dependents([2]) == [vm]
