"""VCPU execution: VCPUs running on physical CPUs, their compute runs and waits, and VM ends.

A running VCPU advances in *segments*: from ``seg_start`` it first burns its ``debt`` (monitor
overhead: switch, migration, cache re-warming, disk waits) and then makes progress at ``rate``
native CPU-seconds per second. A VCPU started where another VCPU ran last pays the switch
(``context_switch_us``); if that one was another VM's, also a share of the cache re-warm after
a migration (``vm_switch_rewarm``: the other VM's slice displaced part of its working set),
unless it was just moved there (``VCPU.cold``: the move charged the full re-warm). So short
time slices cost re-warms and long ones cost waiting: ``vcpu_wait_mean_ms``. One event is
pending per running VCPU: the end of its current compute run (the guest blocks on I/O or
idles) or of its work. Anything that changes the rate (a sibling descheduled, memory moving)
closes the segment (``account``) and reschedules.

Who runs where is the CPU scheduler's decision (``gang.py``); execution tells it when a
running VCPU leaves its CPU, when a waiting one wakes, and when a killed VM frees CPUs, through
the ``CpuScheduler`` interface it defines here (``connect``: the scheduler starts VCPUs, so the
two refer to each other). How fast a VCPU progresses beyond its VM's ``base_rate`` is the
``ProgressRate`` model's answer (remote memory: ``remote_access.py``).

``VMFactory`` makes every VM and its VCPUs, for the workload mix and for recovery's restarts.
"""

from __future__ import annotations

import math
from abc import abstractmethod

from disco.config import WorkloadProfile
from disco.engine import EventLoop, RandomStreams
from disco.vmm.accounting import CpuAccounts
from disco.vmm.bus import Bus
from disco.vmm.policy import Policy
from disco.vmm.state import (
    BLOCKED,
    CPU,
    DONE,
    IDLE,
    INF,
    LOST,
    RUNNABLE,
    RUNNING,
    VCPU,
    VM,
    MonitorState,
)


def draw_run(v: VCPU) -> float:
    """Compute until the guest next blocks: exponential, merging bursts that continue."""
    p = v.vm.profile
    pb = p.io_prob + p.idle_prob
    if pb <= 0.0:
        return INF
    return -(p.burst_ms / pb) * 1e-3 * math.log(1.0 - v.uniform())


class ProgressRate:
    """The factor on a running VCPU's progress rate beyond its VM's ``base_rate`` (and beyond
    spinning): 1 here, memory stalls in ``remote_access.RemoteAccessCost``."""

    def factor(self, v: VCPU) -> float:
        return 1.0


class CpuScheduler:
    """What execution tells the CPU scheduler; ``gang.GangScheduler`` implements it.

    An interface, never instantiated: a class, not a ``Protocol``, because compiled a call
    through a class is a vtable call and through a protocol a dynamic attribute lookup, on
    the paths every VCPU start and stop takes."""

    @abstractmethod
    def became_runnable(self, v: VCPU) -> None:
        """A waiting VCPU woke up (I/O done, guest work arrived) or arrived with its VM."""

    @abstractmethod
    def vcpu_left(self, v: VCPU, cpu: CPU) -> None:
        """A running VCPU blocked, idled or finished: ``cpu`` is free."""

    @abstractmethod
    def cpu_freed(self, cpu: CPU) -> None:
        """``cpu``'s VCPU is gone with its killed VM."""


