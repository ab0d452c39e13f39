"""Where an arriving VM's VCPUs go, and its allocation-preference list of cells.

A VM gets as few whole cells as hold its VCPUs (containment: a 4-VCPU VM on the paper machine
lives in one cell), the least committed contiguous run of cells unless the mix pins a home
cell; within them each VCPU takes a distinct CPU, the least loaded first. The preference list
is the home cells, then the others by router distance (memory borrows along it).

After faults, only live cells count. An arrival that finds too few waits for a cell to come
back if a repair or a return is due (``state.repairs_due``), in arrival order, and is lost
(never placed) if none is.
"""

from __future__ import annotations

from disco.engine import EventLoop
from disco.hardware import Machine
from disco.vmm.bus import Bus
from disco.vmm.execution import Execution
from disco.vmm.gang import GangScheduler
from disco.vmm.reporting import Report
from disco.vmm.state import RUNNABLE, VM, MonitorState


def set_home(machine: Machine, vm: VM, cells: tuple[int, ...] | range) -> None:
    """``cells`` become ``vm``'s home cells; the other cells follow by router distance from
    the first home node in its preference list."""
    m = machine
    vm.home_cells = tuple(cells)
    home_node = m.cell_nodes(vm.home_cells[0])[0]
    others = sorted((c for c in range(m.cells) if c not in vm.home_cells),
                    key=lambda c: (m.hops(home_node, m.cell_nodes(c)[0]), c))
    vm.pref_cells = vm.home_cells + tuple(others)


class Placement:
    def __init__(self, loop: EventLoop, machine: Machine, state: MonitorState, bus: Bus,
                 gang: GangScheduler, execution: Execution) -> None:
        self.loop = loop
        self.machine = machine
        self.state = state
        self.bus = bus
        self.gang = gang
        self.execution = execution
        self.waiting: list[tuple[VM, int | None]] = []  # arrivals waiting for a cell's return

    def schedule(self, vm: VM, home_cell: int | None) -> None:
        """``vm`` arrives at ``vm.arrival_s`` (pinned to ``home_cell``, unless None)."""
        self.loop.at(vm.arrival_s, self.arrive, vm, home_cell)

    def choose_cells(self, n_vcpus: int, home_cell: int | None) -> range | None:
        m = self.machine
        k = -(-n_vcpus // m.cpus_per_cell)
        live = self.state.cell_live
        if not all(live):
            return self._choose_live_cells(k, home_cell)
        if home_cell is not None:
            start = min(home_cell, m.cells - k)
        else:
            assigned = self.state.cell_assigned
            window = sum(assigned[:k])
            best, start = window, 0
            for s in range(1, m.cells - k + 1):
                window += assigned[s + k - 1] - assigned[s - 1]
                if window < best:
                    best, start = window, s
        return range(start, start + k)

    def _choose_live_cells(self, k: int, home_cell: int | None) -> range | None:
        """Some cells are down: the best window of live cells, None if none fits."""
        m = self.machine
        live, assigned = self.state.cell_live, self.state.cell_assigned
        starts = [s for s in range(m.cells - k + 1) if all(live[s:s + k])]
        if not starts:
            return None
        if home_cell is not None:
            start = min(starts, key=lambda s: (abs(s - home_cell), s))
        else:
            start = min(starts, key=lambda s: (sum(assigned[s:s + k]), s))
        return range(start, start + k)

    def arrive(self, vm: VM, home_cell: int | None) -> None:
        state = self.state
        m = self.machine
        cells = self.choose_cells(len(vm.vcpus), home_cell)
        if cells is None:  # too few live cells: wait for one to come back, or never run
            if state.repairs_due:
                self.waiting.append((vm, home_cell))
            else:
                self.execution.kill_vm(vm)
            return
        # CPUs of live cells; they may be paused for a moment by fault recovery.
        cpus = [c for cell in cells for c in state.cpus[cell * m.cpus_per_cell:
                                                       (cell + 1) * m.cpus_per_cell]]
        cpus.sort(key=lambda c: (c.load, len(c.queue), c.index))
        set_home(m, vm, cells)
        vm.status = "running"
        now = self.loop.now
        vm.wait_since = now
        if len(cpus) < len(vm.vcpus):
            raise RuntimeError(f"{vm.name}: {len(vm.vcpus)} VCPUs but {len(cpus)} CPUs online "
                               f"in cells {list(cells)}")
        for v, cpu in zip(vm.vcpus, cpus[:len(vm.vcpus)], strict=True):
            v.cpu = cpu.index
            v.state = RUNNABLE
            v.wait_since = now
            state.enqueue(v, cpu)
            cpu.waiting += 1
            cpu.load += 1
        vm.runnable = len(vm.vcpus)
        self.bus.vm_arrived(vm)
        for v in vm.vcpus:
            self.gang.ensure_slice_on(state.cpus[v.cpu], v)

    def on_cell_repaired(self, cell: int) -> None:
        """A cell is back: the arrivals that found no room try again, in arrival order."""
        waiting, self.waiting = self.waiting, []
        for vm, home_cell in waiting:
            self.arrive(vm, home_cell)

    def report(self, out: Report) -> None:
        # Arrivals that found too few live cells and no return due: they never ran.
        out.metrics["vms_unplaceable"] = sum(1 for vm in self.state.vms
                                             if vm.status == "lost" and not vm.home_cells)
