"""Recovery: its cost model, faults during recovery, baselines, restarts, whole-VM migration
and evacuation (PAPER.md, Faults and recovery)."""

from __future__ import annotations

import dataclasses
import math

import pytest
from conftest import merge, small_config
from parts import Footprint, world

from disco import SimConfig, simulate
from disco.config import FaultsConfig
from disco.engine import RandomStreams
from disco.hardware import Machine
from disco.hardware.faults import hardware_fault
from disco.runner import build
from disco.vmm.cell_lifecycle import CellLifecycle
from disco.vmm.containment import Containment
from disco.vmm.placement import Placement
from disco.vmm.recovery import Recovery, RecoveryCost


def _recovery_ms(nodes: int = 16, memory_mb: int = 512, cells: int = 8) -> float:
    cfg = SimConfig.from_dict({
        "machine": {"nodes": nodes, "memory_per_node_mb": memory_mb},
        "cells": {"count": cells},
        "workload": {"vms": [{"workload": "raytrace", "count": cells, "vcpus": 2,
                              "work_s": 2.0}]},
        "sim": {"duration_s": 3.0},
        "faults": {"scheduled": [{"type": "node", "node": 0, "at_s": 0.5}]},
    })
    m = simulate(cfg).metrics
    assert m["faults_injected"] == 1
    return m["recovery_time_ms_max"]


def test_recovery_at_paper_scale_takes_under_half_a_second():
    assert 100.0 < _recovery_ms() < 500.0


def test_recovery_time_grows_with_memory_per_node_more_than_with_node_count():
    base = _recovery_ms(16, 512, 8)
    more_memory = _recovery_ms(16, 2048, 8)
    more_nodes = _recovery_ms(64, 512, 32)
    assert more_memory > base and more_nodes > base
    assert more_memory - base > 2 * (more_nodes - base)


def _two_faults(second_at: float, second_node: int = 6):
    return small_config({
        "machine": {"nodes": 8},
        "cells": {"count": 4},
        "workload": {"vms": [{"workload": "raytrace", "count": 4, "vcpus": 2, "work_s": 3.0}]},
        "sim": {"duration_s": 6.0},
        "faults": {"scheduled": [{"type": "node", "node": 0, "at_s": 1.0},
                                 {"type": "node", "node": second_node, "at_s": second_at}]},
    })


def test_a_second_fault_during_recovery_restarts_agreement_and_both_are_contained():
    cfg = _two_faults(1.1)
    res = simulate(cfg)
    m, t = res.metrics, res.tables["faults"]
    assert m["recovery_restarts"] == 1
    assert m["faults_hardware"] == 2 and m["faults_contained"] == 2
    assert m["vms_lost"] == 2 and m["cells_failed"] == 2
    # The first fault waits for the second's diagnosis and a new agreement round.
    alone = simulate(_two_faults(5.5)).tables["faults"]
    assert t["recovery_time_ms"][0] > alone["recovery_time_ms"][0] + 90.0
    assert abs((t["time_s"][0] + t["recovery_time_ms"][0] / 1e3)
               - (t["time_s"][1] + t["recovery_time_ms"][1] / 1e3)) < 1e-9
    # One machine-wide pause covers both.
    assert m["recovery_pause_s"] < (t["recovery_time_ms"][0] + 1.0) / 1e3


def test_a_fault_on_an_already_failed_cell_is_ignored():
    res = simulate(_two_faults(3.0, second_node=1))  # node 1 is in cell 0 with node 0
    m, t = res.metrics, res.tables["faults"]
    assert t["ignored"] == [False, True]
    assert m["faults_ignored"] == 1 and m["vms_lost"] == 1 and m["cells_failed"] == 1
    assert t["vms_lost"][1] == 0 and t["recovery_time_ms"][1] == 0.0


def test_vms_on_other_cells_pause_only_for_the_machine_wide_part():
    cfg = _two_faults(5.5)
    cfg.faults.scheduled = cfg.faults.scheduled[:1]
    cfg.faults.terminate_ms_per_vm = 500.0  # termination is local: others do not wait for it
    mon = build(cfg)
    mon.run()
    m = mon.metrics()
    pause = mon.lifecycle.pause_total
    assert m["recovery_time_ms_max"] > 500.0
    assert pause < 0.4
    assert all(cpu.online == (cpu.cell != 0) for cpu in mon.cpus)
    baseline = simulate(_two_faults(5.5)).vms  # same mix, the fault after everything ended
    faulty = simulate(cfg).vms
    for i, status in enumerate(faulty["status"]):
        if status == "done":
            delay = faulty["finish_s"][i] - baseline["finish_s"][i]
            assert delay < pause + 0.05