class Execution:
    # The scheduler execution reports to, wired by ``connect`` once it exists (it is built
    # from this execution: runner.build); unset until then.
    scheduler: CpuScheduler

    def __init__(self, loop: EventLoop, state: MonitorState, acct: CpuAccounts, bus: Bus,
                 rate: ProgressRate, switch_cost_s: float, gang: bool,
                 spin_penalty: bool, rewarm_s: float = 0.0) -> None:
        self.loop = loop
        self.state = state
        self.cpus = state.cpus
        self.acct = acct
        self.bus = bus
        self.rate = rate
        self.switch_cost = switch_cost_s  # a VCPU switched in pays it (cpu.last is another)
        # ... and this too if the last VCPU there was another VM's: its lines displaced ours
        self.rewarm = rewarm_s
        self.wait_total = 0.0  # time VCPUs waited RUNNABLE before each start (dispatch wait)
        self.dispatches = 0
        self.gang_on = gang
        self.spin_penalty = spin_penalty

    def connect(self, scheduler: CpuScheduler) -> None:
        self.scheduler = scheduler

    # -- segments ---------------------------------------------------------------------------
    def rate_of(self, v: VCPU) -> float:
        rate = v.vm.base_rate
        if v.spinning:
            rate *= 1.0 - v.vm.profile.spin_sensitivity
        return rate * self.rate.factor(v)

    def start(self, v: VCPU, cpu: CPU, extra_debt: float = 0.0) -> None:
        """Put a RUNNABLE VCPU on its (free) CPU."""
        now = self.loop.now
        self.acct.idle[cpu.cell] += now - cpu.idle_since
        cpu.current = v
        last = cpu.last
        if last is not v:
            extra_debt += self.switch_cost
            # Another VM ran here since: re-warm the share of the cache it displaced, unless
            # v was just moved (its move charged the full re-warm).
            if last is not None and last.vm is not v.vm and not v.cold:
                extra_debt += self.rewarm
            cpu.last = v
        if v.stall_until > now:  # a memory wait that began off the CPU: what is left of it
            extra_debt += v.stall_until - now
            v.stall_until = 0.0
        v.cold = False
        v.debt += extra_debt
        self.wait_total += now - v.wait_since
        self.dispatches += 1
        v.state = RUNNING
        cpu.waiting -= 1
        vm = v.vm
        vm.runnable -= 1
        vm.active += 1
        v.seg_start = now
        v.spinning = False
        # rate_of inlined (not spinning: just cleared): start is the hottest path of a run.
        v.rate = vm.base_rate * self.rate.factor(v)
        self._schedule_run_end(v)
        if not self.gang_on:
            self.respin(vm)

    def _schedule_run_end(self, v: VCPU) -> None:
        if v.run_left < v.work_left:
            amount = v.run_left
            v.target_is_work = False
        else:
            amount = v.work_left
            v.target_is_work = True
        v.event = self.loop.schedule(v.debt + amount / v.rate, self._on_run_end, v)

    def account(self, v: VCPU) -> None:
        """Close the running segment of ``v``: charge its CPU time to the right buckets."""
        now = self.loop.now
        elapsed = now - v.seg_start
        if elapsed <= 0.0:
            return
        cell = self.cpus[v.cpu].cell
        acct = self.acct
        debt = v.debt
        if debt >= elapsed:
            v.debt = debt - elapsed
            acct.overhead[cell] += elapsed
        else:
            v.debt = 0.0
            acct.overhead[cell] += debt
            t = elapsed - debt
            progress = t * v.rate
            v.work_left -= progress
            v.run_left -= progress
            if v.spinning:
                s = v.vm.profile.spin_sensitivity
                acct.spin[cell] += t * s
                acct.guest[cell] += t * (1.0 - s)
            else:
                acct.guest[cell] += t
        v.seg_start = now

    def resegment(self, v: VCPU) -> None:
        """The rate of a running VCPU changed: account, then reschedule its run end."""
        self.account(v)
        self.loop.cancel(v.event)
        v.rate = self.rate_of(v)
        self._schedule_run_end(v)

    def rerate(self, vm: VM) -> None:
        """The progress-rate model changed its answer for ``vm``: resegment each running VCPU
        whose rate moved (by more than rounding)."""
        for v in vm.vcpus:
            if v.state == RUNNING:
                new = self.rate_of(v)
                if abs(new - v.rate) > 1e-9 * v.rate:
                    self.resegment(v)

    def charge(self, v: VCPU, seconds: float) -> None:
        """Monitor time ``v`` must spend before progressing again (copies, disk waits)."""
        if seconds <= 0.0 or v.state in (DONE, LOST):
            return
        if v.state == RUNNING:
            self.account(v)
            v.debt += seconds
            self.resegment(v)
        else:
            v.debt += seconds

    def stall(self, v: VCPU, add: float, until: float) -> None:
        """``v`` cannot progress before ``until`` (a memory wait, ``add`` seconds more than it
        already waited: ``allocation.Allocator.wait``). Running, it holds its CPU (debt,
        monitor overhead); off its CPU, what is left of the wait when it next starts becomes
        debt then, so a wait is never paid twice nor after it ended."""
        if v.state == RUNNING:
            self.charge(v, add)
        elif until > v.stall_until:
            v.stall_until = until

    def respin(self, vm: VM) -> None:
        """Gang scheduling off: a running VCPU spins while any sibling waits descheduled."""
        spin = self.spin_penalty and vm.runnable > 0 and vm.profile.spin_sensitivity > 0.0
        for u in vm.vcpus:
            if u.state == RUNNING and u.spinning != spin:
                self.account(u)
                self.loop.cancel(u.event)
                u.spinning = spin
                u.rate = self.rate_of(u)
                self._schedule_run_end(u)

    def stop(self, v: VCPU, new_state: int) -> CPU:
        """Take a RUNNING VCPU off its CPU into ``new_state``; returns the freed CPU."""
        self.account(v)
        self.loop.cancel(v.event)
        v.event = None
        v.spinning = False
        cpu = self.cpus[v.cpu]
        cpu.current = None
        cpu.idle_since = self.loop.now
        v.state = new_state
        vm = v.vm
        vm.active -= 1
        if new_state == RUNNABLE:
            cpu.waiting += 1
            vm.runnable += 1
            v.wait_since = self.loop.now
        else:
            cpu.load -= 1
        return cpu

    def flush(self) -> None:
        """Bring every account up to now (at samples and at the end of the run)."""
        now = self.loop.now
        idle = self.acct.idle
        for cpu in self.cpus:
            if cpu.current is not None:
                self.account(cpu.current)
            else:
                idle[cpu.cell] += now - cpu.idle_since
                cpu.idle_since = now

    # -- the guest's runs and waits ----------------------------------------------------------
    def _on_run_end(self, v: VCPU) -> None:
        v.event = None
        self.account(v)
        if v.target_is_work:
            v.work_left = 0.0
            self._finish_vcpu(v)
            return
        v.run_left = 0.0
        p = v.vm.profile
        if v.uniform() * (p.io_prob + p.idle_prob) < p.io_prob:
            state, mean_ms = BLOCKED, p.io_ms
        else:
            state, mean_ms = IDLE, p.idle_ms
        v.run_left = draw_run(v)
        cpu = self.stop(v, state)
        self.scheduler.vcpu_left(v, cpu)
        wait = -mean_ms * 1e-3 * math.log(1.0 - v.uniform())
        v.event = self.loop.schedule(wait, self._on_wake, v)

    def _on_wake(self, v: VCPU) -> None:
        v.event = None
        now = self.loop.now
        v.state = RUNNABLE
        v.wait_since = now
        cpu = self.cpus[v.cpu]
        cpu.waiting += 1
        v.vm.runnable += 1
        cpu.load += 1
        self.scheduler.became_runnable(v)

    def _finish_vcpu(self, v: VCPU) -> None:
        cpu = self.stop(v, DONE)
        self.state.remove_from_queue(v)
        vm = v.vm
        vm.done_vcpus += 1
        self.scheduler.vcpu_left(v, cpu)
        if vm.done_vcpus == len(vm.vcpus):
            vm.status = "done"
            vm.finish_s = self.loop.now
            self._vm_exit(vm)

    # -- VM ends ----------------------------------------------------------------------------
    def _vm_exit(self, vm: VM) -> None:
        self.bus.vm_exited(vm)
        self._vm_closed()

    def _vm_closed(self) -> None:
        state = self.state
        state.vms_open -= 1
        if state.vms_open == 0 and not state.recovering:  # else recovery ends the run
            self.loop.stop()

    def kill_vm(self, vm: VM) -> None:
        """Terminate a VM at once (fault recovery): its VCPUs leave every CPU and queue."""
        if vm.status in ("done", "lost"):
            return
        was_pending = vm.status == "pending"
        self.loop.cancel(vm.slice_event)
        vm.slice_event = None
        freed: list[CPU] = []
        for v in vm.vcpus:
            if v.state == RUNNING:
                freed.append(self.stop(v, LOST))
            else:
                self.loop.cancel(v.event)
                v.event = None
                if v.state == RUNNABLE and v.cpu >= 0:
                    cpu = self.cpus[v.cpu]
                    cpu.waiting -= 1
                    cpu.load -= 1
                    vm.runnable -= 1
            if v.state != DONE and v.cpu >= 0 and not was_pending:
                self.state.remove_from_queue(v)
            v.state = LOST
        vm.running = False
        vm.wait_since = INF
        vm.status = "lost"
        vm.finish_s = self.loop.now
        for cpu in freed:
            self.scheduler.cpu_freed(cpu)
        if not was_pending:
            self._vm_exit(vm)
        else:  # it never arrived: nothing followed its life
            self._vm_closed()


