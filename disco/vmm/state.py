"""The monitor's state: physical CPUs with their run queues, VMs and their VCPUs, which cells
are live, and the queue operations that keep the per-cell counts right (``MonitorState``).

State only: no mechanism lives here, every mechanism reads and writes it. Mutable records with
``slots=True``: the hot path reads and writes their attributes directly.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from disco.config import WorkloadProfile
from disco.engine import Handle
from disco.vmm.load_tree import LoadTree

# VCPU states (PAPER.md): RUNNING on its CPU; RUNNABLE waiting in its CPU's run queue;
# IDLE in the guest's idle loop; BLOCKED on I/O; DONE with its work; LOST with a failed VM.
# Final: the compiled core (disco.native) inlines them, where a plain module global is a dict
# lookup at every use, several times an event.
RUNNING: Final = 0
RUNNABLE: Final = 1
IDLE: Final = 2
BLOCKED: Final = 3
DONE: Final = 4
LOST: Final = 5
STATE_NAMES = ("running", "runnable", "guest_idle", "blocked_io", "done", "lost")
INF: Final = float("inf")


@dataclass(slots=True, eq=False)
class VCPU:
    vm: VM
    index: int
    cpu: int  # the CPU whose run queue holds it
    rng: np.random.Generator
    state: int = RUNNABLE
    work_left: float = 0.0  # native CPU-seconds of work still to do
    run_left: float = 0.0  # native CPU-seconds until the guest next blocks or idles
    debt: float = 0.0  # monitor overhead (s) to burn before progress: switches, migrations
    seg_start: float = 0.0  # start of the current running segment
    rate: float = 1.0  # progress per second in this segment, once the debt is paid
    spinning: bool = False  # slowed by a descheduled sibling (gang scheduling off)
    target_is_work: bool = False  # the pending event ends the work (else a run)
    event: Handle | None = None  # handle of its pending run-end or wake-up event
    wait_since: float = 0.0  # when it last became runnable
    # A memory wait (disk, loan, shortage) that began while it was off its CPU: it cannot
    # progress before this time (``Execution.start`` turns what is left into debt).
    stall_until: float = 0.0
    # Buffered uniform randoms as packed doubles: 8 bytes each where a list of floats takes 32,
    # a smaller working set for the caches on big machines; the same numbers in the same order.
    draws: array[float] = field(default_factory=lambda: array("d"))

    def uniform(self) -> float:
        """A uniform draw from this VCPU's own stream, refilled in blocks (cheap per call)."""
        draws = self.draws
        if not draws:
            draws.frombytes(self.rng.random(64).tobytes())
        return draws.pop()


@dataclass(slots=True, eq=False)
class VM:
    id: int
    name: str
    workload: str
    profile: WorkloadProfile
    memory_mb: int
    arrival_s: float
    work_s: float
    vcpus: list[VCPU] = field(default_factory=list)
    base_rate: float = 1.0  # progress rate after virtualization overhead
    status: str = "pending"  # pending, running, done, lost
    finish_s: float = INF
    home_cells: tuple[int, ...] = ()
    pref_cells: tuple[int, ...] = ()  # allocation preference list: home cells first
    cell_vcpus: dict[int, int] = field(default_factory=dict)  # cell -> VCPUs queued there
    visited_cells: set[int] = field(default_factory=set)  # cells its VCPUs have been on
    # Gang state
    running: bool = False  # dispatched as a gang
    dispatched_at: float = 0.0
    slice_start: float = 0.0
    slice_event: Handle | None = None
    wait_since: float = INF  # waiting as a gang since (INF: not waiting)
    runnable: int = 0  # VCPUs RUNNABLE
    active: int = 0  # VCPUs RUNNING
    done_vcpus: int = 0

    @property
    def n_vcpus(self) -> int:
        return len(self.vcpus)


@dataclass(slots=True, eq=False)
class CPU:
    index: int
    node: int
    cell: int
    queue: list[VCPU] = field(default_factory=list)  # VCPUs assigned here (not done)
    current: VCPU | None = None
    last: VCPU | None = None  # last VCPU run here (a switch away from it costs)
    idle_since: float = 0.0  # start of the current idle period (when current is None)
    waiting: int = 0  # RUNNABLE VCPUs in the queue
    load: int = 0  # RUNNABLE + RUNNING VCPUs in the queue: the balancers' load
    kick_pending: bool = False
    slice_event: Handle | None = None  # gang scheduling off: this CPU's own time slice
    slice_start: float = 0.0
    online: bool = True


class MonitorState:
    """Everything the mechanisms share about CPUs and VMs: the CPUs with their run queues, every
    VM created so far (in id order), which cells are live, the VCPUs queued per cell and the
    load tree over the CPUs. Queue changes go through ``enqueue`` and ``remove_from_queue`` so
    the per-cell counts and each VM's cells stay in step with the queues."""

    __slots__ = ("cpus", "vms", "cell_live", "cell_assigned", "tree", "vms_open",
                 "repairs_due", "recovering")

    def __init__(self, cpus: list[CPU], cells: int) -> None:
        self.cpus = cpus
        self.vms: list[VM] = []
        self.cell_live = [True] * cells  # False: failed or evacuated (cell_lifecycle.py)
        self.cell_assigned = [0] * cells  # VCPUs (not done) queued per cell
        self.tree = LoadTree(len(cpus))
        self.vms_open = 0  # created and not finished (pending, running): the run ends at 0
        self.repairs_due = 0  # failed or evacuated cells with a return scheduled
        # A fault recovery is under way: the run does not end when its last VM does, so the
        # recovery finishes (and is timed) rather than being censored (recovery.py).
        self.recovering = False

    def enqueue(self, v: VCPU, dest: CPU) -> None:
        """Put ``v`` in ``dest``'s queue and record the cell it now depends on."""
        dest.queue.append(v)
        self.cell_assigned[dest.cell] += 1
        vm = v.vm
        vm.cell_vcpus[dest.cell] = vm.cell_vcpus.get(dest.cell, 0) + 1
        vm.visited_cells.add(dest.cell)

    def remove_from_queue(self, v: VCPU) -> None:
        cpu = self.cpus[v.cpu]
        cpu.queue.remove(v)
        self.cell_assigned[cpu.cell] -= 1
        cells = v.vm.cell_vcpus
        cells[cpu.cell] -= 1
        if not cells[cpu.cell]:
            del cells[cpu.cell]


def startable_members(vm: VM, cpus: list[CPU], skip: VCPU | None = None) -> int:
    """How many of ``vm``'s waiting VCPUs (but ``skip``) there are, or -1 if the CPU of one
    of them cannot be had now. A CPU can be had if it is up and free, or runs a gang
    dispatched after ``vm`` began waiting (the gang scheduler's *no preemption of the
    patient*; the idle balancer asks it too before stealing)."""
    waited = vm.wait_since
    n = 0
    for u in vm.vcpus:
        if u.state == RUNNABLE and u is not skip:
            cpu = cpus[u.cpu]
            if not cpu.online:
                return -1
            cur = cpu.current
            if cur is not None and cur.vm.dispatched_at <= waited:
                return -1
            n += 1
    return n
