"""Paging under overcommit (PAPER.md, Paging; disco/vmm/paging.py, disco/vmm/disk.py)."""

import pytest
from conftest import merge
from memory_helpers import (
    DATABASE,
    DB_FIXED,
    DB_GROW,
    HOG,
    PMAKE,
    config,
    finished,
    run,
    with_policy,
)
from parts import world

from disco import simulate
from disco.config import PolicyConfig, SimConfig
from disco.engine import RandomStreams
from disco.framework.compose import compose
from disco.runner import build
from disco.vmm.allocation import DISK
from disco.vmm.bus import Bus
from disco.vmm.disk import Disks
from disco.vmm.frames import FrameStore
from disco.vmm.guest_memory import EMPTY, FREED, ON_DISK, RESIDENT, GuestMemory
from disco.vmm.paging import Pager

# Two Databases and two Pmakes, 640 MB of guests on a 512 MB machine (overcommit 1.25).
OVERCOMMIT = {"machine": {"memory_per_node_mb": 128},
              "workload": {"vms": [
                  {"workload": "database", "count": 2, "vcpus": 4, "memory_mb": 224,
                   "work_s": 2.0},
                  {"workload": "pmake", "count": 2, "vcpus": 2, "memory_mb": 96, "work_s": 2.0}]},
              "sim": {"duration_s": 30.0}}

# One cell of 256 MB. A Pmake-like guest runs alone, freeing memory as it goes; at 2 s a memory
# hog arrives and the pager must take 24 chunks from it: the freed ones need no write.
FREEING = {"machine": {"memory_per_node_mb": 64}, "cells": {"count": 1},
           "workload": {"profiles": {"pmake": PMAKE, "raytrace": HOG},
                        "vms": [{"workload": "pmake", "vcpus": 2, "memory_mb": 160,
                                 "work_s": 10.0},
                                {"workload": "raytrace", "vcpus": 2, "memory_mb": 192,
                                 "work_s": 1.0, "arrival_s": 2.0}]},
           "sim": {"duration_s": 2.05}}

# Two Pmakes in one cell share their guest kernel and binaries; a third VM squeezes them.
SHARING = {"machine": {"memory_per_node_mb": 64}, "cells": {"count": 1},
           "workload": {"profiles": {"pmake": {**PMAKE, "free_per_s": 0.0}, "raytrace": HOG},
                        "vms": [{"workload": "pmake", "count": 2, "vcpus": 2, "memory_mb": 96,
                                 "work_s": 10.0},
                                {"workload": "raytrace", "vcpus": 2, "memory_mb": 160,
                                 "work_s": 1.0, "arrival_s": 1.0}]},
           "sim": {"duration_s": 1.05}}

# A Database with 320 MB alone on 256 MB of memory (fast disks): once its guest memory is full
# the guest pages out its cold buffers, many of which the monitor has already paged out.
DOUBLE = {"machine": {"memory_per_node_mb": 64}, "cells": {"count": 1},
          "policy": {"disk_mb_per_s": 100.0},
          "workload": {"profiles": {"database": DATABASE},
                       "vms": [{"workload": "database", "vcpus": 4, "memory_mb": 320,
                                "work_s": 3.0}]},
          "sim": {"duration_s": 4.0}}


def test_paging_only_when_all_cells_short():
    mon, m = run(config(OVERCOMMIT))
    assert m["pages_out"] > 0 and m["memory_overcommit_ratio"] == pytest.approx(1.25)
    # At every page-out no other cell could lend: all were below floor + one unit.
    assert 0 <= mon.pager.max_other_free_at_page < mon.borrowing.floor + mon.borrowing.unit
    assert m["vms_completed"] == 4
    # Memory that fits is never paged, however the VMs are mixed.
    fits = {**OVERCOMMIT, "machine": {"memory_per_node_mb": 256}}
    assert run(config(fits))[1]["pages_out"] == 0


def test_paging_off_never_touches_the_disk_allocations_wait():
    m = run(config(with_policy(OVERCOMMIT, paging=False)))[1]
    assert m["pages_out"] == m["disk_writes"] == m["disk_reads"] == 0
    assert m["memory_alloc_failures"] > 0


