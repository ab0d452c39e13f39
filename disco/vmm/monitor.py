"""The monitor: VCPUs executing on physical CPUs, and the bookkeeping every mechanism shares.

A running VCPU advances in *segments*: from ``seg_start`` it first burns its ``debt`` (monitor
overhead: switch, migration, cache re-warming) and then makes progress at ``rate`` native
CPU-seconds per second. One event is pending per running VCPU: the end of its current compute
run (the guest blocks on I/O or idles) or of its work. Anything that changes the rate
(a sibling descheduled, a migration) closes the segment (``account``) and reschedules.

The gang scheduler (``gang.py``) decides who runs; the balancers (``idle_balancer.py``,
``periodic_balancer.py``) move VCPUs between run queues through ``migration.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from disco.config import SimConfig
from disco.engine import EventLoop, RandomStreams
from disco.hardware import Machine
from disco.policies.base import Policy
from disco.vmm.accounting import CpuAccounts, Timeline
from disco.vmm.gang import GangScheduler
from disco.vmm.idle_balancer import IdleBalancer
from disco.vmm.load_tree import LoadTree
from disco.vmm.migration import Migrator
from disco.vmm.periodic_balancer import PeriodicBalancer
from disco.vmm.placement import Placement
from disco.vmm.state import BLOCKED, CPU, DONE, IDLE, INF, LOST, RUNNABLE, RUNNING, VCPU, VM

if TYPE_CHECKING:
    from disco.vmm.recovery import Recovery


class MonitorHook(Protocol):
    """A mechanism that follows the VMs' lives (memory, faults). Every method is optional:
    the monitor calls those a hook defines, in the order hooks were added."""

    def on_vm_arrival(self, vm: VM) -> None: ...
    def on_vcpu_moved(self, v: VCPU, src: CPU, dst: CPU) -> None: ...
    def on_vm_exit(self, vm: VM) -> None: ...


class Monitor:
    """Owns CPUs, VMs and accounts; wires the mechanisms together for one run."""

    def __init__(self, cfg: SimConfig, loop: EventLoop, streams: RandomStreams,
                 policy: Policy) -> None:
        self.cfg = cfg
        self.loop = loop
        self.streams = streams
        self.policy = policy
        self.machine = m = Machine.from_config(cfg)
        self.cpus = [CPU(i, m.node_of(i), m.cell_of(i)) for i in range(m.cpus)]
        self.vms: list[VM] = []
        self.acct = CpuAccounts(m.cells)
        self.timeline = Timeline()
        self.tree = LoadTree(m.cpus)
        self.cell_assigned = [0] * m.cells  # VCPUs (not done) queued per cell
        self.cell_live = [True] * m.cells  # False: failed or evacuated (faults, recovery.py)
        self.counters = {
            "migrations_node": 0, "migrations_cell": 0, "migrations_remote": 0,
            "balancer_moves_idle": 0, "balancer_moves_periodic": 0, "gang_preemptions": 0,
        }
        self.vms_open = 0  # arrived or pending, not finished
        self.gang_on = policy.gang
        self.spin_penalty = policy.spin_penalty
        self.migrator = Migrator(self)
        self.gang = GangScheduler(self)
        self.placement = Placement(self)
        self.idle_balancer = IdleBalancer(self) if cfg.policy.idle_balancer else None
        self.periodic = PeriodicBalancer(self) if cfg.policy.periodic_balancer else None
        self._last_sample = (0.0, [0.0] * m.cells, [0.0] * m.cells, [0.0] * m.cells)
        # Extension points for the memory and fault mechanisms (see MonitorHook).
        self.hooks: list[object] = []
        self._listeners: dict[str, list[Callable[..., None]]] = {}  # event -> hook methods
        # Multiplies a VCPU's progress rate (e.g. remote-memory stalls); None: factor 1.
        self.rate_factor: Callable[[VCPU], float] | None = None
        self.extra_metrics: list[Callable[[], dict[str, float | int]]] = []
        self.extra_tables: dict[str, Callable[[], dict[str, list]]] = {}
        self.extra_vm_columns: list[Callable[[], dict[str, list]]] = []  # per-VM table
        # Set when attached (memory.py, recovery.py). Declared: compiled, a Monitor takes no
        # attribute its class does not declare (disco.native). ``memory`` is duck-typed: the
        # memory manager or a test's stand-in; recovery asks it only what it implements.
        self.memory: Any = None
        self.recovery: Recovery | None = None

    def add_hook(self, hook: object) -> None:
        self.hooks.append(hook)
        self._listeners.clear()

    def notify(self, event: str, *args: object) -> None:
        listeners = self._listeners.get(event)
        if listeners is None:  # first time: look the methods up once, not at every event
            listeners = [m for h in self.hooks if (m := getattr(h, event, None)) is not None]
            self._listeners[event] = listeners
        for method in listeners:
            method(*args)

    # -- build --------------------------------------------------------------------------
    def build(self) -> None:
        """Create every VM of the mix and schedule its arrival (before the clock starts)."""
        w = self.cfg.workload
        vm_id = 0
        for group in w.vms:
            profile = w.profiles[group.workload]
            for k in range(group.count):
                vm = VM(vm_id, f"{group.workload}-{vm_id}", group.workload, profile,
                        group.memory_mb, group.arrival_s + k * group.spacing_s, group.work_s)
                vm.base_rate = self.policy.virtualization_rate(profile, group.vcpus)
                for i in range(group.vcpus):
                    rng = self.streams.get(f"workload/{vm_id}/{i}")
                    v = VCPU(vm, i, -1, rng, work_left=group.work_s)
                    v.run_left = self._draw_run(v)
                    vm.vcpus.append(v)
                self.vms.append(vm)
                self.loop.at(vm.arrival_s, self.placement.arrive, vm, group.home_cell)
                vm_id += 1
        self.vms_open = len(self.vms)
        interval = self.cfg.sim.sample_interval_s
        self.loop.schedule(interval, self._sample, interval)

    # -- execution ----------------------------------------------------------------------
    def _draw_run(self, v: VCPU) -> float:
        """Compute until the guest next blocks: exponential, merging bursts that continue."""
        p = v.vm.profile
        pb = p.io_prob + p.idle_prob
        if pb <= 0.0:
            return INF
        return -(p.burst_ms / pb) * 1e-3 * math.log(1.0 - v.uniform())

    def rate_of(self, v: VCPU) -> float:
        rate = v.vm.base_rate
        if v.spinning:
            rate *= 1.0 - v.vm.profile.spin_sensitivity
        if self.rate_factor is not None:
            rate *= self.rate_factor(v)
        return rate

    def start(self, v: VCPU, cpu: CPU, extra_debt: float = 0.0) -> None:
        """Put a RUNNABLE VCPU on its (free) CPU."""
        now = self.loop.now
        self.acct.idle[cpu.cell] += now - cpu.idle_since
        cpu.current = v
        if cpu.last is not v:
            extra_debt += self.gang.switch_cost
            cpu.last = v
        v.debt += extra_debt
        v.state = RUNNING
        cpu.waiting -= 1
        vm = v.vm
        vm.runnable -= 1
        vm.active += 1
        v.seg_start = now
        v.spinning = False
        # rate_of inlined (not spinning: just cleared): start is the hottest path of a run.
        rate = vm.base_rate
        if self.rate_factor is not None:
            rate *= self.rate_factor(v)
        v.rate = rate
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
        v.run_left = self._draw_run(v)
        cpu = self.stop(v, state)
        self.gang.vcpu_left(v, cpu)
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
        self.gang.became_runnable(v)

    def _finish_vcpu(self, v: VCPU) -> None:
        cpu = self.stop(v, DONE)
        self.remove_from_queue(v)
        vm = v.vm
        vm.done_vcpus += 1
        self.gang.vcpu_left(v, cpu)
        if vm.done_vcpus == len(vm.vcpus):
            vm.status = "done"
            vm.finish_s = self.loop.now
            self._vm_exit(vm)

    def _vm_exit(self, vm: VM) -> None:
        self.notify("on_vm_exit", vm)
        self.vms_open -= 1
        if self.vms_open == 0:
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
                self.remove_from_queue(v)
            v.state = LOST
        vm.running = False
        vm.wait_since = INF
        vm.status = "lost"
        vm.finish_s = self.loop.now
        for cpu in freed:
            if not self.gang_on:
                self.loop.cancel(cpu.slice_event)
                cpu.slice_event = None
            self.gang.kick(cpu)
        if not was_pending:
            self._vm_exit(vm)
        else:
            self.vms_open -= 1
            if self.vms_open == 0:
                self.loop.stop()

    def remove_from_queue(self, v: VCPU) -> None:
        cpu = self.cpus[v.cpu]
        cpu.queue.remove(v)
        self.cell_assigned[cpu.cell] -= 1
        cells = v.vm.cell_vcpus
        cells[cpu.cell] -= 1
        if not cells[cpu.cell]:
            del cells[cpu.cell]

    # -- sampling and results ----------------------------------------------------------
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

    def _sample(self, interval: float) -> None:
        self.flush()
        now = self.loop.now
        m = self.machine
        t0, guest0, spin0, idle0 = self._last_sample
        span = (now - t0) * m.cpus_per_cell
        acct, tl = self.acct, self.timeline
        for cell in range(m.cells):
            cpus = self.cpus[cell * m.cpus_per_cell:(cell + 1) * m.cpus_per_cell]
            tl.time_s.append(now)
            tl.cell.append(cell)
            tl.load.append(sum(c.load for c in cpus))
            tl.utilization.append((acct.guest[cell] - guest0[cell]) / span if span else 0.0)
            tl.spin_fraction.append((acct.spin[cell] - spin0[cell]) / span if span else 0.0)
            tl.idle_fraction.append((acct.idle[cell] - idle0[cell]) / span if span else 0.0)
            tl.running_vms.append(len({v.vm.id for c in cpus for v in c.queue}))
        self._last_sample = (now, acct.guest[:], acct.spin[:], acct.idle[:])
        self.loop.schedule(interval, self._sample, interval)

    def metrics(self) -> dict[str, float | int]:
        self.flush()
        now = self.loop.now
        total = now * len(self.cpus)
        guest, spin, overhead, idle = self.acct.totals()
        done = [vm for vm in self.vms if vm.status == "done"]
        runtimes = [vm.finish_s - vm.arrival_s for vm in done]
        nan = float("nan")
        out: dict[str, float | int] = {
            "sim_time_s": now,
            "events": self.loop.events,
            "cpu_utilization": guest / total if total else 0.0,
            "idle_fraction": idle / total if total else 0.0,
            "spin_waste_fraction": spin / total if total else 0.0,
            "overhead_fraction": overhead / total if total else 0.0,
            "vm_runtime_mean_s": sum(runtimes) / len(runtimes) if runtimes else nan,
            "vm_runtime_max_s": max(runtimes) if runtimes else nan,
            "makespan_s": max(vm.finish_s for vm in done) if len(done) == len(self.vms) else now,
            "vms_total": len(self.vms),
            "vms_completed": len(done),
        }
        out.update(self.counters)
        for extra in self.extra_metrics:
            out.update(extra())
        return out

    def vm_table(self) -> dict[str, list]:
        cols: dict[str, list] = {k: [] for k in (
            "vm", "name", "workload", "vcpus", "memory_mb", "work_s", "arrival_s", "finish_s",
            "runtime_s", "status", "home_cells", "cells_visited")}
        for vm in self.vms:
            finished = vm.status == "done"
            cols["vm"].append(vm.id)
            cols["name"].append(vm.name)
            cols["workload"].append(vm.workload)
            cols["vcpus"].append(len(vm.vcpus))
            cols["memory_mb"].append(vm.memory_mb)
            cols["work_s"].append(vm.work_s)
            cols["arrival_s"].append(vm.arrival_s)
            cols["finish_s"].append(vm.finish_s if finished else float("nan"))
            cols["runtime_s"].append(vm.finish_s - vm.arrival_s if finished else float("nan"))
            cols["status"].append(vm.status)
            cols["home_cells"].append(",".join(map(str, vm.home_cells)))
            cols["cells_visited"].append(len(vm.visited_cells))
        for extra in self.extra_vm_columns:
            cols.update(extra())
        return cols
