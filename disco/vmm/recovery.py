"""Fault containment and recovery (PAPER.md, Structure; Faults and recovery).

**Dependencies.** A running VM depends on a cell if it has a VCPU queued there
(``vm.cell_vcpus``), memory there (``mon.memory.memory_cells(vm)`` when the memory manager is
attached, else its home cells), or its monitor data there: the home cells always, and a cell a
VCPU left for another cell until the data follows (``faults.data_follow_s``; null: never, so the
VM depends on every cell its VCPUs visited, as ``vm.visited_cells`` records). A whole-VM
migration (``vm_migration.py``) moves everything, so afterwards only the new cells count.
The rule is applied at the instant of the fault (what was on the cell then is lost, even if it
would have moved on during recovery), plus any VM that came to depend on the cell meanwhile.

**Recovery** of a hardware fault, each step taking simulated time (``FaultsConfig``, all [A]):

1. *Detection*: ``detect_ms`` (``firmware_detect_ms`` for a hung hub's watchdog).
2. *Diagnosis*: firmware scans every node's directory and memory for bad lines, nodes in
   parallel: ``diag_base_ms + memory_per_node_mb / scan_mb_per_s + diag_per_node_ms * nodes``.
   Memory per node dominates; node count adds only the collection term.
3. *Agreement* on the live set of cells: ``agreement_timeout_ms`` (the dead cells' silence)
   plus ``agreement_rounds`` rounds, each an RPC (``rpc_us``) from a cell to every other live
   cell in turn. A fault that strikes before recovery has resumed the machine restarts it from
   its own detection, diagnosis and agreement (counted in ``recovery_restarts``).
4. *Unwedge*: cancel RPCs and messages stuck on the failed cells, ``unwedge_us_per_cpu`` each.
5. *Terminate* the dependent VMs. ``kill_policy: early`` kills them all now; ``lazy`` kills now
   those with a VCPU or monitor data on a failed cell, and lets one that only held memory there
   run until it touches a bad line (exponential, ``touch_rate_per_s``), so it survives if it
   finishes first. Cleanup costs ``terminate_ms_per_vm`` per VM killed now.
6. *Resume*.

Steps 1-4 are the machine-wide part: every CPU is paused (``cpu.online = False``: the gang
scheduler and the balancers leave it alone) from the fault until unwedging ends, and the pause
is charged as monitor overhead. Step 5 runs on the survivors while the other VMs go on; the
recovery time of a fault runs from the fault to the end of step 5. A failed cell's CPUs stay
offline (``cell_repair_s`` brings it back, empty); its memory is lost at the fault
(``mon.memory.on_cell_failed``), so nothing is allocated there during recovery. A VM arriving
when too few cells are live waits for a scheduled repair (or is lost if none is due).

Containment per fault (``contained``): no VM outside its dependent set died, and every VM in
the set is gone, unless it ended first (finished, or died of another fault) or, lazily, has
not touched bad memory yet. A fault whose recovery was still running when the run ended
counts as contained if nothing outside the set died (``faults_recovering``). A fault on a cell
that had already failed changes nothing (``faults_ignored``).

Baselines: with one cell every hardware fault kills every VM. Policy ``smp_os`` has no cells to
contain anything: ``fail_machine`` kills every job and reboots the whole machine for
``smp_reboot_s``. A guest OS crash kills only its VM, with no machine-wide pause.
``restart_lost`` restarts each lost VM from scratch on surviving cells once recovery is done,
so long runs measure throughput under a fault rate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from disco.engine import Handle
from disco.hardware.faults import Fault, FaultInjector
from disco.vmm.state import CPU, INF, RUNNABLE, VCPU, VM
from disco.vmm.vm_migration import VMMigrator

if TYPE_CHECKING:
    from disco.vmm.monitor import Monitor

LIVE, EVACUATING, EVACUATED, FAILED = "live", "evacuating", "evacuated", "failed"


@dataclass(slots=True, eq=False)
class FaultRecord:
    """One injected fault and what it cost."""

    fault: Fault
    cells: list[int] = field(default_factory=list)  # cells it failed (empty: none new)
    ignored: bool = False  # struck cells that had already failed
    dependent: list[int] = field(default_factory=list)  # VM ids the dependency rule condemns
    lost: list[int] = field(default_factory=list)  # VM ids it actually killed
    spared: list[int] = field(default_factory=list)  # lazy: finished before touching bad memory
    recovery_ms: float = 0.0
    restarts: int = 0
    recovering: bool = False  # its recovery had not finished when the run ended


@dataclass(slots=True, eq=False)
class Episode:
    """One machine-wide recovery, possibly covering several faults that struck during it."""

    records: list[FaultRecord]
    start: float
    event: Handle | None = None


class Recovery:
    """Fault handling for one run: attached by ``runner.build`` to every monitor."""

    def __init__(self, mon: Monitor) -> None:
        self.mon = mon
        self.f = f = mon.cfg.faults
        m = mon.machine
        self.cell_state = [LIVE] * m.cells
        self.smp = mon.cfg.policy.name == "smp_os"
        self.records: list[FaultRecord] = []
        self.episode: Episode | None = None
        self.paused_at: float | None = None
        self.pause_total = 0.0
        self.follow = INF if f.data_follow_s is None else f.data_follow_s
        # VM id -> cell -> when its monitor data there is gone (INF: it stays).
        self.data: dict[int, dict[int, float]] = {}
        self.sw_events: dict[int, Handle] = {}
        self.blame: dict[int, FaultRecord] = {}  # condemned VM id -> its fault
        self.why: dict[int, str | None] = {}  # condemned VM id -> its tie at the fault
        self.lazy_pending: dict[int, FaultRecord] = {}
        self.work_lost = 0.0
        self.vms_restarted = 0
        self.recovery_restarts = 0
        self.migrator = VMMigrator(mon, self)
        layout = mon.cfg.layout_nodes_per_cell
        self.injector = FaultInjector(m, f, mon.loop, mon.streams, self.on_fault, layout)
        self.returns: dict[int, float] = {}  # evacuated cell -> back in service after this
        for ev in f.evacuate:  # a cell of the configured layout: the machine cell of its nodes
            cell = m.cell_of_node(ev.cell * layout)
            if ev.return_s is not None:
                self.returns[cell] = ev.return_s
            mon.loop.at(ev.at_s, self.migrator.evacuate, cell)
        self.after_resume: list[tuple] = []  # (callback, args) deferred while paused
        self.repairs_due = 0  # failed cells with a repair scheduled
        self.waiting: list[tuple[VM, int | None]] = []  # arrivals waiting for a repaired cell
        mon.recovery = self
        mon.add_hook(self)
        mon.extra_metrics.append(self.metrics)
        mon.extra_tables["faults"] = self.table

    # -- dependency tracking (hooks) -------------------------------------------------------
    def on_vm_arrival(self, vm: VM) -> None:
        self.data[vm.id] = {c: INF for c in vm.home_cells}
        handle = self.injector.arm_software(vm.id)
        if handle is not None:
            self.sw_events[vm.id] = handle

    def on_vcpu_moved(self, v: VCPU, src: CPU, dst: CPU) -> None:
        if src.cell == dst.cell:
            return
        data = self.data[v.vm.id]
        until = self.mon.loop.now + self.follow
        if data.get(src.cell, 0.0) < until:
            data[src.cell] = until

    def on_vm_exit(self, vm: VM) -> None:
        self.mon.loop.cancel(self.sw_events.pop(vm.id, None))

    def memory_cells(self, vm: VM) -> set[int]:
        memory = self.mon.memory
        if memory is not None:
            return set(memory.memory_cells(vm))
        return set(vm.home_cells)

    def dependency(self, vm: VM, cells: list[int]) -> str | None:
        """Why ``vm`` depends on any of ``cells``: "vcpu", "data", "memory", or None."""
        if any(c in vm.cell_vcpus for c in cells):
            return "vcpu"
        data = self.data.get(vm.id, {})
        now = self.mon.loop.now
        if any(data.get(c, 0.0) > now for c in cells):
            return "data"
        mem = self.memory_cells(vm)
        if any(c in mem for c in cells):
            return "memory"
        return None

    def dependents(self, cells: list[int]) -> list[VM]:
        """Running VMs that depend on any of ``cells``, by id (O(VMs): recovery only)."""
        return [vm for vm in self.mon.vms
                if vm.status == "running" and self.dependency(vm, cells) is not None]

    # -- faults ------------------------------------------------------------------------
    def on_fault(self, fault: Fault) -> None:
        rec = FaultRecord(fault)
        self.records.append(rec)
        if not fault.hardware:
            self._software(rec)
        elif self.smp:
            self.fail_machine(rec)
        else:
            self._hardware(rec)

    def _software(self, rec: FaultRecord) -> None:
        """A guest OS crash: only its VM dies; the monitor notices at once."""
        vm = self.mon.vms[rec.fault.vm]
        rec.recovery_ms = self.f.software_detect_ms
        if vm.status != "running":
            rec.ignored = True
            return
        rec.dependent = [vm.id]
        self.mon.loop.schedule(self.f.software_detect_ms * 1e-3, self._kill_now, [vm], rec)

    def _kill_now(self, vms: list[VM], rec: FaultRecord) -> None:
        self.terminate([vm for vm in vms if vm.status == "running"], rec, self.mon.loop.now)

    def _hardware(self, rec: FaultRecord) -> None:
        m = self.mon.machine
        cells = sorted({m.cell_of_node(n) for n in rec.fault.nodes})
        new = [c for c in cells if self.cell_state[c] != FAILED]
        if not new:
            rec.ignored = True  # the cell is already down: nothing more to lose
            return
        rec.cells = new
        rec.recovering = True
        had_memory = [c for c in new if self.cell_state[c] != EVACUATED]
        self.pause()
        for c in new:
            self._fail_cell(c)
        # Condemned by this fault: dependents not already condemned by an earlier one.
        for vm in self.dependents(new):
            if vm.id not in self.blame:
                rec.dependent.append(vm.id)
                self.blame[vm.id] = rec
                self.why[vm.id] = self.dependency(vm, new)
        # The cells' memory is gone now: nothing may be placed there from this instant.
        failed_hook = getattr(self.mon.memory, "on_cell_failed", None)
        if failed_hook is not None:
            for c in had_memory:  # an evacuated cell's memory was handed back already
                failed_hook(c)
        ep = self.episode
        if ep is None:
            self.episode = ep = Episode([rec], self.mon.loop.now)
        else:
            # Another fault before the machine resumed: the live set changed, so agreement
            # starts over once the new fault has been detected and diagnosed.
            ep.records.append(rec)
            self.mon.loop.cancel(ep.event)
            rec.restarts = 1
            self.recovery_restarts += 1
        ep.event = self.mon.loop.schedule(self.machine_wide_s(rec.fault.type), self._unwedged, ep)

    # -- cost model ----------------------------------------------------------------------
    def detection_s(self, kind: str) -> float:
        f = self.f
        return (f.firmware_detect_ms if kind == "firmware" else f.detect_ms) * 1e-3

    def diagnosis_s(self) -> float:
        f, m = self.f, self.mon.machine
        return (f.diag_base_ms * 1e-3 + m.memory_per_node_mb / f.scan_mb_per_s
                + f.diag_per_node_ms * 1e-3 * m.nodes)

    def agreement_s(self) -> float:
        f = self.f
        live = sum(1 for s in self.cell_state if s != FAILED)
        rounds = f.agreement_rounds * max(live - 1, 0) * f.rpc_us * 1e-6
        return f.agreement_timeout_ms * 1e-3 + rounds

    def unwedge_s(self) -> float:
        return self.f.unwedge_us_per_cpu * 1e-6 * len(self.mon.cpus)

    def machine_wide_s(self, kind: str) -> float:
        """Detection + diagnosis + agreement + unwedge: the part every VM waits for."""
        return self.detection_s(kind) + self.diagnosis_s() + self.agreement_s() + self.unwedge_s()

    # -- the machine-wide pause ------------------------------------------------------------
    def pause(self) -> None:
        """Stop every CPU (recovery is O(machine)); VCPUs keep their queues."""
        if self.paused_at is not None:
            return
        mon = self.mon
        self.paused_at = mon.loop.now
        for cpu in mon.cpus:
            self._stop_cpu(cpu)
            cpu.online = False

    def _stop_cpu(self, cpu: CPU) -> None:
        cur = cpu.current
        if cur is None:
            return
        mon = self.mon
        if mon.gang_on:
            mon.gang.deschedule(cur.vm, kick=False)
        else:
            mon.loop.cancel(cpu.slice_event)
            cpu.slice_event = None
            mon.stop(cur, RUNNABLE)

    def resume(self) -> None:
        mon = self.mon
        if self.paused_at is None:
            return
        now = mon.loop.now
        span = now - self.paused_at
        self.pause_total += span
        self.paused_at = None
        m = mon.machine
        for cell, state in enumerate(self.cell_state):
            if state in (LIVE, EVACUATING):
                for i in m.cell_cpus(cell):
                    cpu = mon.cpus[i]
                    # The pause was monitor work, not idleness: move it to overhead.
                    lost = min(span, now - cpu.idle_since)
                    mon.acct.overhead[cell] += lost
                    cpu.idle_since += lost
                    cpu.online = True
        for cell, state in enumerate(self.cell_state):
            if state in (LIVE, EVACUATING):
                for i in m.cell_cpus(cell):
                    mon.gang.kick(mon.cpus[i])
        deferred, self.after_resume = self.after_resume, []
        for callback, args in deferred:
            callback(*args)

    # -- cells -------------------------------------------------------------------------
    def _fail_cell(self, cell: int) -> None:
        mon = self.mon
        prev = self.cell_state[cell]
        self.cell_state[cell] = FAILED
        mon.cell_live[cell] = False
        for i in mon.machine.cell_cpus(cell):
            cpu = mon.cpus[i]
            self._stop_cpu(cpu)
            cpu.online = False
            if prev != EVACUATED:
                mon.tree.set_online(i, False)

    def take_offline(self, cell: int) -> None:
        """An evacuated cell: its CPUs stop (hot replacement); a fault there loses nothing.
        No VM depends on it any more; its memory leaves the pool so none comes to."""
        mon = self.mon
        self.cell_state[cell] = EVACUATED
        mon.cell_live[cell] = False
        failed_hook = getattr(mon.memory, "on_cell_failed", None)
        if failed_hook is not None:
            failed_hook(cell)
        for i in mon.machine.cell_cpus(cell):
            cpu = mon.cpus[i]
            self._stop_cpu(cpu)
            cpu.online = False
            mon.tree.set_online(i, False)
        back = self.returns.pop(cell, None)
        if back is not None:  # the replacement is in: the cell returns to service, empty
            self.repairs_due += 1
            mon.loop.schedule(back, self._repair, cell)

    def defer_arrival(self, vm: VM, home_cell: int | None) -> bool:
        """Placement found too few live cells: hold the VM until a repair, if one is due."""
        if not self.repairs_due:
            return False
        self.waiting.append((vm, home_cell))
        return True

    def _repair(self, cell: int) -> None:
        """A failed or evacuated cell comes back (replaced or rebooted): empty, live, its CPUs
        online; VMs that found no room meanwhile try again, in arrival order."""
        mon = self.mon
        self.repairs_due -= 1
        if self.cell_state[cell] not in (FAILED, EVACUATED):
            return
        self.cell_state[cell] = LIVE
        mon.cell_live[cell] = True
        repaired = getattr(mon.memory, "on_cell_repaired", None)
        if repaired is not None:
            repaired(cell)
        for i in mon.machine.cell_cpus(cell):
            cpu = mon.cpus[i]
            mon.tree.set_online(i, True)
            if self.paused_at is None:
                cpu.online = True
                mon.gang.kick(cpu)
        waiting, self.waiting = self.waiting, []
        for vm, home_cell in waiting:
            mon.placement.arrive(vm, home_cell)

    # -- after the machine-wide part ---------------------------------------------------------
    def _unwedged(self, ep: Episode) -> None:
        mon = self.mon
        now = mon.loop.now
        self.episode = None
        cells = sorted({c for rec in ep.records for c in rec.cells})
        # The rule at each fault (what was on the cell when it died is lost, even if it would
        # have moved on since), plus anything that came to depend on the cells meanwhile.
        marked = {i for rec in ep.records for i in rec.dependent}
        condemned = [vm for vm in mon.vms if vm.status == "running"
                     and (vm.id in marked or self.dependency(vm, cells) is not None)]
        early: list[VM] = []
        for vm in condemned:
            rec = self.blame.setdefault(vm.id, self._first_record(ep, vm))
            if vm.id not in rec.dependent:
                rec.dependent.append(vm.id)
            # Lazy only for a tie by memory alone, at the fault and now (a VM spared earlier
            # may since have lost its VCPUs' cell too).
            memory_only = (self.why.get(vm.id) in ("memory", None)
                           and self.dependency(vm, cells) in ("memory", None))
            if self.f.kill_policy == "lazy" and memory_only:
                self.lazy_pending[vm.id] = rec
                rng = mon.streams.get(f"faults/touch/{vm.id}")
                rate = self.f.touch_rate_per_s
                if rate > 0.0:
                    mon.loop.schedule(rng.exponential(1.0 / rate), self._touch, vm)
            else:
                early.append(vm)
        end = now + self.f.terminate_ms_per_vm * 1e-3 * len(early)
        for rec in ep.records:
            rec.recovery_ms = (end - rec.fault.time_s) * 1e3
            rec.recovering = False
        by_rec: dict[int, list[VM]] = {}
        for vm in early:
            by_rec.setdefault(id(self.blame[vm.id]), []).append(vm)
        for rec in ep.records:
            self.terminate(by_rec.get(id(rec), []), rec, end)
        for vm in early:  # blamed on an earlier episode's fault (rare): still terminate
            if vm.status == "running":
                self.terminate([vm], self.blame[vm.id], end)
        self.resume()
        if self.f.cell_repair_s is not None:
            for c in cells:
                self.repairs_due += 1
                mon.loop.at(end + self.f.cell_repair_s, self._repair, c)

    def _first_record(self, ep: Episode, vm: VM) -> FaultRecord:
        for rec in ep.records:
            if self.dependency(vm, rec.cells) is not None:
                return rec
        return ep.records[0]

    def _touch(self, vm: VM) -> None:
        """Lazy policy: the VM touched a bad line of lost memory and dies now."""
        rec = self.lazy_pending.pop(vm.id, None)
        if rec is not None and vm.status == "running":
            self.terminate([vm], rec, self.mon.loop.now)

    def terminate(self, vms: list[VM], rec: FaultRecord, restart_at: float) -> None:
        """Kill ``vms`` for ``rec`` (and queue their restarts first, so the run goes on)."""
        mon = self.mon
        if self.f.restart_lost:
            for vm in vms:
                self._restart(vm, restart_at + self.f.restart_delay_s)
        for vm in vms:
            mon.kill_vm(vm)
            rec.lost.append(vm.id)
            self.lazy_pending.pop(vm.id, None)
            self.work_lost += sum(vm.work_s - v.work_left for v in vm.vcpus)

    def _restart(self, vm: VM, at: float) -> None:
        """A fresh copy of a lost VM, arriving on surviving cells when recovery is done."""
        mon = self.mon
        new_id = len(mon.vms)
        clone = VM(new_id, f"{vm.name}+r", vm.workload, vm.profile, vm.memory_mb,
                   max(at, mon.loop.now), vm.work_s)
        clone.base_rate = vm.base_rate
        for i in range(len(vm.vcpus)):
            rng = mon.streams.get(f"workload/{new_id}/{i}")
            v = VCPU(clone, i, -1, rng, work_left=vm.work_s)
            v.run_left = mon._draw_run(v)
            clone.vcpus.append(v)
        mon.vms.append(clone)
        mon.vms_open += 1
        self.vms_restarted += 1
        mon.loop.at(clone.arrival_s, mon.placement.arrive, clone, None)

    # -- SMP OS: no containment ------------------------------------------------------------
    def fail_machine(self, rec: FaultRecord) -> None:
        """One OS over the machine: any hardware fault kills every job and reboots everything."""
        mon = self.mon
        if self.paused_at is not None:
            rec.ignored = True  # already rebooting
            return
        rec.cells = list(range(mon.machine.cells))
        now = mon.loop.now
        victims = [vm for vm in mon.vms if vm.status == "running"]
        rec.dependent = [vm.id for vm in victims]
        reboot = self.f.smp_reboot_s
        rec.recovery_ms = reboot * 1e3
        self.pause()
        self.terminate(victims, rec, now + reboot)
        mon.loop.schedule(reboot, self.resume)

    # -- results -----------------------------------------------------------------------
    def contained(self, rec: FaultRecord) -> bool:
        """Lost exactly the dependent VMs: none outside the set, and every one in it is gone,
        unless it ended first (finished, or lost to another fault) or, under the lazy policy,
        has not touched its bad memory yet."""
        lost, dep = set(rec.lost), set(rec.dependent)
        if not lost <= dep:
            return False
        if rec.recovering:  # the run ended before termination: nothing outside the set died
            return True
        vms = self.mon.vms
        return all(vms[i].status != "running" or i in self.lazy_pending for i in sorted(dep - lost))

    def metrics(self) -> dict[str, float | int]:
        recs = self.records
        hw = [r for r in recs if r.fault.hardware]
        times = [r.recovery_ms for r in hw if not r.ignored and not r.recovering]
        pause = self.pause_total
        if self.paused_at is not None:
            pause += self.mon.loop.now - self.paused_at
        return {
            "faults_injected": len(recs),
            "faults_hardware": len(hw),
            "faults_software": len(recs) - len(hw),
            "faults_ignored": sum(1 for r in recs if r.ignored),
            "faults_recovering": sum(1 for r in recs if r.recovering),
            "vms_lost": sum(len(r.lost) for r in recs),
            "vms_lost_dependent": sum(len(r.dependent) for r in recs),
            "faults_contained": sum(1 for r in recs if self.contained(r)),
            "recovery_time_ms_mean": sum(times) / len(times) if times else 0.0,
            "recovery_time_ms_max": max(times) if times else 0.0,
            "recovery_pause_s": pause,
            "recovery_restarts": self.recovery_restarts,
            "work_lost_cpu_s": self.work_lost,
            "vms_restarted": self.vms_restarted,
            "vms_migrated": self.migrator.completed,
            "vm_migrations_aborted": self.migrator.aborted,
            "cells_failed": sum(1 for s in self.cell_state if s == FAILED),
            # Arrivals that found too few live cells and no repair due: never ran.
            "vms_unplaceable": sum(1 for vm in self.mon.vms
                                   if vm.status == "lost" and not vm.home_cells),
        }

    def table(self) -> dict[str, list]:
        cols: dict[str, list] = {k: [] for k in (
            "time_s", "type", "place", "cell", "cells", "recovery_time_ms", "vms_dependent",
            "vms_lost", "contained", "ignored")}
        for r in self.records:
            cols["time_s"].append(r.fault.time_s)
            cols["type"].append(r.fault.type)
            cols["place"].append(r.fault.place)
            cols["cell"].append(r.cells[0] if r.cells else -1)
            cols["cells"].append(",".join(map(str, r.cells)))
            cols["recovery_time_ms"].append(r.recovery_ms)
            cols["vms_dependent"].append(len(r.dependent))
            cols["vms_lost"].append(len(r.lost))
            cols["contained"].append(self.contained(r))
            cols["ignored"].append(r.ignored)
        return cols
