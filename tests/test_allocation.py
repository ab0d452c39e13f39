"""Where a frame comes from and what waiting for it costs (disco/vmm/allocation.py): memory
waits stall the VCPU that needs the memory, a shortage is never free."""

import pytest
from conftest import merge
from memory_helpers import DB_GROW, HOG, finished
from parts import world

from disco import SimConfig
from disco.runner import build
from disco.vmm.allocation import DISK, SHORTAGE, MemoryWaits
from disco.vmm.state import RUNNABLE, RUNNING

# One cell of 4 x 64 MB, paging off: a 128 MB hog, then a growing 192 MB Database at 0.2 s.
# Together they need 320 MB of 256: the Database waits for the hog to finish and free its
# memory. With 128 MB nodes both fit.
SHORT = {"machine": {"nodes": 4, "cpus_per_node": 2, "memory_per_node_mb": 64},
         "cells": {"count": 1},
         "workload": {"profiles": {"database": DB_GROW, "raytrace": HOG},
                      "vms": [{"workload": "raytrace", "vcpus": 2, "memory_mb": 128,
                               "work_s": 2.0},
                              {"workload": "database", "vcpus": 2, "memory_mb": 192,
                               "work_s": 2.0, "arrival_s": 0.2}]},
         "policy": {"paging": False}, "sim": {"duration_s": 60.0}}


@pytest.mark.parametrize("seed", (0, 1, 2))
def test_shortage_without_paging_is_slower_than_enough_memory(seed):
    short = finished(SHORT, seed)
    roomy = finished(merge(SHORT, {"machine": {"memory_per_node_mb": 128}}), seed)
    assert short["memory_wait_s"] > 1.0 and roomy["memory_wait_s"] == 0.0
    assert short["memory_alloc_failures"] > 0 == roomy["memory_alloc_failures"]
    assert short["vm_runtime_mean_s"] > 1.15 * roomy["vm_runtime_mean_s"]
    assert short["pages_out"] == 0


def test_a_short_vcpu_waits_tick_by_tick_until_memory_frees():
    sim = build(SimConfig.from_dict(SHORT))
    sim.run(1.0)
    db = sim.vms[1]
    r = sim.guest.records[db.id]
    assert r.used < int(r.want)  # its demand is not met ...
    until = [sim.waits.until.get((db.id, v.index), 0.0) for v in db.vcpus]
    assert all(1.0 < u <= 1.1 + 1e-9 for u in until)  # ... so it waits for the next retry
    sim.run()
    assert db.status == "done" and sim.vms[0].finish_s < db.finish_s


# -- waits alone: execution and the allocator on a world built by hand --------------------

def _waiting_world():
    """One CPU, one VM of one busy VCPU (1 s of work at rate 1), waiting in its queue."""
    w = world(nodes=1, cpus_per_node=1)
    gang = w.gang()
    vm = w.queue(w.vm(1, work_s=1.0), [0])
    return w, gang, vm.vcpus[0], MemoryWaits(w.loop, w.execution)


def test_a_running_vcpu_holds_its_cpu_for_the_wait_and_pays_overlaps_once():
    w, gang, v, waits = _waiting_world()
    gang.kick(w.cpus[0])
    w.loop.run(until=0.2)
    assert v.state == RUNNING
    waits.wait(v, 0.5, DISK)
    waits.wait(v, 0.4, DISK)  # inside the first: nothing more
    waits.wait(v, 0.6, SHORTAGE)  # 0.1 s beyond it
    assert waits.waited == pytest.approx([0.3, 0.0, 0.1])
    w.loop.run(until=10.0)
    assert v.vm.finish_s == pytest.approx(1.4)  # 1 s of work + 0.4 s of waits


def test_a_wait_that_begins_off_the_cpu_costs_only_what_is_left_when_it_runs():
    w, gang, v, waits = _waiting_world()
    assert v.state == RUNNABLE
    waits.wait(v, 0.5, DISK)
    assert v.stall_until == 0.5 and v.debt == 0.0
    w.loop.schedule(0.3, gang.kick, w.cpus[0])
    w.loop.run(until=10.0)
    # It waited 0.3 s off its CPU: 0.2 s of the wait is left when it starts, not 0.5 s.
    assert v.vm.finish_s == pytest.approx(1.5)
    assert v.stall_until == 0.0