def test_paging_costs_time():
    on = run(config(OVERCOMMIT))[1]
    roomy = run(config({**OVERCOMMIT, "machine": {"memory_per_node_mb": 256}}))[1]
    assert on["paging_stall_s"] > 0.0 and roomy["paging_stall_s"] == 0.0
    assert on["vm_runtime_mean_s"] > roomy["vm_runtime_mean_s"]


def test_freed_chunks_are_never_written():
    on = run(config(FREEING))[1]
    off = run(config(with_policy(FREEING, paging_skip_freed=False)))[1]
    assert on["pages_out"] > 0 and off["pages_out"] > 0
    assert on["disk_writes_avoided_free"] > 0 and off["disk_writes_avoided_free"] == 0
    # Freed chunks go first with it, no write each; without it they are written like any
    # other, and the guest's reuse reads them back (which needs frames: more evictions).
    assert on["disk_writes"] + on["disk_writes_avoided_free"] <= off["disk_writes"]
    assert off["disk_reads"] > on["disk_reads"]


def test_shared_chunks_are_written_once():
    on = run(config(SHARING))[1]
    off = run(config(with_policy(SHARING, paging_shared_once=False)))[1]
    assert on["disk_writes_avoided_shared"] > 0 and off["disk_writes_avoided_shared"] == 0
    assert off["disk_writes"] > on["disk_writes"]


def test_virtual_paging_disk_avoids_double_write():
    on = run(config(DOUBLE))[1]
    off = run(config(with_policy(DOUBLE, paging_virtual_disk=False)))[1]
    assert on["pages_out"] > 0
    assert on["disk_writes_avoided_double"] > 0 and off["disk_writes_avoided_double"] == 0
    assert off["disk_writes"] > on["disk_writes"]
    assert off["disk_reads"] > on["disk_reads"]


def test_every_optimisation_off_writes_more():
    for mix in (FREEING, SHARING, DOUBLE):
        best = run(config(mix))[1]
        worst = run(config(with_policy(mix, paging_skip_freed=False, paging_shared_once=False,
                                       paging_virtual_disk=False)))[1]
        assert worst["disk_writes"] > best["disk_writes"]


# -- demand follows the work, waits follow the faults (metamorphic: vary a knob, same work) --
# One cell of 4 x 64 MB nodes unless said; every VM finishes, so every run does the same work.
CELL = {"machine": {"nodes": 4, "cpus_per_node": 2, "memory_per_node_mb": 64},
        "cells": {"count": 1}, "sim": {"duration_s": 300.0}}
# Two 192 MB Databases, all memory touched at boot: the hot halves fit, the cold ones do not.
FIXED2 = merge(CELL, {"workload": {"profiles": {"database": DB_FIXED}, "vms": [
    {"workload": "database", "count": 2, "vcpus": 2, "memory_mb": 192, "work_s": 3.0,
     "spacing_s": 0.5}]}})
# Four growing 96 MB Databases on two cells (1.5 x overcommit); the hot sets fit.
GROW4 = merge(CELL, {"cells": {"count": 2}, "workload": {"profiles": {"database": DB_GROW},
                                                         "vms": [
    {"workload": "database", "count": 4, "vcpus": 2, "memory_mb": 96, "work_s": 3.0,
     "spacing_s": 0.3}]}})
# Two 160 MB Pmakes freeing and reusing cold memory as they work.
CHURN2 = merge(CELL, {"workload": {"profiles": {"pmake": PMAKE}, "vms": [
    {"workload": "pmake", "count": 2, "vcpus": 2, "memory_mb": 160, "work_s": 3.0,
     "spacing_s": 0.5}]}})
# FIXED2 with 85 % hot working sets: they do not fit (the VMs thrash).
THRASH2 = merge(CELL, {"workload": {"profiles": {"database": {**DB_FIXED,
                                                              "working_set_fraction": 0.85}},
                                    "vms": [{"workload": "database", "count": 2, "vcpus": 2,
                                             "memory_mb": 192, "work_s": 2.0,
                                             "spacing_s": 0.5}]}})
SEEDS = (0, 1, 2)