def test_smp_os_loses_every_job_to_any_fault_and_reboots():
    cfg = _two_faults(5.5)
    cfg.policy.name = "smp_os"
    cfg.faults.scheduled = cfg.faults.scheduled[:1]
    cfg.faults.smp_reboot_s = 2.0
    cfg.faults.restart_lost = True
    cfg.sim.duration_s = 12.0
    res = simulate(cfg)
    m = res.metrics
    assert m["vms_lost"] == 4 and m["vms_restarted"] == 4
    assert res.tables["faults"]["recovery_time_ms"] == [2000.0]
    assert m["vms_completed"] == 4
    restarted = [a for a, s in zip(res.vms["arrival_s"], res.vms["status"], strict=True)
                 if s == "done"]
    assert min(restarted) >= 3.0


def test_lost_vms_restart_on_surviving_cells():
    cfg = _two_faults(5.5)
    cfg.faults.scheduled = cfg.faults.scheduled[:1]
    cfg.faults.restart_lost = True
    cfg.sim.check_invariants = True
    mon = build(cfg)
    mon.run()
    m = mon.metrics()
    assert m["vms_lost"] == 1 and m["vms_restarted"] == 1 and m["vms_completed"] == 4
    clone = mon.vms[-1]
    assert clone.status == "done" and 0 not in clone.home_cells
    assert m["work_lost_cpu_s"] > 0.0


def test_a_failed_cell_comes_back_after_repair():
    cfg = _two_faults(5.5)
    cfg.faults.scheduled = cfg.faults.scheduled[:1]
    cfg.faults.cell_repair_s = 1.0
    mon = build(cfg)
    mon.run()
    assert all(cpu.online for cpu in mon.cpus) and all(mon.state.cell_live)
    assert mon.state.tree.size[0] == len(mon.cpus)


def _evacuation(evacuate: bool):
    faults = {"scheduled": [{"type": "node", "cell": 1, "at_s": 4.0}],
              "migration_mb_per_s": 200.0}
    if evacuate:
        faults["evacuate"] = [{"cell": 1, "at_s": 0.5}]
    return small_config({
        "machine": {"nodes": 8},
        "cells": {"count": 4},
        "workload": {"vms": [{"workload": "pmake", "count": 4, "vcpus": 2, "memory_mb": 256,
                              "work_s": 5.0}]},
        "sim": {"duration_s": 20.0},
        "faults": faults,
    })


def test_evacuating_a_cell_moves_its_vms_off_so_a_later_fault_there_loses_nothing():
    m = simulate(_evacuation(False)).metrics
    assert m["vms_lost"] == 1
    mon = build(_evacuation(True))
    mon.loop.run(until=20.0)
    m = mon.metrics()
    assert m["vms_migrated"] == 1 and m["vms_lost"] == 0 and m["vms_completed"] == 4
    assert m["faults_contained"] == 1
    assert not mon.state.cell_live[1]


def test_whole_vm_migration_takes_time_proportional_to_memory():
    cfg = _evacuation(True)
    mon = build(cfg)
    vm_mig = mon.vm_migration
    vm = mon.vms[0]
    assert abs(vm_mig.copy_time(vm) - (256 + 16) / 200.0) < 1e-9
    big = SimConfig()
    big_mon = build(big)
    db = next(v for v in big_mon.vms if v.memory_mb == 1024)
    assert 10.0 < big_mon.vm_migration.copy_time(db) < 60.0  # tens of seconds per GB


def test_fault_metrics_are_deterministic():
    cfg = small_config({"faults": {"node_rate": 0.2, "software_rate": 0.1,
                                   "restart_lost": True}})
    a, b = simulate(cfg), simulate(cfg)
    a.metrics.pop("wall_time_s")
    b.metrics.pop("wall_time_s")
    assert repr(a.metrics) == repr(b.metrics) and a.tables == b.tables


