"""Whole-VM migration between cells and evacuating a cell (PAPER.md, Faults and recovery), on
a few CPUs and VMs by hand. Runs of whole studies are in ``test_recovery.py``."""

import pytest
from parts import Footprint, world

from disco.config import FaultsConfig
from disco.vmm.cell_lifecycle import EVACUATED, CellLifecycle
from disco.vmm.containment import Containment
from disco.vmm.vm_migration import VMMigrator


def _migrator(cross_cell_moves=True, copy_dependency=False):
    """Two cells of one node of two CPUs; a 2-VCPU VM runs in cell 0. Copies run at 100 MB/s,
    so its 84 MB and 16 MB of I/O state take one second."""
    w = world(nodes=2, cpus_per_node=2, nodes_per_cell=1)
    gang = w.gang()
    lifecycle = CellLifecycle(w.loop, w.machine, w.state, w.acct, gang, w.bus)
    rule = Containment(w.loop, w.state, Footprint(), data_follow_s=None)
    f = FaultsConfig(migration_mb_per_s=100.0, io_state_mb=16.0,
                     migration_copy_dependency=copy_dependency)
    vmm = VMMigrator(w.loop, w.machine, w.state, w.bus, f, cross_cell_moves, rule, lifecycle,
                     gang, w.migrator())
    w.bus.on_cell_failed(vmm.on_cell_failed)
    vm = w.queue(w.vm(2, work_s=5.0, memory_mb=84), [0, 1])
    rule.on_vm_arrived(vm)
    gang.kick(w.cpus[0])
    w.loop.run(until=0.1)
    return w, vmm, rule, lifecycle, vm


def test_a_vm_moves_after_its_copy_and_then_depends_only_on_its_new_cells():
    w, vmm, rule, _, vm = _migrator()
    assert vmm.copy_time(vm) == pytest.approx(1.0)
    assert vmm.migrate(vm, (1,))
    assert rule.dependency(vm, [1]) is None  # a pre-copy: the source holds its whole state
    assert rule.dependency(vm, [0]) == "vcpu"
    w.loop.run(until=1.15)  # copy from 0.1 s
    assert vm.home_cells == (1,) and {w.cpus[v.cpu].cell for v in vm.vcpus} == {1}
    assert rule.dependency(vm, [0]) is None and vmm.completed == 1
    assert ("vm_migrated", vm.id, (0,), (1,)) in w.events
    w.loop.run(until=2.0)
    assert vm.running  # it runs on in its new cell


def test_with_copy_dependency_a_vm_depends_on_its_destination_during_the_copy():
    w, vmm, rule, _, vm = _migrator(copy_dependency=True)
    assert vmm.migrate(vm, (1,))
    assert rule.dependency(vm, [1]) == "data"  # the copy lands there: it depends on both
    w.loop.run(until=1.15)
    assert vm.home_cells == (1,) and rule.dependency(vm, [0]) is None


def test_a_destination_cell_lost_during_the_copy_aborts_the_move_even_once_it_is_back():
    w, vmm, _, lifecycle, vm = _migrator()
    assert vmm.migrate(vm, (1,))
    w.loop.run(until=0.5)
    lifecycle.fail(1)
    lifecycle.announce_failure(1)
    lifecycle.schedule_repair(1, 0.8)  # back before the copy would end: its copy is gone
    w.loop.run(until=1.5)
    assert vm.home_cells == (0,) and vmm.aborted == 1 and vmm.completed == 0
    assert vm.status == "running"


def test_evacuating_a_cell_moves_its_vms_off_then_takes_it_offline():
    w, vmm, rule, lifecycle, vm = _migrator()
    vmm.evacuate(0)
    assert not w.state.cell_live[0]  # no new VMs there from now on
    w.loop.run(until=1.5)
    assert vm.home_cells == (1,) and lifecycle.cell_state[0] == EVACUATED
    assert ("cell_failed", 0) in w.events  # its memory left the pool
    assert not any(cpu.online for cpu in w.cpus[:2])


def test_a_system_whose_vms_cannot_cross_cells_never_migrates_them():
    w, vmm, _, _, vm = _migrator(cross_cell_moves=False)
    assert not vmm.migrate(vm, (1,))
    w.loop.run(until=2.0)
    assert vm.home_cells == (0,) and vmm.completed == 0