@pytest.mark.parametrize("seed", SEEDS)
def test_more_disks_never_increase_stall_on_the_same_demand(seed):
    stall = [finished(GROW4, seed, paging_disks=k)["paging_stall_s"] for k in (1, 2, 4)]
    assert stall[0] > 0.0
    assert stall[1] < stall[0] and stall[2] <= stall[1]


@pytest.mark.parametrize("mix", [FIXED2, GROW4, CHURN2], ids=["fixed2", "grow4", "churn2"])
@pytest.mark.parametrize("seed", SEEDS)
def test_faster_disk_never_increases_writes(mix, seed):
    """On working sets that fit (paging.py: in a thrash a faster disk may write more)."""
    runs = [finished(mix, seed, disk_mb_per_s=x) for x in (5.0, 20.0, 100.0)]
    writes = [m["disk_writes"] for m in runs]
    stall = [m["paging_stall_s"] for m in runs]
    assert writes[0] > 0 and writes[2] <= writes[1] <= writes[0]
    assert stall[2] < stall[1] < stall[0]


@pytest.mark.parametrize("seed", SEEDS)
def test_a_thrash_stalls_less_with_a_faster_disk(seed):
    """Working sets larger than the memory: a faster disk still waits less (it may write
    more per unit of work: the VCPUs stop taking turns at the disk, paging.py)."""
    stall = [finished(THRASH2, seed, disk_mb_per_s=x)["paging_stall_s"] for x in (5, 20, 100)]
    assert stall[2] < stall[1] < stall[0]


@pytest.mark.parametrize("seed", SEEDS)
def test_skip_freed_avoids_writes_when_guests_free(seed):
    on = finished(CHURN2, seed)
    off = finished(CHURN2, seed, paging_skip_freed=False)
    assert on["disk_writes_avoided_free"] > 0 and off["disk_writes_avoided_free"] == 0
    assert off["disk_writes"] > 2 * on["disk_writes"]


def test_skip_freed_takes_any_guests_freed_memory_before_trimming_a_resident_set():
    """Eight 4-VCPU Pmakes in one cell of 1 GB (the sensitivity study's ``pmake2x``): a VM at
    its resident-set size pages against itself, but memory another guest has freed costs that
    guest nothing, so with skip_freed it goes first (before: each VM's own resident chunks were
    written, 17 writes); without the optimisation the monitor cannot tell and writes ~50."""
    base = ["workload=pmake", "cells=cells_1", "machine.memory_per_node_mb=64"]
    on = simulate(compose(base)).metrics
    off = simulate(compose([*base, "policy.paging_skip_freed=false"])).metrics
    assert on["disk_writes_avoided_free"] > 0 and off["disk_writes_avoided_free"] == 0
    assert on["disk_writes"] < off["disk_writes"] / 4
    assert on["paging_stall_s"] < off["paging_stall_s"]
    assert on["vm_runtime_mean_s"] < off["vm_runtime_mean_s"]


def test_work_done_counts_guest_work_so_writes_compare_per_unit_of_work():
    """``work_done_cpu_s``: the guests' native CPU-seconds done, the denominator of the paging
    figure's writes per unit of work; all of it when every VM finished, less when cut short."""
    done = finished(GROW4, 0)
    assert done["work_done_cpu_s"] == pytest.approx(4 * 2 * 3.0)
    cut = simulate(SimConfig.from_dict(merge(GROW4, {"sim": {"duration_s": 2.0}}))).metrics
    assert cut["vms_completed"] < cut["vms_total"]
    assert 0.0 < cut["work_done_cpu_s"] < done["work_done_cpu_s"]


def test_a_vcpu_that_does_not_run_makes_no_demand():
    """Demand follows progress: a growing Database whose VCPUs are held off their CPUs (a
    long disk wait) neither grows nor faults meanwhile, however busy the disk is."""
    sim = build(SimConfig.from_dict(merge(CELL, {"workload": {
        "profiles": {"database": DB_GROW},
        "vms": [{"workload": "database", "vcpus": 2, "memory_mb": 256, "work_s": 3.0}]}})))
    sim.run(0.25)
    r = sim.guest.records[0]
    for v in r.vm.vcpus:
        sim.waits.wait(v, 0.6, DISK)
    sim.run(0.35)  # the tick at 0.3 counts the work done before the wait
    want = r.want
    assert want < r.n
    sim.run(0.55)
    assert r.want == want
    sim.run(0.8)
    assert r.want > want


