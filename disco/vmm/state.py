"""The monitor's state: physical CPUs with their run queues, VMs and their VCPUs.

Mutable records with ``slots=True``: the hot path reads and writes their attributes directly.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from disco.config import WorkloadProfile
from disco.engine import Handle

# VCPU states (PAPER.md): RUNNING on its CPU; RUNNABLE waiting in its CPU's run queue;
# IDLE in the guest's idle loop; BLOCKED on I/O; DONE with its work; LOST with a failed VM.
# Final: the compiled core (disco.native) inlines them; a plain module global is a dict lookup
# at every use: ~10 an event, and Final took 9 % off the compiled run's instructions (callgrind).
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
    # Buffered uniform randoms as packed doubles: 8 bytes each, where a list of floats takes 32
    # (2 KB a VCPU, 4 MB at 1024 CPUs): a smaller working set for the caches. Alternating A/B
    # runs at 512-1024 CPUs took 0.8-0.96 x the time (noisy); same numbers, same order.
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
