"""Borrowing memory between cells (PAPER.md, Memory management: borrowing).

Each cell manages its own nodes' frames. A cell whose own free memory falls below
``borrow_trigger_mb`` makes sure each cell on its allocation-preference list has at least
``borrow_unit_mb`` available to it, borrowing in ``borrow_unit_mb`` units: the lender hands
*management* of free frames to the borrower (they stay on the lender's nodes, so they cost
remote latency), and a cell lends only while it keeps ``lend_floor_mb`` free after the loan.
A borrower that is no longer short (own free >= trigger + unit) hands its unused reserves back;
a borrowed frame in use returns to its borrower's reserve when freed. The frames and the loan
books are the frame store's (``frames.py``); this module decides when to lend and to whom.

*Allocation-preference list.* ``vm.pref_cells`` orders every cell (home cells, then by router
distance); the list a VM actually allocates from is its home cells plus the lenders it has been
given (``VMMemory.lenders``). Reserves are kept from each of them; only when none of them can
lend is the next lender added: first a cell the VM already depends on (memory there, a VCPU
there), then the preference order -- so a VM's dependencies, and hence the VMs a cell's fault
kills, grow as little as possible. Every frame a VM takes from a loan makes it depend on the
lending cell (``GuestMemory.memory_cells``).

Variants (``policy.borrow_policy``): ``paper`` as above; ``none``: a VM uses only its own cells'
memory (a system whose cells cannot lend, ``Policy.borrows_memory`` false, always behaves so:
fixed partitions); ``anywhere``: borrow from whichever cell has the most free memory, ignoring
containment.

**Loans take time** [A]: a loan of ``m`` MB asked for at time ``at`` is usable ``rpc_us + m /
loan_mb_per_s`` later (an RPC to the lender, whose monitor then updates the firewall and free
lists page by page: a 4 MB unit in ~10 ms, the time the paper sized its thresholds to: a 16 MB
trigger covers what a guest allocates while a loan is on its way). Loans asked for together
travel together: it is their latency that counts, not a lender's throughput. The frames are in
the borrower's reserve at once (the books balance, the lender's floor is kept), but an
allocation that finds only loans in flight takes a frame of the first to arrive and its VCPU
waits until then (``ready_at``; ``loan_wait_s``, allocation.py).
So the trigger is a lead time: borrowing late (a low trigger) makes allocations wait for loans,
borrowing early ties up the lenders' memory sooner and for longer (``memory_reserved_mb``: the
most memory borrowed and not yet in use, right after a loan). Below the trigger a cell tops its
own free plus its reserves up to the trigger, a unit at a time. A trigger of 0 borrows only on
demand: one unit when the cell has no frame and no reserve left (the same rule holds at any
trigger); ``borrow_policy=none`` is "off".

When a cell fails, the loans it made vanish with it and the loans it held are cancelled
(``on_cell_failed``): unused reserves go back, borrowed frames in use become the lender's own,
loans in flight to or from it are dropped.
"""

from __future__ import annotations

from collections import deque

from disco.config import PolicyConfig
from disco.engine import EventLoop
from disco.vmm.frames import FrameStore
from disco.vmm.guest_memory import GuestMemory, VMMemory
from disco.vmm.reporting import Report


