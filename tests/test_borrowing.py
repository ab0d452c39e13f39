"""Borrowing memory between cells (PAPER.md, Memory management; disco/vmm/borrowing.py)."""

import pytest
from conftest import merge
from memory_helpers import config, run, with_policy
from parts import world

from disco import SimConfig, simulate
from disco.config import PolicyConfig
from disco.engine import RandomStreams
from disco.runner import build
from disco.vmm.borrowing import Borrowing
from disco.vmm.frames import FrameStore
from disco.vmm.guest_memory import GuestMemory

# 128 MB nodes: cells of 256 MB. A 4-VCPU Database VM lives in one cell; at 384 MB it must
# borrow about 128 MB from the other cell as its buffer pool grows.
BIG_DB = {"machine": {"memory_per_node_mb": 128},
          "workload": {"vms": [{"workload": "database", "vcpus": 4, "memory_mb": 384,
                                "work_s": 3.0}]},
          "sim": {"duration_s": 10.0}}
FITTING_DB = {"machine": {"memory_per_node_mb": 128},
              "workload": {"vms": [{"workload": "database", "vcpus": 4, "memory_mb": 192,
                                    "work_s": 3.0}]},
              "sim": {"duration_s": 10.0}}


def test_no_borrowing_below_trigger_never_happens():
    # A VM that fits leaves its cell above the trigger: nothing is ever borrowed ...
    mon, m = run(config(FITTING_DB))
    assert m["borrow_operations"] == 0 and m["memory_borrowed_mb"] == 0
    assert min(mon.frames.cell_free) * 4 >= 16
    # ... and when borrowing does happen, the borrower was below the trigger at every loan.
    mon, m = run(config(BIG_DB))
    bw = mon.borrowing
    assert m["borrow_operations"] > 0
    assert 0 <= bw.max_borrower_free < bw.trigger
    # Trigger 0 borrows only on demand: when the cell has nothing left.
    mon, m = run(config(with_policy(BIG_DB, borrow_trigger_mb=0)))
    assert m["borrow_operations"] > 0 and mon.borrowing.max_borrower_free == 0


def test_lender_never_drops_below_floor():
    for floor in (32, 64):
        mon, m = run(config(with_policy(BIG_DB, lend_floor_mb=floor)))
        bw = mon.borrowing
        assert m["borrow_operations"] > 0
        assert bw.min_lender_free_after * 4 >= floor
    # The floor caps what can be lent: a higher floor lends less, and the rest is paged.
    low = run(config(with_policy(BIG_DB, lend_floor_mb=32)))[1]
    high = run(config(with_policy(BIG_DB, lend_floor_mb=192)))[1]
    assert high["memory_borrowed_mb"] < low["memory_borrowed_mb"]
    assert high["pages_out"] > 0 == low["pages_out"]


