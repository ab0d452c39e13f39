"""Recovering from a fault: the episode, its cost model and who dies (PAPER.md, Faults and
recovery). Who depends on a failed cell is the containment rule's answer (``containment.py``);
cells failing, pausing the machine and coming back are the cell lifecycle (``cell_lifecycle.py``).

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
   run until it touches a lost line, so it survives if it finishes first. Its first touch comes
   at an exponential time of rate ``touch_rate_per_s`` x its workload's ``memory_intensity`` x
   the share of its resident memory that was on the failed cells (taken at the fault, before
   the memory is gone): a VM that lost little of its memory, or touches memory little, lives
   longer. Cleanup costs ``terminate_ms_per_vm`` per VM killed now.
6. *Resume*.

Steps 1-4 are the machine-wide part: every CPU is paused from the fault until unwedging ends,
and the pause is charged as monitor overhead. Step 5 runs on the survivors while the other VMs
go on; the recovery time of a fault runs from the fault to the end of step 5. The dependency
rule is applied at the instant of the fault (what was on the cell then is lost, even if it
would have moved on during recovery), plus any VM that came to depend on the cell meanwhile.
A failed cell's memory is lost at the fault, so nothing is allocated there during recovery;
``cell_repair_s`` brings the cell back, empty.

The fault metrics count honestly: ``vms_lost`` counts each original VM once, and losses of the
copies ``restart_lost`` started apart (``vms_lost_restarted``); ``vms_lost_per_fault`` is every
loss over the effective faults whose recovery finished; ``running_vms_lost_share`` is, over
those of them that were hardware faults, the mean share of the VMs running at the fault that it
killed (a VM that keeps to its cells dies with them alone, so about 1 / cells). A fault is
*contained* (``faults_contained``, of ``faults_effective_hardware``) when every VM it killed
had a home cell among the failed cells; it leaks when it kills a VM placed elsewhere that a
split VCPU, borrowed memory or monitor data left behind tied to them. That the fault killed
exactly what the dependency rule names (``rule_kept``) is an invariant of the simulator,
checked by the invariant checker, not a result. A fault on a cell that had already failed
changes nothing (``faults_ignored``).

**Censored recoveries.** A fault whose recovery had not finished when the run ended is
*censored* (``faults_censored``; ``faults_recovering`` is the same count, its old name): it has
no recovery time (excluded from the mean and max, which are NaN when no recovery finished and
one was censored; the ``faults`` table's ``recovery_time_ms`` is NaN for it), it is not counted
as contained, and its dependents still running are *pending loss* (``vms_pending_loss``, the
per-VM column ``pending_loss``): the rule condemned them but they had not been killed yet, so
``rule_kept`` checks only that nothing outside them died. A
run whose last VM ends while a recovery is under way goes on until the recovery ends
(``MonitorState.recovering``), so only the duration censors.

What a hardware fault does is the policy's (``Policy.contains_faults``): with one cell every
hardware fault kills every VM through the same rule; without containment (the SMP OS) any
hardware fault kills every job and reboots the whole machine for ``smp_reboot_s``. A guest OS
crash kills only its VM, with no machine-wide pause. ``restart_lost`` restarts each lost VM
from scratch on surviving cells once recovery is done, so long runs measure throughput under
a fault rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from disco.config import FaultsConfig
from disco.engine import EventLoop, Handle, RandomStreams
from disco.hardware import Machine
from disco.hardware.faults import Fault, FaultInjector
from disco.vmm.cell_lifecycle import EVACUATED, FAILED, CellLifecycle
from disco.vmm.containment import Containment
from disco.vmm.execution import Execution, VMFactory
from disco.vmm.placement import Placement
from disco.vmm.reporting import Report
from disco.vmm.state import VM, MonitorState
from disco.vmm.trace_hooks import NO_TRACE, TraceHooks


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
    running: int = 0  # VMs running when it struck (it killed len(lost) / running of them)


@dataclass(slots=True, eq=False)
class Episode:
    """One machine-wide recovery, possibly covering several faults that struck during it."""

    records: list[FaultRecord]
    start: float
    event: Handle | None = None


class RecoveryCost:
    """How long each step of recovering from a fault takes (the module docstring)."""

    def __init__(self, f: FaultsConfig, machine: Machine, cpus: int) -> None:
        self.f = f
        self.machine = machine
        self.cpus = cpus

    def detection_s(self, kind: str) -> float:
        f = self.f
        return (f.firmware_detect_ms if kind == "firmware" else f.detect_ms) * 1e-3

    def diagnosis_s(self) -> float:
        f, m = self.f, self.machine
        return (f.diag_base_ms * 1e-3 + m.memory_per_node_mb / f.scan_mb_per_s
                + f.diag_per_node_ms * 1e-3 * m.nodes)

    def agreement_s(self, live_cells: int) -> float:
        f = self.f
        rounds = f.agreement_rounds * max(live_cells - 1, 0) * f.rpc_us * 1e-6
        return f.agreement_timeout_ms * 1e-3 + rounds

    def unwedge_s(self) -> float:
        return self.f.unwedge_us_per_cpu * 1e-6 * self.cpus

    def machine_wide_s(self, kind: str, live_cells: int) -> float:
        """Detection + diagnosis + agreement + unwedge: the part every VM waits for."""
        return (self.detection_s(kind) + self.diagnosis_s() + self.agreement_s(live_cells)
                + self.unwedge_s())


class Recovery:
    """Fault handling for one run: injects the configured faults and recovers from each.
    ``contains_faults`` is the policy's: False, any hardware fault reboots the machine."""

    def __init__(self, loop: EventLoop, streams: RandomStreams, machine: Machine,
                 state: MonitorState, f: FaultsConfig, layout_nodes_per_cell: int,
                 contains_faults: bool, containment: Containment, lifecycle: CellLifecycle,
                 execution: Execution, factory: VMFactory, placement: Placement) -> None:
        self.loop = loop
        self.streams = streams
        self.machine = machine
        self.state = state
        self.f = f
        self.contains_faults = contains_faults
        self.containment = containment
        self.lifecycle = lifecycle
        self.execution = execution
        self.factory = factory
        self.placement = placement
        self.cost = RecoveryCost(f, machine, len(state.cpus))
        self.records: list[FaultRecord] = []
        self.episode: Episode | None = None
        self.sw_events: dict[int, Handle] = {}
        self.blame: dict[int, FaultRecord] = {}  # condemned VM id -> its fault
        self.why: dict[int, str | None] = {}  # condemned VM id -> its tie at the fault
        self.lazy_pending: dict[int, FaultRecord] = {}
        self.lost_share: dict[int, float] = {}  # memory-only dependent -> share of it lost
        self.origin: dict[int, int] = {}  # restarted copy's VM id -> the original's id
        self.work_lost = 0.0
        self.vms_restarted = 0
        self.recovery_restarts = 0
        self.trace: TraceHooks = NO_TRACE  # runner.build sets a tracer when tracing
        self.injector = FaultInjector(machine, f, loop, streams, self.on_fault,
                                      layout_nodes_per_cell)

    def start(self) -> None:
        self.injector.start()

    # -- guest OS crashes follow the VMs (bus) -------------------------------------------------
    def on_vm_arrived(self, vm: VM) -> None:
        handle = self.injector.arm_software(vm.id)
        if handle is not None:
            self.sw_events[vm.id] = handle

    def on_vm_exited(self, vm: VM) -> None:
        self.loop.cancel(self.sw_events.pop(vm.id, None))

    # -- faults ------------------------------------------------------------------------------
    def on_fault(self, fault: Fault) -> None:
        rec = FaultRecord(fault)
        self.records.append(rec)
        if not fault.hardware:
            self._software(rec)
        elif self.contains_faults:
            self._hardware(rec)
        else:
            self.fail_machine(rec)

    def _software(self, rec: FaultRecord) -> None:
        """A guest OS crash: only its VM dies; the monitor notices at once."""
        vm = self.state.vms[rec.fault.vm]
        rec.recovery_ms = self.f.software_detect_ms
        if vm.status != "running":
            rec.ignored = True
            return
        rec.dependent = [vm.id]
        rec.running = self._running()
        rec.recovering = True  # until the monitor has killed it
        self.trace.recovery(rec.fault, [("detection", self.f.software_detect_ms * 1e-3)])
        self.loop.schedule(self.f.software_detect_ms * 1e-3, self._kill_now, [vm], rec)

    def _kill_now(self, vms: list[VM], rec: FaultRecord) -> None:
        rec.recovering = False
        self.terminate([vm for vm in vms if vm.status == "running"], rec, self.loop.now)

    def _hardware(self, rec: FaultRecord) -> None:
        m = self.machine
        life = self.lifecycle
        cells = sorted({m.cell_of_node(n) for n in rec.fault.nodes})
        new = [c for c in cells if life.cell_state[c] != FAILED]
        if not new:
            rec.ignored = True  # the cell is already down: nothing more to lose
            return
        rec.cells = new
        rec.recovering = True
        self.state.recovering = True  # the run may not end before this recovery does
        rec.running = self._running()
        had_memory = [c for c in new if life.cell_state[c] != EVACUATED]
        life.pause()
        for c in new:
            life.fail(c)
        # Condemned by this fault: dependents not already condemned by an earlier one.
        rule = self.containment
        for vm in rule.dependents(new):
            if vm.id not in self.blame:
                rec.dependent.append(vm.id)
                self.blame[vm.id] = rec
                why = self.why[vm.id] = rule.dependency(vm, new)
                if why == "memory":  # before the memory is gone: how much of it is lost
                    self.lost_share[vm.id] = rule.lost_share(vm, new)
        # The cells' memory is gone now: nothing may be placed there from this instant.
        for c in had_memory:  # an evacuated cell's memory was handed back already
            life.announce_failure(c)
        ep = self.episode
        if ep is None:
            self.episode = ep = Episode([rec], self.loop.now)
        else:
            # Another fault before the machine resumed: the live set changed, so agreement
            # starts over once the new fault has been detected and diagnosed.
            ep.records.append(rec)
            self.loop.cancel(ep.event)
            rec.restarts = 1
            self.recovery_restarts += 1
        wide = self.cost.machine_wide_s(rec.fault.type, life.live_cells())
        ep.event = self.loop.schedule(wide, self._unwedged, ep)
        cost, kind = self.cost, rec.fault.type
        self.trace.recovery(rec.fault, [("detection", cost.detection_s(kind)),
                                        ("diagnosis", cost.diagnosis_s()),
                                        ("agreement", cost.agreement_s(life.live_cells())),
                                        ("unwedge", cost.unwedge_s())])

    # -- after the machine-wide part ---------------------------------------------------------
    def _unwedged(self, ep: Episode) -> None:
        now = self.loop.now
        self.episode = None
        self.state.recovering = False
        rule = self.containment
        cells = sorted({c for rec in ep.records for c in rec.cells})
        # The rule at each fault (what was on the cell when it died is lost, even if it would
        # have moved on since), plus anything that came to depend on the cells meanwhile.
        marked = {i for rec in ep.records for i in rec.dependent}
        condemned = [vm for vm in self.state.vms if vm.status == "running"
                     and (vm.id in marked or rule.dependency(vm, cells) is not None)]
        early: list[VM] = []
        for vm in condemned:
            rec = self.blame.setdefault(vm.id, self._first_record(ep, vm))
            if vm.id not in rec.dependent:
                rec.dependent.append(vm.id)
            # Lazy only for a tie by memory alone, at the fault and now (a VM spared earlier
            # may since have lost its VCPUs' cell too).
            memory_only = (self.why.get(vm.id) in ("memory", None)
                           and rule.dependency(vm, cells) in ("memory", None))
            if self.f.kill_policy == "lazy" and memory_only:
                self.lazy_pending[vm.id] = rec
                rng = self.streams.get(f"faults/touch/{vm.id}")
                # The first touch of a lost line: the VM's memory activity times the share of
                # its memory lost (a VM tied after the fault is taken to have lost it all).
                rate = (self.f.touch_rate_per_s * vm.profile.memory_intensity
                        * self.lost_share.get(vm.id, 1.0))
                if rate > 0.0:
                    self.loop.schedule(rng.exponential(1.0 / rate), self._touch, vm)
            else:
                early.append(vm)
        end = now + self.f.terminate_ms_per_vm * 1e-3 * len(early)
        self.trace.termination(end, early)
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
        self.lifecycle.resume()
        if self.f.cell_repair_s is not None:
            for c in cells:
                self.lifecycle.schedule_repair(c, end + self.f.cell_repair_s)
        if self.state.vms_open == 0:  # the run waited for this recovery to finish
            self.loop.stop()

    def _first_record(self, ep: Episode, vm: VM) -> FaultRecord:
        for rec in ep.records:
            if self.containment.dependency(vm, rec.cells) is not None:
                return rec
        return ep.records[0]

    def _touch(self, vm: VM) -> None:
        """Lazy policy: the VM touched a bad line of lost memory and dies now."""
        rec = self.lazy_pending.pop(vm.id, None)
        if rec is not None and vm.status == "running":
            self.terminate([vm], rec, self.loop.now)

    def terminate(self, vms: list[VM], rec: FaultRecord, restart_at: float) -> None:
        """Kill ``vms`` for ``rec`` (and queue their restarts first, so the run goes on)."""
        if self.f.restart_lost:
            for vm in vms:
                self._restart(vm, restart_at + self.f.restart_delay_s)
        for vm in vms:
            self.execution.kill_vm(vm)
            rec.lost.append(vm.id)
            self.lazy_pending.pop(vm.id, None)
            self.work_lost += sum(vm.work_s - v.work_left for v in vm.vcpus)

    def _restart(self, vm: VM, at: float) -> None:
        """A fresh copy of a lost VM, arriving on surviving cells when recovery is done."""
        clone = self.factory.restart(vm, max(at, self.loop.now))
        self.vms_restarted += 1
        self.origin[clone.id] = self.origin.get(vm.id, vm.id)
        self.placement.schedule(clone, None)

    # -- no containment (one SMP OS) ---------------------------------------------------------
    def fail_machine(self, rec: FaultRecord) -> None:
        """One OS over the machine: any hardware fault kills every job and reboots everything."""
        life = self.lifecycle
        if life.paused_at is not None:
            rec.ignored = True  # already rebooting
            return
        rec.cells = list(range(self.machine.cells))
        now = self.loop.now
        victims = [vm for vm in self.state.vms if vm.status == "running"]
        rec.dependent = [vm.id for vm in victims]
        rec.running = len(victims)
        reboot = self.f.smp_reboot_s
        rec.recovery_ms = reboot * 1e3
        self.trace.recovery(rec.fault, [("reboot", reboot)])
        life.pause()
        self.terminate(victims, rec, now + reboot)
        self.loop.schedule(reboot, life.resume)

    # -- results -----------------------------------------------------------------------------
    def _running(self) -> int:
        return sum(1 for vm in self.state.vms if vm.status == "running")

    def rule_kept(self, rec: FaultRecord) -> bool:
        """Lost exactly the dependent VMs: none outside the set, and every one in it is gone,
        unless it ended first (finished, or lost to another fault) or, under the lazy policy,
        has not touched its bad memory yet. An invariant (``invariants.py``), not a result."""
        lost, dep = set(rec.lost), set(rec.dependent)
        if not lost <= dep:
            return False
        if rec.recovering:  # under way or censored: its dependents are pending, not yet killed
            return True
        vms = self.state.vms
        return all(vms[i].status != "running" or i in self.lazy_pending for i in sorted(dep - lost))

    def contained(self, rec: FaultRecord) -> bool:
        """An effective hardware fault killed only VMs with a home cell among its failed cells
        (it can fail: a VM placed elsewhere that a split VCPU, borrowed memory or monitor data
        left behind tied to the cells dies with them)."""
        if rec.recovering:  # censored: the run ended before termination, not (yet) contained
            return False
        vms = self.state.vms
        cells = rec.cells
        return all(any(c in cells for c in vms[i].home_cells) for i in rec.lost)

    def _effective_hardware(self) -> list[FaultRecord]:
        return [r for r in self.records if r.fault.hardware and not r.ignored]

    def report(self, out: Report) -> None:
        recs = self.records
        hw = [r for r in recs if r.fault.hardware]
        eff_hw = self._effective_hardware()
        # Faults that hit a live part of the machine and finished recovering: a censored one
        # has killed nothing yet (its dependents are pending), so it would bias the rates down.
        effective = [r for r in recs if not r.ignored and not r.recovering]
        struck = [r for r in eff_hw if r.running and not r.recovering]
        lost = [i for r in recs for i in r.lost]
        copies = sum(1 for i in lost if i in self.origin)
        times = [r.recovery_ms for r in eff_hw if not r.recovering]
        censored = sum(1 for r in recs if r.recovering)
        none = math.nan if censored else 0.0  # no recovery finished: NaN if one is censored
        pending = self._pending_loss()
        nan = float("nan")
        out.metrics.update({
            "faults_injected": len(recs),
            "faults_hardware": len(hw),
            "faults_software": len(recs) - len(hw),
            "faults_ignored": sum(1 for r in recs if r.ignored),
            "faults_recovering": censored,
            "faults_censored": censored,
            "faults_effective_hardware": len(eff_hw),
            "vms_pending_loss": len(pending),
            # each original VM once; the restarted copies' losses apart
            "vms_lost": len(lost) - copies,
            "vms_lost_restarted": copies,
            # NaN without an effective fault: undefined, not none lost
            "vms_lost_per_fault": (sum(len(r.lost) for r in effective) / len(effective)
                                   if effective else nan),
            "running_vms_lost_share": (sum(len(r.lost) / r.running for r in struck)
                                       / len(struck) if struck else nan),
            "vms_lost_dependent": sum(len(r.dependent) for r in recs),
            "faults_contained": sum(1 for r in eff_hw if self.contained(r)),
            "recovery_time_ms_mean": sum(times) / len(times) if times else none,
            "recovery_time_ms_max": max(times) if times else none,
            "recovery_pause_s": self.lifecycle.pause_so_far(),
            "recovery_restarts": self.recovery_restarts,
            "work_lost_cpu_s": self.work_lost,
            "vms_restarted": self.vms_restarted,
            "cells_failed": sum(1 for s in self.lifecycle.cell_state if s == FAILED),
        })
        out.tables["faults"] = self.table()
        out.vm_columns["pending_loss"] = [vm.id in pending for vm in self.state.vms]

    def _pending_loss(self) -> set[int]:
        """Dependents of censored faults still running: lost once their recovery ends."""
        vms = self.state.vms
        return {i for r in self.records if r.recovering for i in r.dependent
                if vms[i].status == "running"}

    def table(self) -> dict[str, list]:
        vms = self.state.vms
        cols: dict[str, list] = {k: [] for k in (
            "time_s", "type", "place", "cell", "cells", "recovery_time_ms", "vms_running",
            "vms_dependent", "vms_lost", "vms_pending_loss", "contained", "censored", "ignored")}
        for r in self.records:
            cols["time_s"].append(r.fault.time_s)
            cols["type"].append(r.fault.type)
            cols["place"].append(r.fault.place)
            cols["cell"].append(r.cells[0] if r.cells else -1)
            cols["cells"].append(",".join(map(str, r.cells)))
            cols["recovery_time_ms"].append(math.nan if r.recovering else r.recovery_ms)
            cols["vms_running"].append(r.running)
            cols["vms_dependent"].append(len(r.dependent))
            cols["vms_lost"].append(len(r.lost))
            cols["vms_pending_loss"].append(sum(1 for i in r.dependent if r.recovering
                                                and vms[i].status == "running"))
            cols["contained"].append(r.fault.hardware and not r.ignored and self.contained(r))
            cols["censored"].append(r.recovering)
            cols["ignored"].append(r.ignored)
        return cols
