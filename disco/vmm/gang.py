"""Gang scheduling of each VM's VCPUs (PAPER.md, CPU management).

Every physical CPU has its own run queue. A VM runs only when all its *non-idle* VCPUs run at
once, because a guest spinlock held by a descheduled VCPU stalls the others. When a CPU frees
up it picks, from its queue, the VM that has waited longest and whose whole gang can start now,
and preempts the CPUs holding the gang's other VCPUs (an RPC, ``policy.rpc_us``).

Two rules keep this well defined and fair:
- *no preemption of the patient*: a running gang is preempted only by a VM that has waited
  longer than the victim has been running. A VM preempted now cannot preempt anyone now, so a
  chain of preemptions at one instant always ends, and a VM that waits long enough always gets
  its CPUs: whoever took them after it began waiting yields to it.
- *oldest waiter first*: when a gang's slice ends, its CPUs choose in the order of the oldest
  VM waiting on each, so the gang that just ran cannot grab them back ahead of its waiters.
A free CPU may be taken by any gang that can start whole (backfilling); CPUs stay idle only when
no waiting gang fits, which is the idle time the paper describes.

A gang keeps its CPUs for a time slice (``policy.time_slice_ms``); the slice-end event exists
only while some CPU of the gang has a VCPU waiting, so an unopposed gang costs no events.

``policy.gang = false`` schedules each VCPU on its own and lets siblings spin
(``spin_sensitivity``), which is the waste gang scheduling prevents. Each CPU's slice then runs
on its own timer (``policy.cpu_timer_phase``): a slice ends at the first tick of the CPU's timer,
``phase + k x slice``, at least half a slice after the slice began (so slices average one
slice), late by up to ``slice_jitter`` of a slice (interrupt latency, with or without the
phase), both drawn from the CPU's own stream. Without it, VCPUs of a VM started at one
instant would stay phase-aligned and swap at the same instants: gang scheduling by accident.

When a VCPU starts waiting on a busy CPU (it woke up or arrived there: ``ensure_slice_on``; or
its CPU just started something else: a dispatch after a preemption or a slice end) the idle
balancer is offered it: a parked idle CPU of the cell may come and steal it.
"""

from __future__ import annotations

import math

from disco.engine import EventLoop, RandomStreams
from disco.vmm.execution import CpuScheduler, Execution
from disco.vmm.idle_balancer import IdleBalancer
from disco.vmm.reporting import Report
from disco.vmm.state import CPU, INF, RUNNABLE, RUNNING, VCPU, VM, startable_members
from disco.vmm.trace_hooks import NO_TRACE, TraceHooks