def test_borrowed_memory_makes_vm_depend_on_lender():
    mon, m = run(config(BIG_DB), until=3.0)  # still running, memory grown past its cell
    fs = mon.frames
    vm = mon.vms[0]
    assert vm.status == "running" and vm.home_cells == (0,)
    assert m["memory_borrowed_mb"] >= 64
    assert mon.guest.memory_cells(vm) == {0, 1}
    assert mon.guest.records[vm.id].lenders == [1]
    # Every borrowed frame it holds lies on the lender and is managed by its home cell.
    r = mon.guest.records[vm.id]
    on_lender = r.cell_count.get(1, 0)
    assert on_lender > 0
    frames = r.frame[r.frame >= 0]
    assert ((frames // fs.fpn >= 2) == (fs.manager[frames] != frames // fs.fpn // 2)).all()


def test_borrowed_amounts_balance_between_lender_and_borrower():
    mon, _ = run(config(BIG_DB), until=3.0)
    fs = mon.frames
    assert fs.on_loan > 0
    assert fs.on_loan == sum(k for d in fs.lent.values() for k in d.values())
    mon.checker().audit_memory()  # recounts every frame's manager against the books


def test_database_bigger_than_its_home_cell_completes_by_borrowing_with_small_slowdown():
    big = simulate(config(BIG_DB))
    fit = simulate(config(FITTING_DB))
    assert big.vms["status"] == ["done"] and fit.vms["status"] == ["done"]
    assert big.metrics["memory_borrowed_mb"] >= 100 and big.metrics["pages_out"] == 0
    assert big.metrics["remote_access_fraction"] > fit.metrics["remote_access_fraction"]
    # Remote memory costs it a little, not a lot (the paper: 596 MB borrowed, < 1 %).
    extra = big.vms["slowdown"][0] / fit.vms["slowdown"][0] - 1.0
    assert 0.0 < extra < 0.06


def test_borrow_policy_none_keeps_memory_in_own_cells_and_pages_instead():
    mon, m = run(config(with_policy(BIG_DB, borrow_policy="none")))
    assert m["borrow_operations"] == 0 and m["pages_out"] > 0
    assert mon.guest.memory_cells(mon.vms[0]) == {0}
    # The fixed-partition baseline never borrows either.
    fp = run(config({**BIG_DB, "policy": {"name": "fixed_partition"}}))[1]
    assert fp["borrow_operations"] == 0


def test_borrow_anywhere_takes_the_freest_cell_ignoring_containment():
    # Four cells of one node: the paper's policy keeps to one lender, "anywhere" spreads.
    mix = {"machine": {"memory_per_node_mb": 128}, "cells": {"count": 4},
           "workload": {"vms": [{"workload": "database", "vcpus": 2, "memory_mb": 320,
                                 "work_s": 3.0}]},
           "sim": {"duration_s": 2.5}}
    paper_mon, paper = run(config(mix))
    any_mon, anywhere = run(config(with_policy(mix, borrow_policy="anywhere")))
    assert paper["borrow_operations"] > 0 and anywhere["borrow_operations"] > 0
    assert len(paper_mon.guest.memory_cells(paper_mon.vms[0])) < \
        len(any_mon.guest.memory_cells(any_mon.vms[0]))


def test_raising_the_trigger_borrows_earlier():
    low = run(config(with_policy(BIG_DB, borrow_trigger_mb=8)), until=1.5)[1]
    high = run(config(with_policy(BIG_DB, borrow_trigger_mb=32, lend_floor_mb=32)),
               until=1.5)[1]
    assert high["memory_borrowed_mb"] >= low["memory_borrowed_mb"]
    assert high["borrow_operations"] > 0


def _loans(seed: int, trigger: int, **policy) -> tuple[dict, float]:
    """BIG_DB (not audited) with the lend floor above every trigger: its metrics and when it
    asked for its first loan."""
    cfg = merge(BIG_DB, {"sim": {"seed": seed},
                         "policy": {"borrow_trigger_mb": trigger,
                                    "lend_floor_mb": max(64, trigger), **policy}})
    sim = build(SimConfig.from_dict(cfg))
    sim.run()
    m = sim.metrics()
    assert m["vms_completed"] == 1 and m["pages_out"] == 0
    return m, sim.borrowing.first_loan_s


@pytest.mark.parametrize("seed", (0, 1, 2))
def test_borrow_trigger_changes_when_loans_are_taken(seed):
    (m0, t0), (m16, t16), (m64, t64) = (_loans(seed, t) for t in (0, 16, 64))
    # Trigger 0 borrows on demand (it is not "off") and waits for every loan ...
    assert m0["borrow_operations"] > 0 and m0["loan_wait_s"] > 0.1
    # ... a higher trigger borrows earlier, ahead of demand, holding more on loan and in
    # reserve, and its allocations do not wait.
    assert t64 < t16 < t0
    assert m16["loan_wait_s"] < m0["loan_wait_s"] / 10
    assert m64["memory_borrowed_mb"] > m16["memory_borrowed_mb"] >= m0["memory_borrowed_mb"]
    assert m64["memory_reserved_mb"] > m16["memory_reserved_mb"] > m0["memory_reserved_mb"]
    assert m16["vm_runtime_mean_s"] < m0["vm_runtime_mean_s"]


def test_slower_loans_wait_longer_and_a_higher_trigger_hides_them():
    fast = {t: _loans(0, t)[0] for t in (0, 4)}
    slow = {t: _loans(0, t, loan_mb_per_s=100.0)[0] for t in (0, 4, 16)}
    assert slow[0]["loan_wait_s"] > 2 * fast[0]["loan_wait_s"] > 0.0
    assert slow[0]["loan_wait_s"] > slow[4]["loan_wait_s"] > slow[16]["loan_wait_s"] == 0.0
    assert fast[4]["loan_wait_s"] == 0.0  # at 400 MB/s a 4 MB lead is enough
    assert slow[0]["vm_runtime_mean_s"] > slow[16]["vm_runtime_mean_s"]


def test_a_lender_failure_kills_the_borrower_and_its_memory_goes_offline():
    cfg = config({**BIG_DB, "faults": {"scheduled": [{"type": "node", "node": 2, "at_s": 3.0}]}})
    mon, m = run(cfg, until=4.0)
    fs = mon.frames
    assert mon.vms[0].status == "lost"  # its borrowed memory lay on the failed cell
    assert m["vms_lost_dependent"] == 1
    assert not fs.cell_online[1] and fs.cell_free[1] == 0
    assert fs.on_loan == 0 and not mon.guest.records
    mon.checker().audit_memory()


def test_a_repaired_cell_lends_again():
    cfg = config({**BIG_DB, "faults": {"scheduled": [{"type": "node", "node": 2, "at_s": 0.2}],
                                       "cell_repair_s": 0.5}})
    mon, m = run(cfg)
    fs = mon.frames
    assert fs.cell_online == [True, True]
    # It had not grown past its cell by the fault, so every loan came after the repair.
    assert mon.vms[0].status == "done" and m["borrow_operations"] > 0
    assert fs.cell_free[1] == 2 * fs.fpn  # all of it back
    mon.checker().audit_memory()


def test_the_borrowing_study_measures_borrowing_not_paging():
    """conf/experiment/memory_borrowing: on its short machine cells borrow but nothing is
    paged (at 256 MB per node the slowdown was paging's), and every VM finishes under every
    policy, so a mean run time over finished VMs drops none (borrow_policy none pages)."""
    from pathlib import Path

    import yaml

    from disco.framework.compose import compose

    conf = Path(__file__).resolve().parents[1] / "conf" / "experiment" / "memory_borrowing.yaml"
    sizes = yaml.safe_load(conf.read_text())["sweep"]["params"]["machine.memory_per_node_mb"]
    short = min(int(mb) for mb in str(sizes).split(","))
    study = ["+experiment=memory_borrowing", f"machine.memory_per_node_mb={short}"]
    paper = simulate(compose([*study, "policy.borrow_policy=paper"])).metrics
    assert paper["memory_borrowed_mb"] >= 200 and paper["pages_out"] == 0
    none = simulate(compose([*study, "policy.borrow_policy=none"])).metrics
    assert none["pages_out"] > 0 and none["vms_completed"] == none["vms_total"]


# -- borrowing alone, on a frame store by hand ---------------------------------------------

def _short_cell(trigger_mb=16, floor_mb=32):
    """Two cells of one node of 64 MB (16 frames of 4 MB). A VM homed in cell 0 holds 13 of
    its frames: its own free (3) is below the trigger (4 frames)."""
    w = world(nodes=2, cpus_per_node=1, nodes_per_cell=1, memory_per_node_mb=64)
    frames = FrameStore(w.machine, chunk_mb=4)
    guest = GuestMemory(w.loop, frames, w.cpus, w.state.vms)
    p = PolicyConfig(borrow_trigger_mb=trigger_mb, lend_floor_mb=floor_mb)
    bw = Borrowing(p, True, w.loop, frames, guest)
    vm = w.queue(w.vm(1, memory_mb=80), [0])
    vm.pref_cells = (0, 1)
    r = guest.add(vm, 20, RandomStreams(0).get("memory/0"))
    for j in range(13):
        guest.map_private(r, j, frames.pop(0, 0, 0))
    return frames, guest, bw, r


def test_borrowing_alone_a_short_cell_borrows_a_unit_and_the_vm_then_depends_on_the_lender():
    frames, guest, bw, r = _short_cell()
    assert frames.cell_free == [3, 16]
    assert bw.replenish(0, r, 0.0) and r.lenders == [1]
    assert frames.loan_free == {0: {1: 1}} and frames.cell_free == [3, 15]
    f = bw.take(r, 0, 0.0)
    assert frames.node_of(f) == 1 and frames.manager[f] == 0  # on the lender, managed by 0
    guest.map_private(r, 13, f)
    assert guest.memory_cells(r.vm) == {0, 1}
    # Taking it left the reserve empty while the cell is still short: a unit is on its way
    # again, ahead of demand.
    assert bw.operations == 2 and frames.loan_free == {0: {1: 1}}
    assert bw.max_borrower_free < bw.trigger


def test_borrowing_alone_a_loan_is_usable_once_the_lender_has_handed_it_over():
    frames, guest, bw, r = _short_cell()  # rpc 16 us, 400 MB/s: a 4 MB unit in 10 ms
    assert bw.replenish(0, r, 1.0)  # asked for at 1 s, in the books at once ...
    assert frames.loan_free == {0: {1: 1}}
    f = bw.take(r, 0, 1.0)  # ... but an allocation now takes it in flight
    assert f >= 0 and bw.ready_at == pytest.approx(1.0 + 16e-6 + 0.01)
    guest.map_private(r, 13, f)
    # Taking it asked for the next unit (a unit ahead of demand, the cell being short): an
    # allocation once that has arrived waits for nothing.
    assert frames.loan_free == {0: {1: 1}} and bw.operations == 2
    assert bw.take(r, 0, 1.02) >= 0 and bw.ready_at == 0.0


def test_borrowing_alone_a_lender_keeps_its_floor():
    frames, guest, bw, r = _short_cell(floor_mb=64)  # lending a frame would leave 15 < 16
    assert not bw.replenish(0, r, 0.0) and bw.take(r, 0, 0.0) == -1
    assert frames.on_loan == 0 and not r.lenders


def test_borrowing_alone_a_borrower_no_longer_short_gives_its_reserve_back():
    frames, guest, bw, r = _short_cell()
    bw.replenish(0, r, 0.0)
    for j in range(10):  # the VM frees most of its memory: cell 0 is no longer short
        guest.unmap_private(r, j, int(r.frame[j]))
    bw.settle()
    assert frames.on_loan == 0 and frames.cell_free == [13, 16] and bw.returns == 1


def test_borrowing_alone_a_failed_lender_takes_its_loans_with_it():
    frames, guest, bw, r = _short_cell()
    bw.replenish(0, r, 0.0)
    guest.map_private(r, 13, bw.take(r, 0, 0.0))
    for f in range(16, 32):  # the bus's order: the lender's frames are lost first ...
        if frames.owner[f] >= 0:
            guest.lose(f)
    bw.on_cell_failed(1)  # ... then the loans go ...
    frames.on_cell_failed(1)  # ... then the cell closes
    assert frames.on_loan == 0 and frames.lent == {0: {1: 0}} and not r.lenders
    assert frames.cell_free[1] == 0 and not frames.cell_online[1]
    assert guest.memory_cells(r.vm) == {0}
