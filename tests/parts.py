"""A few CPUs and VMs by hand, for tests that build one mechanism without ``simulate``.

``World`` holds the parts every mechanism stands on (machine, loop, bus, state, accounts,
execution); a test adds the mechanism it specifies and whatever that one uses, the way
``runner.build`` does, and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from disco.config import WorkloadProfile
from disco.engine import EventLoop, RandomStreams
from disco.hardware import Machine
from disco.vmm.accounting import CpuAccounts
from disco.vmm.bus import Bus
from disco.vmm.execution import Execution, ProgressRate, VMFactory
from disco.vmm.gang import GangScheduler
from disco.vmm.state import CPU, RUNNABLE, VM, MonitorState
from disco.vmm.vcpu_migration import VcpuMigrator

# Computes without ever blocking (no I/O, no guest idle): a VCPU runs until its work is done.
BUSY = WorkloadProfile(burst_ms=20.0, io_prob=0.0, idle_prob=0.0, kernel_fraction=0.0,
                       spin_sensitivity=0.5, memory_intensity=0.0, shared_mb=0)


class NativeSystem:
    """A policy with no virtualization cost: rates are 1, everything allowed."""

    gang = True
    spin_penalty = True
    cross_cell_moves = True
    borrows_memory = True
    contains_faults = True

    def virtualization_rate(self, profile: WorkloadProfile, vcpus: int) -> float:
        return 1.0


@dataclass
class World:
    machine: Machine
    loop: EventLoop
    bus: Bus
    state: MonitorState
    acct: CpuAccounts
    execution: Execution
    factory: VMFactory
    events: list[tuple] = field(default_factory=list)  # what the bus announced

    @property
    def cpus(self) -> list[CPU]:
        return self.state.cpus

    def vm(self, vcpus: int, work_s: float = 1.0, profile: WorkloadProfile = BUSY,
           memory_mb: int = 16) -> VM:
        return self.factory.create("busy", profile, memory_mb, 0.0, work_s, vcpus)

    def queue(self, vm: VM, cpus: list[int], home: tuple[int, ...] | None = None) -> VM:
        """``vm`` arrived by hand: its VCPUs wait in the queues of ``cpus``, in order."""
        now = self.loop.now
        vm.status = "running"
        vm.home_cells = home if home is not None else (self.cpus[cpus[0]].cell,)
        vm.pref_cells = vm.home_cells
        vm.wait_since = now
        for v, i in zip(vm.vcpus, cpus, strict=True):
            cpu = self.cpus[i]
            v.cpu = i
            v.state = RUNNABLE
            v.wait_since = now
            self.state.enqueue(v, cpu)
            cpu.waiting += 1
            cpu.load += 1
        vm.runnable = len(vm.vcpus)
        return vm

    def gang(self, gang: bool = True, slice_ms: float = 10.0, idle=None) -> GangScheduler:
        sched = GangScheduler(self.loop, self.cpus, self.execution, idle, gang=gang,
                              slice_s=slice_ms * 1e-3, rpc_s=16e-6)
        self.execution.connect(sched)
        return sched

    def migrator(self) -> VcpuMigrator:
        return VcpuMigrator(self.machine, self.state, self.bus, node_s=37e-6, cell_s=520e-6,
                            remote_s=1520e-6, warmup_s=4e-3)


def world(nodes: int = 2, cpus_per_node: int = 2, nodes_per_cell: int = 1,
          memory_per_node_mb: int = 64, gang: bool = True) -> World:
    machine = Machine(nodes, cpus_per_node, nodes_per_cell, memory_per_node_mb,
                      local_latency_ns=310.0, remote_latency_ns=550.0, hop_latency_ns=100.0)
    loop = EventLoop()
    bus = Bus()
    cpus = [CPU(i, machine.node_of(i), machine.cell_of(i)) for i in range(machine.cpus)]
    state = MonitorState(cpus, machine.cells)
    acct = CpuAccounts(machine.cells)
    execution = Execution(loop, state, acct, bus, ProgressRate(), switch_cost_s=0.0, gang=gang,
                          spin_penalty=True)
    factory = VMFactory(RandomStreams(0), state, NativeSystem())
    w = World(machine, loop, bus, state, acct, execution, factory)
    bus.on_vm_arrived(lambda vm: w.events.append(("vm_arrived", vm.id)))
    bus.on_vcpu_moved(lambda v, s, d: w.events.append(("vcpu_moved", v.vm.id, s.index, d.index)))
    bus.on_vm_exited(lambda vm: w.events.append(("vm_exited", vm.id)))
    bus.on_vm_migrated(lambda vm, a, b: w.events.append(("vm_migrated", vm.id, a, b)))
    bus.on_cell_failed(lambda c: w.events.append(("cell_failed", c)))
    bus.on_cell_repaired(lambda c: w.events.append(("cell_repaired", c)))
    return w


class Footprint:
    """A stand-in memory footprint for the containment rule: each VM's home cells, plus the
    cells ``extra`` says it holds memory on (as if borrowed)."""

    def __init__(self, extra: dict[int, set[int]] | None = None) -> None:
        self.extra = extra or {}

    def memory_cells(self, vm: VM) -> set[int]:
        return set(vm.home_cells) | self.extra.get(vm.id, set())

    def lost_share(self, vm: VM, cells: list[int]) -> float:
        """The share of its memory cells among ``cells`` (memory spread evenly)."""
        mem = self.memory_cells(vm)
        return sum(1 for c in cells if c in mem) / len(mem) if mem else 0.0