class VMFactory:
    """Makes a VM and its VCPUs: each VCPU gets its own random stream (``workload/<vm>/<i>``)
    and its first compute run; the VM joins ``state.vms`` under the next id."""

    def __init__(self, streams: RandomStreams, state: MonitorState, policy: Policy) -> None:
        self.streams = streams
        self.state = state
        self.policy = policy

    def create(self, workload: str, profile: WorkloadProfile, memory_mb: int, arrival_s: float,
               work_s: float, vcpus: int, name: str | None = None) -> VM:
        state = self.state
        vm_id = len(state.vms)
        vm = VM(vm_id, name if name is not None else f"{workload}-{vm_id}", workload, profile,
                memory_mb, arrival_s, work_s)
        vm.base_rate = self.policy.virtualization_rate(profile, vcpus)
        for i in range(vcpus):
            rng = self.streams.get(f"workload/{vm_id}/{i}")
            v = VCPU(vm, i, -1, rng, work_left=work_s)
            v.run_left = draw_run(v)
            vm.vcpus.append(v)
        state.vms.append(vm)
        state.vms_open += 1
        return vm

    def restart(self, vm: VM, arrival_s: float) -> VM:
        """A fresh copy of ``vm`` (lost to a fault) that arrives at ``arrival_s``."""
        return self.create(vm.workload, vm.profile, vm.memory_mb, arrival_s, vm.work_s,
                           len(vm.vcpus), name=f"{vm.name}+r")