def test_a_vm_depends_on_both_cells_while_its_memory_is_copied():
    for fail_cell in (1, 0):  # the source being evacuated, then the destination
        cfg = _evacuation(True)
        cfg.faults.migration_mb_per_s = 20.0  # ~14 s copy
        cfg.faults.scheduled[0].cell = fail_cell
        cfg.faults.scheduled[0].at_s = 3.0
        mon = build(cfg)
        moving = {}
        mon.loop.at(2.9, moving.update, mon.vm_migration.in_flight)
        mon.run()
        m = mon.metrics()
        assert len(moving) == 1
        (vm_id, dest), = moving.items()
        if fail_cell == 0:
            assert dest == (0,)
        assert mon.vms[vm_id].status == "lost"
        assert m["faults_contained"] == 1 and m["vms_migrated"] == 0


def test_monitor_data_left_behind_follows_after_data_follow_s():
    cfg = _two_faults(5.5)
    cfg.faults.data_follow_s = 0.2
    mon = build(cfg)
    mon.loop.run(until=0.5)
    rule = mon.containment
    vm = next(vm for vm in mon.vms if vm.home_cells == (0,))
    src, dst = mon.cpus[mon.machine.cell_cpus(1)[0]], mon.cpus[mon.machine.cell_cpus(0)[0]]
    assert rule.dependency(vm, [1]) is None
    rule.on_vcpu_moved(vm.vcpus[0], src, dst)  # a VCPU came back from cell 1 just now
    assert rule.dependency(vm, [1]) == "data"
    mon.loop.run(until=0.75)
    assert rule.dependency(vm, [1]) is None
    assert rule.dependency(vm, [0]) == "vcpu"


def test_fixed_partitions_lose_only_the_failed_partitions_jobs():
    cfg = _two_faults(5.5)
    cfg.policy.name = "fixed_partition"
    cfg.faults.scheduled = cfg.faults.scheduled[:1]
    mon = build(cfg)
    mon.run()
    m = mon.metrics()
    lost = [vm for vm in mon.vms if vm.status == "lost"]
    assert lost and all(vm.home_cells == (0,) for vm in lost)
    assert all(vm.status == "done" for vm in mon.vms if vm.home_cells != (0,))
    assert m["faults_contained"] == 1


def test_one_cell_machine_loses_everything_and_restarts_once_the_cell_is_repaired():
    cfg = _two_faults(5.5)
    cfg.policy.name = "disco_one_cell"
    cfg.faults.scheduled = cfg.faults.scheduled[:1]
    cfg.faults.restart_lost = True
    cfg.faults.cell_repair_s = 1.0
    cfg.workload.vms[0].count = 2
    cfg.workload.vms.append(dataclasses.replace(cfg.workload.vms[0], arrival_s=1.5))
    cfg.sim.duration_s = 15.0
    mon = build(cfg)
    mon.run()
    m = mon.metrics()
    assert m["vms_lost"] == 2 and m["vms_restarted"] == 2
    # The restarts and the VMs that arrived while the machine was down wait for the repair.
    assert m["vms_completed"] == 4
    repaired = 1.0 + m["recovery_time_ms_max"] / 1e3 + 1.0
    assert all(vm.finish_s > repaired for vm in mon.vms if vm.status == "done")


def test_one_fault_schedule_names_the_same_nodes_under_every_policy():
    faults = {"scheduled": [{"type": "node", "cell": 3, "at_s": 1.0}],
              "evacuate": [{"cell": 2, "at_s": 0.5}]}
    for policy in ("cellular_disco", "disco_one_cell", "smp_os", "fixed_partition"):
        res = simulate(SimConfig.from_dict({
            "policy": {"name": policy}, "faults": faults, "sim": {"duration_s": 3.0},
            "workload": {"vms": [{"workload": "pmake", "count": 8, "vcpus": 4}]}}))
        assert res.tables["faults"]["place"] == ["node 6"], policy
        assert res.metrics["faults_contained"] == 1


def test_with_every_cell_down_and_no_repair_later_arrivals_never_run():
    cfg = _two_faults(5.5)
    cfg.policy.name = "disco_one_cell"
    cfg.faults.scheduled = cfg.faults.scheduled[:1]
    cfg.workload.vms.append(dataclasses.replace(cfg.workload.vms[0], count=1, arrival_s=2.0))
    m = simulate(cfg).metrics
    assert m["vms_lost"] == 4 and m["vms_unplaceable"] == 1 and m["vms_completed"] == 0


def test_fixed_partitions_cannot_migrate_a_running_os_so_evacuation_only_drains():
    cfg = _evacuation(True)
    cfg.policy.name = "fixed_partition"
    mon = build(cfg)
    mon.run()
    m = mon.metrics()
    assert m["vms_migrated"] == 0 and m["vms_lost"] == 1
    assert not mon.state.cell_live[1]


