"""Where an arriving VM goes: as few whole cells as hold it, the least committed, a distinct
CPU per VCPU; after faults only live cells, and an arrival waits for a repair that is due."""

from parts import world

from disco.vmm.placement import Placement
from disco.vmm.state import RUNNABLE


def _placement(nodes=4, cpus_per_node=2):
    w = world(nodes=nodes, cpus_per_node=cpus_per_node, nodes_per_cell=1)
    gang = w.gang()
    return w, Placement(w.loop, w.machine, w.state, w.bus, gang, w.execution)


def test_a_vm_goes_to_the_least_committed_cells_one_cpu_per_vcpu_least_loaded_first():
    w, placement = _placement()
    w.state.cell_assigned[:] = [3, 1, 0, 2]
    w.cpus[5].load = 1  # cell 2 holds CPUs 4 and 5
    vm = w.vm(2)
    placement.arrive(vm, None)
    assert vm.home_cells == (2,) and [v.cpu for v in vm.vcpus] == [4, 5]
    assert all(v.state == RUNNABLE for v in vm.vcpus) and vm.status == "running"
    assert ("vm_arrived", vm.id) in w.events  # announced on the bus
    # A VM bigger than a cell gets a contiguous run of cells.
    big = w.vm(3)
    placement.arrive(big, None)
    assert len(big.home_cells) == 2 and big.home_cells[1] == big.home_cells[0] + 1


def test_the_preference_list_is_the_home_cells_then_the_others_by_router_distance():
    w, placement = _placement(nodes=8, cpus_per_node=1)
    vm = w.vm(1)
    placement.arrive(vm, 5)
    hops = [w.machine.hops(5, c) for c in vm.pref_cells[1:]]
    assert vm.pref_cells[0] == 5 and hops == sorted(hops)


def test_an_arrival_with_no_live_cell_waits_for_a_due_repair_else_it_never_runs():
    w, placement = _placement(nodes=1, cpus_per_node=2)
    w.state.cell_live[0] = False
    w.state.repairs_due = 1
    vm = w.vm(2)
    placement.arrive(vm, None)
    assert vm.status == "pending" and placement.waiting == [(vm, None)]
    w.state.cell_live[0] = True
    placement.on_cell_repaired(0)
    assert vm.status == "running" and not placement.waiting
    w.state.cell_live[0] = False
    w.state.repairs_due = 0
    lost = w.vm(1)
    placement.arrive(lost, None)
    assert lost.status == "lost" and not lost.home_cells