def test_disk_queue_serves_requests_in_order_with_seek_and_transfer():
    disks = Disks(PolicyConfig(paging_disks=2, disk_seek_ms=10.0, disk_mb_per_s=100.0), Bus())
    assert disks.request(0, 1.0, 4.0, write=True) == pytest.approx(1.05)  # 10 ms + 40 ms
    assert disks.request(0, 1.0, 4.0, write=False) == pytest.approx(1.10)  # queued behind
    assert disks.request(1, 1.0, 4.0, write=True) == pytest.approx(1.05)  # its own queue
    assert disks.request(0, 2.0, 4.0, write=True) == pytest.approx(2.05)  # idle again
    assert (disks.writes, disks.reads) == (3, 1)


def test_resident_set_can_be_trimmed_second_chance_keeps_the_hot_chunks():
    mon, _ = run(config({"workload": {"vms": [{"workload": "database", "vcpus": 4,
                                                "memory_mb": 256, "work_s": 5.0}]}}), until=1.0)
    r = mon.guest.records[0]
    before, hot = r.resident_total(), set(range(r.used - r.hot, r.used))
    mon.pager.trim(r, before - 8)
    assert r.resident_total() == before - 8
    assert mon.pager.pages_out == 8
    evicted = {j for j in range(r.n) if r.state[j] == ON_DISK}
    assert len(evicted) + r.region.on_disk == 8
    assert not evicted & hot  # cold chunks went first


def test_second_chance_spends_cleared_reference_bits_before_the_hot_working_set():
    # Every cold chunk was touched at boot (reference bit set), so one pass finds nothing
    # unreferenced: it clears the bits, and the cold chunks must then go before any hot one --
    # the private working set and the hot part of the guest kernel -- however old those are.
    mon, _ = run(config({"workload": {"vms": [{"workload": "database", "vcpus": 4,
                                                "memory_mb": 256, "work_s": 5.0}]}}), until=1.0)
    r = mon.guest.records[0]
    reg = r.region
    hot_lo = r.used - r.hot
    cold = [j for j in range(hot_lo) if r.state[j] == RESIDENT]
    hot_kernel = sum(i < r.vm.profile.working_set_fraction * reg.n for i in range(reg.n))
    cold_kernel = reg.n - hot_kernel
    assert cold and all(r.ref[j] for j in cold) and hot_kernel > 0
    mon.pager.trim(r, r.resident_total() - len(cold) - cold_kernel)
    assert all(r.state[j] == ON_DISK for j in cold)
    assert all(r.state[j] == RESIDENT for j in range(hot_lo, r.used))
    assert all(reg.state[i] == RESIDENT for i in range(hot_kernel))
    assert reg.on_disk == cold_kernel


def test_overlapping_disk_waits_are_charged_once():
    # Two chunks read back by the one VCPU queue behind each other on its paging disk: the VCPU
    # waits until the later read ends, not for the sum of both waits.
    mon, _ = run(config({"workload": {"vms": [{"workload": "database", "vcpus": 1,
                                                "memory_mb": 256, "work_s": 5.0}]}}), until=1.0)
    alloc, waited = mon.alloc, mon.waits.waited
    r = mon.guest.records[0]
    mon.pager.trim(r, r.resident_total() - 12)  # writes queued on its disk, nobody charged
    out = [j for j in range(r.n) if r.state[j] == ON_DISK][:2]
    assert len(out) == 2
    now, stall = mon.loop.now, waited[DISK]
    for j in out:
        assert alloc.page_in(r, j)
    end = mon.disks.free_at[mon.disks.disk_of(r.vm.id)]
    assert end > now + 0.4  # behind the 12 writes
    assert waited[DISK] - stall == pytest.approx(end - now)
    mon.waits.wait(r.vm.vcpus[0], end, DISK)  # a wait it already covers costs nothing more
    assert waited[DISK] - stall == pytest.approx(end - now)