class Borrowing:
    def __init__(self, p: PolicyConfig, borrows: bool, loop: EventLoop, frames: FrameStore,
                 guest: GuestMemory) -> None:
        chunk = p.chunk_mb
        self.loop = loop
        self.frames = frames
        self.guest = guest
        self.policy = p.borrow_policy if borrows else "none"
        # Thresholds in chunks, rounded up (a 4 MB unit is one 4 MB chunk).
        self.trigger = -(-p.borrow_trigger_mb // chunk)
        self.unit = max(1, -(-p.borrow_unit_mb // chunk))
        self.floor = -(-p.lend_floor_mb // chunk)
        self.rpc_s = p.rpc_us * 1e-6
        self.frame_s = chunk / p.loan_mb_per_s  # a lender hands one frame over in this long
        # (borrower, lender) -> its loans still in flight, oldest first: [ready time, frames
        # of it not yet taken].
        self.in_flight: dict[tuple[int, int], deque[list[float]]] = {}
        self.ready_at = 0.0  # set by take(): when the frame it returned can be used
        self.first_loan_s = -1.0  # when the first loan was asked for (-1: none; tests)
        self.peak_on_loan = 0
        self.peak_ahead = 0  # most borrowed frames not yet in use, right after a loan
        self.operations = 0
        self.returns = 0
        # Checked by the tests: the borrower's own free at each loan (below the trigger, or 0
        # on demand) and the lender's own free right after it (must be >= floor).
        self.max_borrower_free = -1
        self.min_lender_free_after = 1 << 60

    def report(self, out: Report) -> None:
        chunk = self.frames.chunk_mb
        out.metrics["memory_borrowed_mb"] = self.peak_on_loan * chunk
        # Borrowed ahead of use at most: memory the lenders gave up early (a trigger's cost).
        out.metrics["memory_reserved_mb"] = self.peak_ahead * chunk
        out.metrics["borrow_operations"] = self.operations

    # -- loans in flight ------------------------------------------------------------------
    def _pending(self, b: int, lender: int, at: float) -> int:
        """Frames of ``b``'s reserve from ``lender`` still in flight at time ``at``."""
        q = self.in_flight.get((b, lender))
        if not q:
            return 0
        now = self.loop.now
        while q and q[0][0] <= now:
            q.popleft()
        pending = 0
        for e in q:
            if e[0] > at:
                pending += int(e[1])
        return pending

    def _clamp(self, b: int, lender: int) -> None:
        """Reserve frames left (given back, lost): in-flight ones beyond them are cancelled,
        the newest first."""
        q = self.in_flight.get((b, lender))
        if not q:
            return
        have = self.frames.loan_free.get(b, {}).get(lender, 0)
        pending = 0
        for e in q:
            pending += int(e[1])
        while q and pending > have:
            e = q[-1]
            cut = min(int(e[1]), pending - have)
            e[1] -= cut
            pending -= cut
            if e[1] <= 0:
                q.pop()

    # -- the policy -----------------------------------------------------------------------
    def take(self, vmm: VMMemory, near: int, at: float) -> int:
        """A frame, for an allocation at time ``at``, from the home cells' borrowed reserves:
        the VM's own lenders, topped up if need be; then any lender's reserve in its home
        cells (which joins its list); then a frame of the loan in flight that arrives first
        (``ready_at`` says when). -1 if none."""
        self.ready_at = 0.0
        if self.policy == "none":
            return -1
        frames = self.frames
        home = vmm.vm.home_cells
        for attempt in range(3):
            for b in home:
                pools = frames.loan_free.get(b)
                if not pools:
                    continue
                lenders = vmm.lenders if attempt < 2 else list(pools)
                for lender in lenders:
                    have = pools.get(lender, 0)
                    if have > 0 and have > self._pending(b, lender, at):
                        f = frames.pop(lender, b, near)
                        if f >= 0:
                            self._taken(vmm, b, lender, at)
                            return f
            if attempt == 0:
                for b in home:
                    self.replenish(b, vmm, at)
        best: tuple[float, int, int] | None = None
        for b in home:
            pools = frames.loan_free.get(b)
            if not pools:
                continue
            for lender in list(pools):
                q = self.in_flight.get((b, lender))
                if not q or pools[lender] <= 0:
                    continue
                for e in q:  # the first loan of this pair still to arrive
                    if e[0] > at and e[1] > 0:
                        if best is None or e[0] < best[0]:
                            best = (e[0], b, lender)
                        break
        if best is None:
            return -1
        t, b, lender = best
        f = frames.pop(lender, b, near)
        if f < 0:
            return -1
        for e in self.in_flight[(b, lender)]:
            if e[0] == t:
                e[1] -= 1
                break
        self.ready_at = t
        self._taken(vmm, b, lender, at)
        return f

    def _taken(self, vmm: VMMemory, b: int, lender: int, at: float) -> None:
        """A frame of ``b``'s reserve from ``lender`` was taken: the lender joins the VM's list;
        below the trigger the reserve is topped up again, a unit ahead of demand."""
        if lender not in vmm.lenders:
            vmm.lenders.append(lender)
        if self.frames.loan_free[b].get(lender, 0) < self.unit:
            self.replenish(b, vmm, at, demand=False)

    def replenish(self, b: int, vmm: VMMemory, at: float, demand: bool = True) -> bool:
        """Cell ``b`` may need loans for an allocation at ``at``. Below the trigger it keeps
        ``unit`` frames coming from each lender on the VM's list and tops its own free plus
        its reserves up to the trigger, adding a lender when none on the list can lend; with
        ``demand``, a cell with no frame and no reserve left borrows one unit (a trigger of 0
        borrows only so). True if any loan was made."""
        frames = self.frames
        if self.policy == "none" or not frames.cell_online[b]:
            return False
        pools = frames.reserves(b)
        free = frames.cell_free[b]
        if free >= self.trigger:
            if not (demand and free == 0 and not sum(pools.values())):
                return False
            target = self.unit  # on demand: one unit
        else:
            target = self.trigger
        made = False
        lender: int | None
        if self.policy == "paper":
            if free < self.trigger:
                for lender in vmm.lenders:
                    if pools.get(lender, 0) < self.unit and self._lend(lender, b, at):
                        made = True
            for lender in vmm.lenders:
                while (frames.cell_free[b] + sum(pools.values()) < target
                       and self._lend(lender, b, at)):
                    made = True
            if any(pools.get(lender, 0) for lender in vmm.lenders):
                return made
            lender = self._new_lender(vmm)
            while lender is not None and self._lend(lender, b, at):
                made = True
                if lender not in vmm.lenders:
                    vmm.lenders.append(lender)
                if frames.cell_free[b] + sum(pools.values()) >= target:
                    break
            return made
        # anywhere: a unit at a time from the cell with the most free memory
        cell_free, online = frames.cell_free, frames.cell_online
        while cell_free[b] + sum(pools.values()) < target:
            cands = [c for c in range(len(cell_free)) if c not in vmm.vm.home_cells
                     and online[c]]
            lender = max(cands, key=lambda c: (cell_free[c], -c)) if cands else None
            if lender is None or not self._lend(lender, b, at):
                break
            if lender not in vmm.lenders:
                vmm.lenders.append(lender)
            made = True
        return made

    def _new_lender(self, vmm: VMMemory) -> int | None:
        frames = self.frames
        vm = vmm.vm
        depends = self.guest.memory_cells(vm) | set(vm.cell_vcpus)
        cands = [c for c in vm.pref_cells if c not in vm.home_cells and c not in vmm.lenders
                 and frames.cell_online[c] and frames.cell_free[c] - self.unit >= self.floor]
        if not cands:
            return None
        for c in cands:
            if c in depends:
                return c
        return cands[0]

    def _lend(self, lender: int, b: int, at: float) -> bool:
        """Move management of a unit of free frames of ``lender`` to ``b`` (floor kept),
        asked for at ``at``: usable once the lender has handed it over."""
        store = self.frames
        n = self.unit
        if not store.cell_online[lender] or store.cell_free[lender] - n < self.floor:
            return False
        self.max_borrower_free = max(self.max_borrower_free, store.cell_free[b])
        moved = store.transfer(lender, b, n)
        self.peak_on_loan = max(self.peak_on_loan, store.on_loan)
        self.peak_ahead = max(self.peak_ahead, store.reserved)
        self.operations += 1
        self.min_lender_free_after = min(self.min_lender_free_after, store.cell_free[lender])
        if moved:
            ready = at + self.rpc_s + moved * self.frame_s
            self.in_flight.setdefault((b, lender), deque()).append([ready, float(moved)])
            if self.first_loan_s < 0.0:
                self.first_loan_s = at
        return moved > 0

    def settle(self) -> None:
        """Borrowers no longer short hand their unused reserves back (each tick, at exits)."""
        frames = self.frames
        for b, pools in frames.loan_free.items():
            if frames.cell_free[b] < self.trigger + self.unit and frames.cell_online[b]:
                continue
            for lender, free in pools.items():
                if free:
                    self.give_back(b, lender, free)

    def give_back(self, b: int, lender: int, frames: int) -> None:
        self.returns += self.frames.give_back(b, lender, frames)
        self._clamp(b, lender)

    # -- a cell failed (bus) ------------------------------------------------------------------
    def on_cell_failed(self, cell: int) -> None:
        """Subscribed after the guest memory has lost the cell's frames: the loans the cell
        made vanish with it; of those it held, unused reserves go back and frames in use
        become the lender's own; nobody borrows from it any more."""
        frames = self.frames
        for key in [k for k in self.in_flight if cell in k]:
            del self.in_flight[key]
        for b, pools in frames.loan_free.items():
            if pools.get(cell):
                self.give_back(b, cell, pools[cell])
        pools = frames.loan_free.get(cell, {})
        for lender, free in list(pools.items()):
            if free:
                self.give_back(cell, lender, free)
        for lender in list(frames.lent.get(cell, {})):
            frames.disown(cell, lender)
        frames.reclaim_free(cell)
        for r in self.guest.records.values():
            if cell in r.lenders:
                r.lenders.remove(cell)