def test_a_move_to_a_cell_that_starts_evacuating_is_aborted_and_redone_elsewhere():
    cfg = _evacuation(True)
    cfg.faults.scheduled = []
    mon = build(cfg)
    migrator = mon.vm_migration

    def evacuate_the_destination():
        (dest,) = next(iter(migrator.in_flight.values()))
        mon.loop.at(1.0, migrator.evacuate, dest)
        seen["dest"] = dest

    seen = {}
    mon.loop.at(0.6, evacuate_the_destination)
    mon.run()
    m = mon.metrics()
    assert m["vm_migrations_aborted"] == 1 and m["vms_migrated"] >= 2
    assert m["vms_lost"] == 0 and m["vms_completed"] == 4
    assert not mon.state.cell_live[1] and not mon.state.cell_live[seen["dest"]]
    for vm in mon.vms:  # nothing depends on the evacuated cells any more
        assert mon.containment.dependency(vm, [1, seen["dest"]]) is None


def test_an_evacuated_cell_returns_to_service_after_its_replacement():
    cfg = _evacuation(True)
    cfg.faults.scheduled = []
    cfg.faults.evacuate[0].return_s = 1.0
    cfg.workload.vms.append(dataclasses.replace(cfg.workload.vms[0], count=4, arrival_s=6.0))
    mon = build(cfg)
    offline_at = {}
    mon.loop.at(2.5, lambda: offline_at.update(live=mon.state.cell_live[1]))
    mon.run()
    assert offline_at["live"] is False
    assert all(mon.state.cell_live) and all(cpu.online for cpu in mon.cpus)
    assert any(1 in vm.home_cells for vm in mon.vms if vm.arrival_s >= 6.0)


# -- recovery alone, on a few CPUs and VMs by hand ---------------------------------------------

def _two_cells(kill_policy="early", touch_rate_per_s=10.0):
    """Two cells of one node of three CPUs. VM a runs in cell 0; VM b in cell 1; VM c runs in
    cell 0 but holds memory on cell 1 (a stand-in footprint)."""
    w = world(nodes=2, cpus_per_node=3, nodes_per_cell=1)
    gang = w.gang()
    placement = Placement(w.loop, w.machine, w.state, w.bus, gang, w.execution)
    lifecycle = CellLifecycle(w.loop, w.machine, w.state, w.acct, gang, w.bus)
    a = w.queue(w.vm(2, work_s=3.0), [0, 1])
    b = w.queue(w.vm(2, work_s=3.0), [3, 4])
    c = w.queue(w.vm(1, work_s=3.0), [2])
    rule = Containment(w.loop, w.state, Footprint({c.id: {1}}), data_follow_s=None)
    f = FaultsConfig(kill_policy=kill_policy, touch_rate_per_s=touch_rate_per_s)
    recovery = Recovery(w.loop, RandomStreams(0), w.machine, w.state, f, 1, True, rule,
                        lifecycle, w.execution, w.factory, placement)
    for vm in (a, b, c):
        rule.on_vm_arrived(vm)
    for cpu in w.cpus:
        gang.kick(cpu)
    w.loop.run(until=0.5)
    recovery.on_fault(hardware_fault(w.machine, "node", 1, w.loop.now))
    return w, recovery, lifecycle, (a, b, c)


def test_recovery_alone_kills_exactly_the_dependents_after_its_machine_wide_part():
    w, recovery, lifecycle, (a, b, c) = _two_cells()
    rec = recovery.records[0]
    assert rec.cells == [1] and rec.dependent == [b.id, c.id]
    assert ("cell_failed", 1) in w.events and lifecycle.paused_at == 0.5
    assert not any(cpu.online for cpu in w.cpus)  # the machine-wide part pauses every CPU
    w.loop.run(until=5.0)
    assert (a.status, b.status, c.status) == ("done", "lost", "lost")
    assert [cpu.online for cpu in w.cpus] == [True] * 3 + [False] * 3
    expected = recovery.cost.machine_wide_s("node", 1) + 2 * recovery.f.terminate_ms_per_vm * 1e-3
    assert rec.recovery_ms == pytest.approx(expected * 1e3) and recovery.contained(rec)


def test_recovery_alone_lazily_spares_a_memory_only_dependent_that_never_touches_bad_memory():
    w, recovery, lifecycle, (a, b, c) = _two_cells("lazy", touch_rate_per_s=1e-9)
    w.loop.run(until=5.0)
    assert (a.status, b.status, c.status) == ("done", "lost", "done")
    assert recovery.contained(recovery.records[0])


