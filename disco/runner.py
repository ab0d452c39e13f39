"""One run: config -> build the model -> run the engine -> results.

``build`` is the one place that knows every part of the model: it makes each mechanism with
only the collaborators it uses, subscribes the ones that follow VMs and cells to the event bus
(``disco/vmm/bus.py``), and schedules the first events. Data flows one way: nothing below this
module imports it. It imports no framework library, so ``simulate`` is usable from a notebook.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from disco.config import SimConfig
from disco.engine import EventLoop, RandomStreams
from disco.hardware import Machine
from disco.policies import make_policy
from disco.result import SimResult
from disco.vmm.accounting import CpuAccounts
from disco.vmm.allocation import Allocator, MemoryWaits
from disco.vmm.borrowing import Borrowing
from disco.vmm.bus import Bus
from disco.vmm.cell_lifecycle import CellLifecycle
from disco.vmm.containment import Containment
from disco.vmm.cpu_report import CpuReport
from disco.vmm.disk import Disks
from disco.vmm.execution import Execution, VMFactory
from disco.vmm.frames import FrameStore
from disco.vmm.gang import GangScheduler
from disco.vmm.guest_behaviour import GuestBehaviour
from disco.vmm.guest_memory import GuestMemory
from disco.vmm.idle_balancer import IdleBalancer
from disco.vmm.invariants import InvariantChecker
from disco.vmm.memory import Memory
from disco.vmm.numa import NumaPolicy
from disco.vmm.paging import Pager
from disco.vmm.periodic_balancer import PeriodicBalancer
from disco.vmm.placement import Placement
from disco.vmm.policy import Policy
from disco.vmm.recovery import Recovery
from disco.vmm.remote_access import RemoteAccessCost
from disco.vmm.reporting import Report, Reporting
from disco.vmm.state import CPU, VM, MonitorState
from disco.vmm.trace_hooks import TracedExecution
from disco.vmm.vcpu_migration import VcpuMigrator
from disco.vmm.vm_migration import VMMigrator

if TYPE_CHECKING:
    from disco.trace import TraceOptions, Tracer


@dataclass(slots=True, eq=False)
class Simulation:
    """Every part of one run's model, as ``build`` wired them. Nothing in the model holds
    this object: it is for the runner, tests and notebooks to look at the parts."""

    cfg: SimConfig
    loop: EventLoop
    streams: RandomStreams
    policy: Policy
    machine: Machine
    bus: Bus
    state: MonitorState
    acct: CpuAccounts
    execution: Execution
    factory: VMFactory
    migrator: VcpuMigrator
    idle: IdleBalancer
    gang: GangScheduler
    periodic: PeriodicBalancer
    placement: Placement
    frames: FrameStore
    guest: GuestMemory
    remote: RemoteAccessCost
    disks: Disks
    borrowing: Borrowing
    numa: NumaPolicy
    pager: Pager
    waits: MemoryWaits
    alloc: Allocator
    behaviour: GuestBehaviour
    memory: Memory
    containment: Containment
    lifecycle: CellLifecycle
    recovery: Recovery
    vm_migration: VMMigrator
    cpu_report: CpuReport
    reporters: list[Reporting]

    @property
    def cpus(self) -> list[CPU]:
        return self.state.cpus

    @property
    def vms(self) -> list[VM]:
        return self.state.vms

    def run(self, until: float | None = None) -> None:
        """Run the clock to ``until`` (default: the configured duration), or until every VM
        has finished."""
        self.loop.run(until=self.cfg.sim.duration_s if until is None else until)

    def report(self) -> Report:
        """What every part reports now (their accounts brought up to the current time)."""
        out = Report()
        for part in self.reporters:
            part.report(out)
        return out

    def metrics(self) -> dict[str, float | int]:
        return self.report().metrics

    def checker(self) -> InvariantChecker:
        return InvariantChecker(self.loop, self.machine, self.state, self.acct,
                                self.execution.gang_on, self.lifecycle, self.recovery,
                                self.frames, self.guest)


def build(cfg: SimConfig, bus: Bus | None = None, tracer: Tracer | None = None) -> Simulation:
    """Validate ``cfg`` and elaborate the whole model before the clock starts.

    ``bus``: a bus observers have already subscribed to (they are then called before the
    model's own subscribers); by default a new one. ``tracer``: a ``disco.trace.Tracer`` to
    tell what happens (off by default: then no part of the model holds one, and the VCPUs'
    starts and stops run through the plain ``Execution``, with no hook)."""
    cfg.validate()
    p, f = cfg.policy, cfg.faults
    loop = EventLoop()
    streams = RandomStreams(cfg.sim.seed)
    policy = make_policy(cfg)
    machine = Machine.from_config(cfg)
    bus = bus if bus is not None else Bus()
    cpus = [CPU(i, machine.node_of(i), machine.cell_of(i)) for i in range(machine.cpus)]
    state = MonitorState(cpus, machine.cells)
    acct = CpuAccounts(machine.cells)

    # Where memory is, and what remote memory costs a running VCPU (its progress rate).
    frames = FrameStore(machine, p.chunk_mb)
    guest = GuestMemory(loop, frames, cpus, state.vms)
    remote = RemoteAccessCost(machine, cpus, guest.records, state.vms, p.memory_stall_fraction)

    # CPUs: execution, the scheduler and the balancers. A cache re-warm after a move costs
    # warmup_s; a switch to another VM's VCPU re-warms vm_switch_rewarm of it.
    warmup_s = p.cache_warmup_ms * 1e-3 * (1.0 - p.cache_warmup_slowdown)
    rewarm_s = warmup_s * p.vm_switch_rewarm
    execution = (Execution if tracer is None else TracedExecution)(
        loop, state, acct, bus, remote, p.context_switch_us * 1e-6, gang=policy.gang,
        spin_penalty=policy.spin_penalty, rewarm_s=rewarm_s)
    factory = VMFactory(streams, state, policy)
    migrator = VcpuMigrator(machine, state, bus, p.migration_node_us * 1e-6,
                            p.migration_cell_us * 1e-6, p.migration_remote_us * 1e-6, warmup_s)
    idle = IdleBalancer(loop, machine, cpus, migrator, gang=policy.gang, rewake=p.idle_rewake,
                        costed=p.idle_steal_costed, rewarm_s=rewarm_s)
    # Gang off: every CPU's own slice timer (phase and jitter from sched/timer/<cpu>).
    gang = GangScheduler(loop, cpus, execution, idle if p.idle_balancer else None,
                         gang=policy.gang, slice_s=p.time_slice_ms * 1e-3, rpc_s=p.rpc_us * 1e-6,
                         streams=streams, phased=p.cpu_timer_phase, slice_jitter=p.slice_jitter)
    execution.connect(gang)
    placement = Placement(loop, machine, state, bus, gang, execution)

    # Memory: borrowing, NUMA copies, paging, the allocator over them, the guest's behaviour.
    disks = Disks(p, bus)
    tick_s = p.memory_tick_ms * 1e-3
    borrowing = Borrowing(p, policy.borrows_memory, loop, frames, guest)
    numa = NumaPolicy(p, loop, frames, guest, remote, execution,
                      borrowing.floor + borrowing.unit)
    pager = Pager(p, loop, frames, guest, disks)
    waits = MemoryWaits(loop, execution)
    alloc = Allocator(loop, frames, guest, borrowing, numa, pager, disks, waits, tick_s)
    behaviour = GuestBehaviour(loop, guest, alloc, pager, disks, tick_s, p.working_set_touch_s)
    memory = Memory(loop, streams, tick_s, frames, guest, alloc, waits, behaviour, numa,
                    borrowing, remote, execution)

    # Faults: who depends on what, the cells' lifecycle, recovery, whole-VM migration.
    containment = Containment(loop, state, guest, f.data_follow_s)
    lifecycle = CellLifecycle(loop, machine, state, acct, gang, bus)
    layout = cfg.layout_nodes_per_cell
    recovery = Recovery(loop, streams, machine, state, f, layout, policy.contains_faults,
                        containment, lifecycle, execution, factory, placement)
    vm_migration = VMMigrator(loop, machine, state, bus, f, policy.cross_cell_moves,
                              containment, lifecycle, gang, migrator)
    # The periodic balancer moves VCPUs, and whole VMs across cells (their memory copied).
    periodic = PeriodicBalancer(loop, machine, state, migrator, gang, vm_migration, p,
                                policy.cross_cell_moves)
    cpu_report = CpuReport(loop, machine, state, acct, execution, cfg.sim.sample_interval_s)

    # Who follows VMs and cells, in this order: memory first (a VM's memory exists before
    # anything reasons about it), then the containment rule, then recovery.
    bus.on_vm_arrived(memory.on_vm_arrived)
    bus.on_vm_arrived(containment.on_vm_arrived)
    bus.on_vm_arrived(recovery.on_vm_arrived)
    bus.on_vcpu_moved(containment.on_vcpu_moved)
    bus.on_vcpu_moved(numa.on_vcpu_moved)
    bus.on_vm_exited(memory.on_vm_exited)
    bus.on_vm_exited(recovery.on_vm_exited)
    bus.on_vm_migrated(memory.on_vm_migrated)
    # A cell's failure: its frames are lost to their VMs, then its loans are cancelled, then
    # it closes (all its frames free and its own by then), then copies to it are abandoned.
    # A repair: its memory first, then the arrivals that waited for it.
    bus.on_cell_failed(memory.on_cell_failed)
    bus.on_cell_failed(borrowing.on_cell_failed)
    bus.on_cell_failed(frames.on_cell_failed)
    bus.on_cell_failed(vm_migration.on_cell_failed)  # a copy to the cell is lost with it
    bus.on_cell_repaired(frames.on_cell_repaired)
    bus.on_cell_repaired(placement.on_cell_repaired)

    # The first events. Same-time events run in the order they were scheduled, so this order
    # is part of every result: the balancer's and the memory's ticks, the arrivals in mix
    # order, the timeline's samples, the faults, the evacuations.
    if p.periodic_balancer:
        periodic.start()
    memory.start()
    for group in cfg.workload.vms:
        profile = cfg.workload.profiles[group.workload]
        for k in range(group.count):
            vm = factory.create(group.workload, profile, group.memory_mb,
                                group.arrival_s + k * group.spacing_s, group.work_s, group.vcpus)
            placement.schedule(vm, group.home_cell)
    cpu_report.start()
    recovery.start()
    vm_migration.start(f.evacuate, layout)

    reporters: list[Reporting] = [cpu_report, migrator, idle, periodic, gang, remote, guest,
                                  borrowing, numa, pager, disks, waits, alloc, recovery,
                                  vm_migration, placement]
    sim = Simulation(cfg, loop, streams, policy, machine, bus, state, acct, execution, factory,
                     migrator, idle, gang, periodic, placement, frames, guest, remote, disks,
                     borrowing, numa, pager, waits, alloc, behaviour, memory, containment,
                     lifecycle, recovery, vm_migration, cpu_report, reporters)
    if cfg.sim.check_invariants:
        loop.after_event = sim.checker().check
    if tracer is not None:  # it takes the TracedExecution's records and the bus
        gang.trace = idle.trace = periodic.trace = recovery.trace = tracer
        tracer.attach(loop, machine, state, bus, execution, frames, migrator, gang.rpc)
    return sim


def simulate(cfg: SimConfig | None = None, trace: TraceOptions | None = None) -> SimResult:
    """Run one simulation of ``cfg`` (default: the paper machine) and return its results.

    ``trace``: also write a trace of the run for Perfetto (``disco/trace.py``); the results
    are the same as without."""
    cfg = cfg if cfg is not None else SimConfig()
    wall0 = time.perf_counter()
    tracer = None
    if trace is not None:
        from disco.trace import Tracer

        tracer = Tracer(trace)
    sim = build(cfg, tracer=tracer)
    # The cyclic garbage collector is paused for the run: the event loop allocates and frees
    # an object per event but makes no garbage cycles, while each collector pass would walk
    # the run's whole object graph (CPUs, VCPUs, memory records). Cycles left by an earlier
    # run are collected once it is back on.
    collecting = gc.isenabled()
    gc.disable()
    try:
        sim.run()
    except BaseException:
        if tracer is not None:
            tracer.abort()
        raise
    finally:
        if collecting:
            gc.enable()
    out = sim.report()
    if tracer is not None:
        tracer.close()
    out.metrics["wall_time_s"] = time.perf_counter() - wall0
    return SimResult(metrics=out.metrics, timeline=sim.cpu_report.timeline.columns(),
                     vms=out.vm_columns, tables=out.tables)


__all__ = ["Simulation", "build", "simulate"]