def _io_log(overrides: list[str], acts: tuple[str, ...]) -> list[tuple[float, int, bool, int]]:
    """Every disk request of one run of the paging study: (time, disk, write, the pager's
    ``acts`` counters summed when it was issued)."""
    bus = Bus()
    log: list[tuple[float, int, bool, int]] = []

    def logged(disk: int, now: float, mb: float, write: bool) -> None:
        log.append((now, disk, write, sum(getattr(sim.pager, a) for a in acts)))

    bus.on_disk_request(logged)
    sim = build(compose(overrides), bus)
    sim.run()
    return log


@pytest.mark.parametrize("switch, acts", [
    ("paging_skip_freed", ("avoided_free", "avoided_free_reads")),
    ("paging_shared_once", ("avoided_shared",)),
    ("paging_virtual_disk", ("avoided_double",))])
def test_an_optimisation_changes_no_io_before_it_acts(switch, acts):
    """The invariant behind "each optimisation never adds I/O": with it on and off, a run
    issues the same disk requests until it first acts, and then it removes some (the
    controlled tests above). Totals over a whole run are not monotone (paging.py: from the
    first act on the two runs are different simulations), so they are not asserted."""
    common = ["+experiment=paging", "machine.memory_per_node_mb=128", "sim.duration_s=20"]
    on = _io_log([*common, f"policy.{switch}=true"], acts)
    off = _io_log([*common, f"policy.{switch}=false"], acts)
    first_act = next(i for i, e in enumerate(on) if e[3] > 0)  # it does act
    first_diff = next((i for i, (a, b) in enumerate(zip(on, off, strict=False))
                       if a[:3] != b[:3]), min(len(on), len(off)))
    assert all(e[3] == 0 for e in off)
    assert first_act <= first_diff < max(len(on), len(off))


def test_the_paging_study_gives_every_optimisation_something_to_do():
    m = simulate(compose(["+experiment=paging", "machine.memory_per_node_mb=128",
                          "sim.duration_s=20"])).metrics
    assert m["memory_overcommit_ratio"] > 2.0
    assert m["disk_writes_avoided_shared"] > 0  # VMs of one cell share their guest kernel
    assert m["disk_writes_avoided_double"] > 0
    assert m["disk_writes_avoided_free"] + m["disk_reads_avoided_free"] > 0


# -- the pager alone, on a frame store by hand ---------------------------------------------

def _eight_chunks(**policy):
    """One VM with eight resident private chunks, in FIFO order 0..7; the first four were
    touched since the pager last looked (reference bit set)."""
    w = world(nodes=1, cpus_per_node=1, memory_per_node_mb=64)
    frames = FrameStore(w.machine, chunk_mb=4)
    guest = GuestMemory(w.loop, frames, w.cpus, w.state.vms)
    disks = Disks(PolicyConfig(), w.bus)
    pager = Pager(PolicyConfig(**policy), w.loop, frames, guest, disks)
    vm = w.queue(w.vm(1, memory_mb=32), [0])
    r = guest.add(vm, 8, RandomStreams(0).get("memory/0"))
    for j in range(8):
        guest.map_private(r, j, frames.pop(0, 0, 0))
        r.ref[j] = 1 if j < 4 else 0
    r.used = 8
    return pager, disks, r


def test_pager_alone_evicts_unreferenced_chunks_first_writing_each_once():
    pager, disks, r = _eight_chunks()
    pager.trim(r, 4)
    assert [int(s) for s in r.state] == [RESIDENT] * 4 + [ON_DISK] * 4
    assert pager.pages_out == disks.writes == 4
    assert not any(r.ref[:4])  # the referenced ones had their second chance


def test_pager_alone_drops_a_chunk_the_guest_freed_instead_of_writing_it():
    for skip, writes in ((True, 0), (False, 1)):
        pager, disks, r = _eight_chunks(paging_skip_freed=skip)
        r.state[4] = FREED
        pager.trim(r, 7)
        assert pager.pages_out == 1 and disks.writes == writes
        assert r.state[4] == (EMPTY if skip else ON_DISK)
        assert pager.avoided_free == (1 if skip else 0)