def test_recovery_cost_grows_with_memory_per_node_and_rounds_with_live_cells():
    f = FaultsConfig()
    small = RecoveryCost(f, Machine(16, 2, 2, 512, 310.0, 550.0, 100.0), 32)
    big = RecoveryCost(f, Machine(16, 2, 2, 2048, 310.0, 550.0, 100.0), 32)
    assert big.diagnosis_s() - small.diagnosis_s() == pytest.approx(1536 / f.scan_mb_per_s)
    assert small.agreement_s(8) - small.agreement_s(2) == pytest.approx(
        f.agreement_rounds * 6 * f.rpc_us * 1e-6)
    assert small.detection_s("firmware") > small.detection_s("node")


# One node fault at 1 s on 4 GB nodes: diagnosis scans 4 GB per node at 2 GB/s, ~2.1 s of
# recovery; at 2 s the run ends with the recovery under way.
LATE_FAULT = {"machine": {"nodes": 4, "cpus_per_node": 2, "memory_per_node_mb": 4096},
              "cells": {"count": 2},
              "workload": {"vms": [{"workload": "raytrace", "count": 2, "vcpus": 2,
                                    "memory_mb": 256, "work_s": 20.0}]},
              "faults": {"scheduled": [{"type": "node", "node": 0, "at_s": 1.0}]},
              "sim": {"duration_s": 2.0}}


def test_unfinished_recovery_is_censored_not_zero():
    r = simulate(SimConfig.from_dict(LATE_FAULT))
    m = r.metrics
    assert m["faults_censored"] == 1 and m["faults_contained"] == 0
    assert math.isnan(m["recovery_time_ms_mean"]) and math.isnan(m["recovery_time_ms_max"])
    assert m["vms_lost"] == 0 and m["vms_pending_loss"] == m["vms_lost_dependent"] > 0
    assert sum(r.vms["pending_loss"]) == m["vms_pending_loss"]
    assert r.tables["faults"]["censored"] == [True]
    assert math.isnan(r.tables["faults"]["recovery_time_ms"][0])
    # Long enough, the same fault finishes: a recovery time, its dependents lost, contained.
    done = simulate(SimConfig.from_dict({**LATE_FAULT, "sim": {"duration_s": 5.0}})).metrics
    assert done["faults_censored"] == done["vms_pending_loss"] == 0
    assert done["faults_contained"] == 1
    assert 2000.0 < done["recovery_time_ms_mean"] < 2500.0
    assert done["vms_lost"] == done["vms_lost_dependent"] == m["vms_lost_dependent"]


def test_a_run_whose_last_vm_ends_during_recovery_waits_for_it_to_finish():
    # The only VM, in the cell the fault spares, dies of a guest OS crash at 1.5 s, during the
    # recovery of the node fault at 1 s: the run goes on until that recovery ends, so the
    # recovery is timed, not censored.
    cfg = merge(LATE_FAULT, {
        "workload": {"vms": [{"workload": "raytrace", "vcpus": 2, "memory_mb": 256,
                              "work_s": 20.0, "home_cell": 1}]},
        "faults": {"scheduled": [{"type": "node", "node": 0, "at_s": 1.0},
                                 {"type": "software", "vm": 0, "at_s": 1.5}]},
        "sim": {"duration_s": 60.0}})
    m = simulate(SimConfig.from_dict(cfg)).metrics
    assert m["vms_lost"] == 1 and m["faults_censored"] == 0
    hw = 1.0 + m["recovery_time_ms_max"] / 1e3  # the node fault's recovery ends last
    assert 2000.0 < m["recovery_time_ms_max"] < 2500.0
    assert m["sim_time_s"] == pytest.approx(hw)


def test_the_recovery_study_lets_its_slowest_recovery_finish():
    """The study's slowest corner (64 nodes x 4096 MB: a 2 s memory scan after a fault at
    10 s) ends recovered within the study's duration: timed, contained, nothing censored."""
    from disco.framework.compose import compose

    m = simulate(compose(["+experiment=recovery", "machine.nodes=64",
                          "machine.memory_per_node_mb=4096"])).metrics
    assert m["faults_censored"] == 0 and m["faults_contained"] == 1
    assert 2000.0 < m["recovery_time_ms_max"] < 2500.0
    assert m["vms_lost"] == m["vms_lost_dependent"]