class GangScheduler(CpuScheduler):
    """Decides what each CPU runs. ``idle`` is the idle balancer, asked when a CPU finds
    nothing it can run (None: switched off)."""

    def __init__(self, loop: EventLoop, cpus: list[CPU], execution: Execution,
                 idle: IdleBalancer | None, gang: bool, slice_s: float, rpc_s: float,
                 streams: RandomStreams | None = None, phased: bool = False,
                 slice_jitter: float = 0.0) -> None:
        self.loop = loop
        self.cpus = cpus
        self.execution = execution
        self.idle = idle
        self.rewake = idle is not None and idle.rewake
        self.gang = gang
        self.slice = slice_s
        self.rpc = rpc_s
        self.preemptions = 0
        # Gang off: every CPU's own timer, from stream sched/timer/<cpu> (its own stream, so
        # switching timers on shifts no other draw): a phase (``phased``) and a jitter.
        self.phased = not gang and phased and streams is not None
        self.jitter = slice_jitter * slice_s if not gang and streams is not None else 0.0
        if self.phased or self.jitter > 0.0:
            assert streams is not None
            for cpu in cpus:
                cpu.rng = streams.get(f"sched/timer/{cpu.index}")
                if self.phased:
                    cpu.phase = cpu.uniform() * slice_s
        self.trace: TraceHooks = NO_TRACE  # runner.build sets a tracer when tracing

    def report(self, out: Report) -> None:
        out.metrics["gang_preemptions"] = self.preemptions

    # -- waking up idle CPUs ---------------------------------------------------------
    def kick(self, cpu: CPU) -> None:
        """Ask a free CPU to choose what to run (once, at the current time)."""
        if cpu.current is None and not cpu.kick_pending and cpu.online:
            cpu.kick_pending = True
            self.loop.soon(self.reschedule, cpu)

    def reschedule(self, cpu: CPU) -> None:
        cpu.kick_pending = False
        if cpu.current is not None or not cpu.online:
            return
        if cpu.waiting:
            if self.gang:
                candidates = [v for v in cpu.queue if v.state == RUNNABLE]
                if len(candidates) > 1:
                    candidates.sort(key=_gang_order)
                for v in candidates:
                    if self.try_dispatch(v.vm, cpu):
                        return
            else:
                v = min((v for v in cpu.queue if v.state == RUNNABLE), key=_vcpu_order)
                self.run_alone(v, cpu)
                return
        idle = self.idle
        if idle is not None:
            stolen = idle.steal(cpu)  # moved to this CPU's queue
            if stolen is not None:
                if self.gang:
                    self.try_dispatch(stolen.vm, cpu)
                else:
                    self.run_alone(stolen, cpu)
            idle.park(cpu)  # if still free: woken when work appears in its cell

    def offer(self, v: VCPU) -> None:
        """``v`` now waits on a busy CPU: a parked idle CPU of its cell may steal it."""
        if self.rewake:
            idle = self.idle
            assert idle is not None
            cpu = idle.offer(v)
            if cpu is not None:
                self.kick(cpu)

    def offer_waiters(self, cpu: CPU) -> None:
        """``cpu`` just started running something: whatever waits in its queue now waits on a
        busy CPU (a preempted or descheduled VCPU, one that lost the choice), and a parked CPU
        of its cell may steal it. Nothing is looked at unless a CPU of the cell is parked."""
        idle = self.idle
        if not cpu.waiting or idle is None or not idle.parked[cpu.cell]:
            return
        for w in cpu.queue:
            if w.state == RUNNABLE:
                self.offer(w)

    # -- gang dispatch ----------------------------------------------------------------
    def try_dispatch(self, vm: VM, exempt: CPU) -> bool:
        """Start ``vm``'s whole gang if every member's CPU can be had; ``exempt`` is choosing."""
        cpus = self.cpus
        if startable_members(vm, cpus) <= 0:  # most attempts fail here, before any list
            return False
        members = [u for u in vm.vcpus if u.state == RUNNABLE]
        freed: list[CPU] = []
        for u in members:
            cur = cpus[u.cpu].current
            if cur is not None and cur.vm.running:
                self.preemptions += 1
                self.trace.gang_preempted(cur.vm, vm, cpus[u.cpu])
                freed.extend(self.deschedule(cur.vm, kick=False))
        start = self.execution.start
        for u in members:
            cpu = cpus[u.cpu]
            start(u, cpu, 0.0 if cpu is exempt else self.rpc)
        now = self.loop.now
        vm.running = True
        vm.dispatched_at = now
        vm.slice_start = now
        vm.wait_since = INF
        for u in members:
            if cpus[u.cpu].waiting:
                self.ensure_slice(vm)
                break
        if self.rewake:
            for u in members:
                self.offer_waiters(cpus[u.cpu])
        for cpu in freed:
            self.kick(cpu)
        return True

    def deschedule(self, vm: VM, kick: bool = True) -> list[CPU]:
        """Stop a running gang; its VCPUs wait in their queues. Returns the CPUs freed."""
        self.loop.cancel(vm.slice_event)
        vm.slice_event = None
        stop = self.execution.stop
        freed = [stop(u, RUNNABLE) for u in vm.vcpus if u.state == RUNNING]
        vm.running = False
        vm.wait_since = self.loop.now
        if kick:
            # Kicks run in the order given: the CPU with the oldest other waiter chooses first.
            if len(freed) > 1:
                freed.sort(key=lambda cpu: _oldest_other_waiter(cpu, vm))
            for cpu in freed:
                self.kick(cpu)
        return freed

    def ensure_slice(self, vm: VM) -> None:
        """Someone waits behind this gang: make sure its time slice will end."""
        if vm.slice_event is not None or not vm.running:
            return
        now = self.loop.now
        end = vm.slice_start + self.slice
        if end < now:
            end = vm.slice_start + self.slice * math.ceil((now - vm.slice_start) / self.slice)
        vm.slice_event = self.loop.at(max(end, now), self._slice_end, vm)

    def _slice_end(self, vm: VM) -> None:
        vm.slice_event = None
        if not vm.running:
            return
        cpus = self.cpus
        for u in vm.vcpus:
            if u.state == RUNNING and cpus[u.cpu].waiting:
                self.deschedule(vm)
                return
        vm.slice_start = self.loop.now

    # -- VCPU transitions -------------------------------------------------------------
    def became_runnable(self, v: VCPU) -> None:
        """A VCPU woke up (I/O done, guest work arrived) or arrived with its VM."""
        vm = v.vm
        cpu = self.cpus[v.cpu]
        if not self.gang:
            self.execution.respin(vm)
            if cpu.current is None:
                self.kick(cpu)
            else:
                self.ensure_cpu_slice(cpu)
                self.offer(v)
            return
        if vm.running:
            # The gang is on: its newly non-idle member must run with it, so it takes its CPU.
            cur = cpu.current
            freed: list[CPU] = []
            if cur is not None:
                self.preemptions += 1
                self.trace.gang_preempted(cur.vm, vm, cpu)
                freed = self.deschedule(cur.vm, kick=False)
            self.execution.start(v, cpu, self.rpc if cur is not None else 0.0)
            if cpu.waiting:
                self.ensure_slice(vm)
                if self.rewake:
                    self.offer_waiters(cpu)
            for c in freed:
                self.kick(c)
            return
        if vm.wait_since == INF:
            vm.wait_since = self.loop.now
        self.ensure_slice_on(cpu, v)

    def vcpu_left(self, v: VCPU, cpu: CPU) -> None:
        """A running VCPU blocked, idled, finished or was lost: its CPU is free."""
        vm = v.vm
        if self.gang:
            if vm.running and vm.active == 0:
                vm.running = False
                self.loop.cancel(vm.slice_event)
                vm.slice_event = None
            if vm.runnable and not vm.running and vm.wait_since == INF:
                vm.wait_since = self.loop.now
        else:
            self.loop.cancel(cpu.slice_event)
            cpu.slice_event = None
        self.kick(cpu)

    def cpu_freed(self, cpu: CPU) -> None:
        """``cpu``'s VCPU is gone with its killed VM: let it choose again."""
        if not self.gang:
            self.loop.cancel(cpu.slice_event)
            cpu.slice_event = None
        self.kick(cpu)

    def clear_cpu(self, cpu: CPU) -> None:
        """Whatever runs on ``cpu`` stops and waits in its queue (a recovery pause): with gang
        scheduling the whole gang, else the one VCPU. Nothing is kicked."""
        cur = cpu.current
        if cur is None:
            return
        if self.gang:
            self.deschedule(cur.vm, kick=False)
        else:
            self.loop.cancel(cpu.slice_event)
            cpu.slice_event = None
            self.execution.stop(cur, RUNNABLE)

    def stop_vm(self, vm: VM) -> list[CPU]:
        """Every running VCPU of ``vm`` stops and waits in its queue (a whole-VM migration's
        switch); returns the CPUs freed, not kicked."""
        if self.gang:
            return self.deschedule(vm, kick=False) if vm.running else []
        freed = []
        for v in vm.vcpus:
            if v.state == RUNNING:
                cpu = self.cpus[v.cpu]
                self.loop.cancel(cpu.slice_event)
                cpu.slice_event = None
                freed.append(self.execution.stop(v, RUNNABLE))
        return freed

    def ensure_slice_on(self, cpu: CPU, v: VCPU | None = None) -> None:
        """A VCPU (``v``, if given) now waits on ``cpu``: if it is busy, make sure whatever
        runs there will yield, and offer ``v`` to the idle CPUs of the cell."""
        cur = cpu.current
        if cur is None:
            self.kick(cpu)
            return
        if self.gang:
            self.ensure_slice(cur.vm)
        else:
            self.ensure_cpu_slice(cpu)
        if v is not None:
            self.offer(v)

    # -- gang scheduling off: each VCPU alone ----------------------------------------
    def run_alone(self, v: VCPU, cpu: CPU) -> None:
        self.execution.start(v, cpu)
        cpu.slice_start = self.loop.now
        if cpu.waiting:
            self.ensure_cpu_slice(cpu)
            if self.rewake:
                self.offer_waiters(cpu)

    def ensure_cpu_slice(self, cpu: CPU) -> None:
        if cpu.slice_event is not None or cpu.current is None:
            return
        now = self.loop.now
        sl = self.slice
        if self.phased:
            # The CPU's own timer ticks at phase + k x slice: the slice ends at the first tick
            # at least half a slice after it began (a mean of one slice), plus jitter.
            t = cpu.slice_start + 0.5 * sl
            if t < now:
                t = now
            end = cpu.phase + sl * math.ceil((t - cpu.phase) / sl)
        else:
            end = cpu.slice_start + sl
            if end < now:
                end = cpu.slice_start + sl * math.ceil((now - cpu.slice_start) / sl)
        if self.jitter > 0.0:
            end += self.jitter * cpu.uniform()
        cpu.slice_event = self.loop.at(max(end, now), self._cpu_slice_end, cpu)

    def _cpu_slice_end(self, cpu: CPU) -> None:
        cpu.slice_event = None
        v = cpu.current
        if v is None:
            return
        if cpu.waiting:
            self.execution.stop(v, RUNNABLE)
            self.execution.respin(v.vm)
            self.kick(cpu)
        else:
            cpu.slice_start = self.loop.now


def _oldest_other_waiter(cpu: CPU, vm: VM) -> tuple[float, int, int]:
    best = (INF, 0, cpu.index)
    for w in cpu.queue:
        if w.state == RUNNABLE and w.vm is not vm and (w.vm.wait_since, w.vm.id) < best[:2]:
            best = (w.vm.wait_since, w.vm.id, cpu.index)
    return best


def _gang_order(v: VCPU) -> tuple[float, int]:
    return (v.vm.wait_since, v.vm.id)


def _vcpu_order(v: VCPU) -> tuple[float, int, int]:
    return (v.wait_since, v.vm.id, v.index)
