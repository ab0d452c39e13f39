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

When a cell fails, the loans it made vanish with it and the loans it held are cancelled
(``on_cell_failed``): unused reserves go back, borrowed frames in use become the lender's own.
"""

from __future__ import annotations

from disco.config import PolicyConfig
from disco.vmm.frames import FrameStore
from disco.vmm.guest_memory import GuestMemory, VMMemory
from disco.vmm.reporting import Report


class Borrowing:
    def __init__(self, p: PolicyConfig, borrows: bool, frames: FrameStore,
                 guest: GuestMemory) -> None:
        chunk = p.chunk_mb
        self.frames = frames
        self.guest = guest
        self.policy = p.borrow_policy if borrows else "none"
        # Thresholds in chunks, rounded up (a 4 MB unit is one 4 MB chunk).
        self.trigger = -(-p.borrow_trigger_mb // chunk)
        self.unit = max(1, -(-p.borrow_unit_mb // chunk))
        self.floor = -(-p.lend_floor_mb // chunk)
        self.peak_on_loan = 0
        self.operations = 0
        self.returns = 0
        # Checked by the tests: the borrower's own free at each loan (must be < trigger) and
        # the lender's own free right after it (must be >= floor).
        self.max_borrower_free = -1
        self.min_lender_free_after = 1 << 60

    def report(self, out: Report) -> None:
        out.metrics["memory_borrowed_mb"] = self.peak_on_loan * self.frames.chunk_mb
        out.metrics["borrow_operations"] = self.operations

    # -- the policy -----------------------------------------------------------------------
    def take(self, vmm: VMMemory, near: int) -> int:
        """A frame from the home cells' borrowed reserves: the VM's own lenders, topped up if
        need be; then any lender's reserve in its home cells (which joins its list). -1."""
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
                    if pools.get(lender, 0) > 0:
                        f = frames.pop(lender, b, near)
                        if f >= 0:
                            if lender not in vmm.lenders:
                                vmm.lenders.append(lender)
                            return f
            if attempt == 0:
                for b in home:
                    self.replenish(b, vmm)
        return -1

    def replenish(self, b: int, vmm: VMMemory) -> bool:
        """Cell ``b`` is short: ensure ``unit`` frames available from each lender on the VM's
        list, adding a lender when none can. True if any loan was made."""
        frames = self.frames
        if self.policy == "none" or frames.cell_free[b] >= self.trigger \
                or not frames.cell_online[b]:
            return False
        pools = frames.reserves(b)
        made = False
        lender: int | None
        if self.policy == "paper":
            for lender in vmm.lenders:
                have = pools.get(lender, 0)
                if have < self.unit and self._lend(lender, b, self.unit):
                    made = True
            if any(pools.get(lender, 0) for lender in vmm.lenders):
                return made
            lender = self._new_lender(vmm)
        else:  # anywhere: the cell with the most free memory
            cell_free, online = frames.cell_free, frames.cell_online
            cands = [c for c in range(len(cell_free)) if c not in vmm.vm.home_cells
                     and online[c]]
            lender = max(cands, key=lambda c: (cell_free[c], -c)) if cands else None
        if lender is not None and self._lend(lender, b, self.unit):
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

    def _lend(self, lender: int, b: int, frames: int) -> bool:
        """Move management of ``frames`` free frames of ``lender`` to ``b`` (floor kept)."""
        store = self.frames
        if not store.cell_online[lender] or store.cell_free[lender] - frames < self.floor:
            return False
        self.max_borrower_free = max(self.max_borrower_free, store.cell_free[b])
        moved = store.transfer(lender, b, frames)
        self.peak_on_loan = max(self.peak_on_loan, store.on_loan)
        self.operations += 1
        self.min_lender_free_after = min(self.min_lender_free_after, store.cell_free[lender])
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

    # -- a cell failed (bus) ------------------------------------------------------------------
    def on_cell_failed(self, cell: int) -> None:
        """Subscribed after the guest memory has lost the cell's frames: the loans the cell
        made vanish with it; of those it held, unused reserves go back and frames in use
        become the lender's own; nobody borrows from it any more."""
        frames = self.frames
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
