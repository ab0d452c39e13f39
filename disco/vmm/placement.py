"""Where an arriving VM's VCPUs go, and its allocation-preference list of cells.

A VM gets as few whole cells as hold its VCPUs (containment: a 4-VCPU VM on the paper machine
lives in one cell), the least committed contiguous run of cells unless the mix pins a home
cell; within them each VCPU takes a distinct CPU, the least loaded first. The preference list
is the home cells, then the others by router distance (the memory issue allocates along it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from disco.vmm.state import RUNNABLE, VM

if TYPE_CHECKING:
    from disco.vmm.monitor import Monitor


class Placement:
    def __init__(self, mon: Monitor) -> None:
        self.mon = mon

    def choose_cells(self, n_vcpus: int, home_cell: int | None) -> range | None:
        m = self.mon.machine
        k = -(-n_vcpus // m.cpus_per_cell)
        live = self.mon.cell_live
        if not all(live):
            return self._choose_live_cells(k, home_cell)
        if home_cell is not None:
            start = min(home_cell, m.cells - k)
        else:
            assigned = self.mon.cell_assigned
            window = sum(assigned[:k])
            best, start = window, 0
            for s in range(1, m.cells - k + 1):
                window += assigned[s + k - 1] - assigned[s - 1]
                if window < best:
                    best, start = window, s
        return range(start, start + k)

    def _choose_live_cells(self, k: int, home_cell: int | None) -> range | None:
        """Some cells failed (faults): the best window of live cells, None if none fits."""
        m = self.mon.machine
        live, assigned = self.mon.cell_live, self.mon.cell_assigned
        starts = [s for s in range(m.cells - k + 1) if all(live[s:s + k])]
        if not starts:
            return None
        if home_cell is not None:
            start = min(starts, key=lambda s: (abs(s - home_cell), s))
        else:
            start = min(starts, key=lambda s: (sum(assigned[s:s + k]), s))
        return range(start, start + k)

    def arrive(self, vm: VM, home_cell: int | None) -> None:
        mon = self.mon
        m = mon.machine
        cells = self.choose_cells(len(vm.vcpus), home_cell)
        if cells is None:  # too few live cells after faults: wait for a repair, or never run
            recovery = mon.recovery
            if recovery is None or not recovery.defer_arrival(vm, home_cell):
                mon.kill_vm(vm)
            return
        # CPUs of live cells; they may be paused for a moment by fault recovery.
        cpus = [c for cell in cells for c in mon.cpus[cell * m.cpus_per_cell:
                                                     (cell + 1) * m.cpus_per_cell]]
        cpus.sort(key=lambda c: (c.load, len(c.queue), c.index))
        vm.home_cells = tuple(cells)
        home_node = m.cell_nodes(cells[0])[0]
        others = sorted((c for c in range(m.cells) if c not in cells),
                        key=lambda c: (m.hops(home_node, m.cell_nodes(c)[0]), c))
        vm.pref_cells = vm.home_cells + tuple(others)
        vm.status = "running"
        now = mon.loop.now
        vm.wait_since = now
        if len(cpus) < len(vm.vcpus):
            raise RuntimeError(f"{vm.name}: {len(vm.vcpus)} VCPUs but {len(cpus)} CPUs online "
                               f"in cells {list(cells)}")
        for v, cpu in zip(vm.vcpus, cpus[:len(vm.vcpus)], strict=True):
            v.cpu = cpu.index
            v.state = RUNNABLE
            v.wait_since = now
            mon.migrator.enqueue(v, cpu)
            cpu.waiting += 1
            cpu.load += 1
        vm.runnable = len(vm.vcpus)
        mon.notify("on_vm_arrival", vm)
        for v in vm.vcpus:
            mon.gang.ensure_slice_on(mon.cpus[v.cpu])
