"""Borrowing memory between cells (PAPER.md, Memory management: borrowing).

Each cell manages its own nodes' frames. A cell whose own free memory falls below
``borrow_trigger_mb`` (16 MB) makes sure each cell on its allocation-preference list has at
least ``borrow_unit_mb`` (4 MB) available to it, borrowing in ``borrow_unit_mb`` units: the
lender hands *management* of free frames to the borrower (they stay on the lender's nodes, so
they cost remote latency), and a cell lends only while it keeps ``lend_floor_mb`` (32 MB) free
after the loan. A borrower that is no longer short (own free >= trigger + unit) hands its unused
reserves back; a borrowed frame in use returns to its borrower's reserve when freed.

*Allocation-preference list.* ``vm.pref_cells`` orders every cell (home cells, then by router
distance); the list a VM actually allocates from is its home cells plus the lenders it has been
given (``VMMemory.lenders``). Reserves are kept from each of them; only when none of them can
lend is the next lender added: first a cell the VM already depends on (memory there, a VCPU
there), then the preference order -- so a VM's dependencies, and hence the VMs a cell's fault
kills, grow as little as possible. Every frame a VM takes from a loan makes it depend on the
lending cell (``MemoryManager.memory_cells``).

Variants (``policy.borrow_policy``): ``paper`` as above; ``none``: a VM uses only its own cells'
memory, the fixed-partition behaviour (policy ``fixed_partition`` always uses it); ``anywhere``:
borrow from whichever cell has the most free memory, ignoring containment.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from disco.config import PolicyConfig

if TYPE_CHECKING:
    from disco.vmm.memory import MemoryManager, VMMemory


class Borrowing:
    def __init__(self, mm: MemoryManager, p: PolicyConfig, borrows: bool) -> None:
        chunk = p.chunk_mb
        self.mm = mm
        self.policy = p.borrow_policy if borrows else "none"
        # Thresholds in chunks, rounded up (a 4 MB unit is one 4 MB chunk).
        self.trigger = -(-p.borrow_trigger_mb // chunk)
        self.unit = max(1, -(-p.borrow_unit_mb // chunk))
        self.floor = -(-p.lend_floor_mb // chunk)
        self.lent: dict[int, dict[int, int]] = {}  # borrower -> lender -> frames managed
        self.loan_free: dict[int, dict[int, int]] = {}  # borrower -> lender -> of them free
        self.on_loan = 0
        self.peak_on_loan = 0
        self.operations = 0
        self.returns = 0
        # Checked by the tests: the borrower's own free at each loan (must be < trigger) and
        # the lender's own free right after it (must be >= floor).
        self.max_borrower_free = -1
        self.min_lender_free_after = 1 << 60

    # -- counters kept by MemoryManager._pop/_push ----------------------------------------
    def taken(self, borrower: int, lender: int) -> None:
        self.loan_free[borrower][lender] -= 1

    def returned(self, borrower: int, lender: int) -> None:
        self.loan_free[borrower][lender] += 1

    # -- the policy -----------------------------------------------------------------------
    def take(self, vmm: VMMemory, near: int) -> int:
        """A frame from the home cells' borrowed reserves: the VM's own lenders, topped up if
        need be; then any lender's reserve in its home cells (which joins its list). -1."""
        if self.policy == "none":
            return -1
        home = vmm.vm.home_cells
        for attempt in range(3):
            for b in home:
                pools = self.loan_free.get(b)
                if not pools:
                    continue
                lenders = vmm.lenders if attempt < 2 else list(pools)
                for lender in lenders:
                    if pools.get(lender, 0) > 0:
                        f = self.mm._pop(lender, b, near)
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
        mm = self.mm
        if self.policy == "none" or mm.cell_free[b] >= self.trigger or not mm.cell_online[b]:
            return False
        pools = self.loan_free.setdefault(b, {})
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
            cands = [c for c in range(len(mm.cell_free)) if c not in vmm.vm.home_cells
                     and mm.cell_online[c]]
            lender = max(cands, key=lambda c: (mm.cell_free[c], -c)) if cands else None
        if lender is not None and self._lend(lender, b, self.unit):
            if lender not in vmm.lenders:
                vmm.lenders.append(lender)
            made = True
        return made

    def _new_lender(self, vmm: VMMemory) -> int | None:
        mm = self.mm
        vm = vmm.vm
        depends = mm.memory_cells(vm) | set(vm.cell_vcpus)
        cands = [c for c in vm.pref_cells if c not in vm.home_cells and c not in vmm.lenders
                 and mm.cell_online[c] and mm.cell_free[c] - self.unit >= self.floor]
        if not cands:
            return None
        for c in cands:
            if c in depends:
                return c
        return cands[0]

    def _lend(self, lender: int, b: int, frames: int) -> bool:
        """Move management of ``frames`` free frames of ``lender`` to ``b`` (floor kept)."""
        mm = self.mm
        if not mm.cell_online[lender] or mm.cell_free[lender] - frames < self.floor:
            return False
        self.max_borrower_free = max(self.max_borrower_free, mm.cell_free[b])
        near = mm.machine.cell_nodes(b)[0]
        moved = 0
        for n in mm._nodes_near(near, lender):
            own = mm.free[n].get(lender)
            while own and moved < frames:
                f = own.pop()
                mm.f_mgr[f] = b
                mm.free[n].setdefault(b, []).append(f)
                moved += 1
            if moved == frames:
                break
        mm.cell_free[lender] -= moved
        lent = self.lent.setdefault(b, {})
        lent[lender] = lent.get(lender, 0) + moved
        pools = self.loan_free.setdefault(b, {})
        pools[lender] = pools.get(lender, 0) + moved
        self.on_loan += moved
        self.peak_on_loan = max(self.peak_on_loan, self.on_loan)
        self.operations += 1
        self.min_lender_free_after = min(self.min_lender_free_after, mm.cell_free[lender])
        return moved > 0

    def settle(self) -> None:
        """Borrowers no longer short hand their unused reserves back (each tick, at exits)."""
        mm = self.mm
        for b, pools in self.loan_free.items():
            if mm.cell_free[b] < self.trigger + self.unit and mm.cell_online[b]:
                continue
            for lender, free in pools.items():
                if free:
                    self.give_back(b, lender, free)

    def give_back(self, b: int, lender: int, frames: int) -> None:
        mm = self.mm
        moved = 0
        for n in mm.machine.cell_nodes(lender):
            pool = mm.free[n].get(b)
            if not pool:
                continue
            own = mm.free[n].setdefault(lender, [])
            while pool and moved < frames:
                f = pool.pop()
                mm.f_mgr[f] = lender
                own.append(f)
                moved += 1
        self.loan_free[b][lender] -= moved
        self.lent[b][lender] -= moved
        self.on_loan -= moved
        mm.cell_free[lender] += moved
        self.returns += moved

    def unlend(self, b: int, lender: int) -> None:
        """An allocated borrowed frame leaves the loan (its borrower or lender failed)."""
        self.lent[b][lender] -= 1
        self.on_loan -= 1
