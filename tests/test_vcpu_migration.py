"""Moving a VCPU between run queues, and what it costs (PAPER.md, VCPU migration cost)."""

import pytest
from parts import world

from disco.hardware import OTHER_CELL, SAME_CELL, SAME_NODE
from disco.vmm.state import BLOCKED, RUNNING


def test_a_move_costs_by_distance_same_node_least_other_cell_most():
    w = world(nodes=4, cpus_per_node=2, nodes_per_cell=2)  # cells of CPUs 0-3 and 4-7
    migrator = w.migrator()
    debts = {}
    for dest, dist in ((1, SAME_NODE), (2, SAME_CELL), (4, OTHER_CELL)):
        v = w.queue(w.vm(1), [0]).vcpus[0]
        assert migrator.migrate(v, w.cpus[dest]) == dist
        debts[dist] = v.debt
    assert debts[SAME_NODE] < debts[SAME_CELL] < debts[OTHER_CELL]
    assert debts[SAME_NODE] == pytest.approx(37e-6 + 4e-3)  # move + cache re-warming
    assert (migrator.moves_node, migrator.moves_cell, migrator.moves_remote) == (1, 1, 1)


def test_a_move_keeps_the_queues_counts_and_the_cells_a_vm_depends_on():
    w = world(nodes=2, cpus_per_node=2, nodes_per_cell=1)
    migrator = w.migrator()
    vm = w.queue(w.vm(2), [0, 1])
    migrator.migrate(vm.vcpus[1], w.cpus[2])
    assert [(c.waiting, c.load, len(c.queue)) for c in w.cpus] == [(1, 1, 1), (0, 0, 0),
                                                                    (1, 1, 1), (0, 0, 0)]
    assert vm.cell_vcpus == {0: 1, 1: 1} and vm.visited_cells == {0, 1}
    assert w.state.cell_assigned == [1, 1]
    assert ("vcpu_moved", vm.id, 1, 2) in w.events  # announced on the bus


def test_a_blocked_vcpu_is_carried_with_its_vm_without_counting_as_load():
    w = world(nodes=2, cpus_per_node=2, nodes_per_cell=1)
    migrator = w.migrator()
    vm = w.queue(w.vm(1), [0])
    v = vm.vcpus[0]
    v.state, w.cpus[0].waiting, w.cpus[0].load, vm.runnable = BLOCKED, 0, 0, 0
    migrator.carry(v, w.cpus[3])
    assert v.cpu == 3 and v in w.cpus[3].queue and w.cpus[3].load == 0
    assert v.debt == pytest.approx(1520e-6 + 4e-3) and migrator.moves_remote == 0
    assert ("vcpu_moved", vm.id, 0, 3) in w.events


def test_a_running_vcpu_is_never_migrated_a_blocked_one_moves_without_counting_as_load():
    w = world()
    migrator = w.migrator()
    v = w.queue(w.vm(1), [0]).vcpus[0]
    v.state = BLOCKED
    w.cpus[0].waiting = w.cpus[0].load = v.vm.runnable = 0
    migrator.migrate(v, w.cpus[1])  # the periodic balancer may move a blocked VCPU
    assert v.cpu == 1 and w.cpus[1].load == 0 and migrator.moves_node == 1 and v.cold
    v.state = RUNNING
    with pytest.raises(AssertionError):
        migrator.migrate(v, w.cpus[0])
