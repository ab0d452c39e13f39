"""A trace of one run, for Perfetto (ui.perfetto.dev) and chrome://tracing: which VCPU ran
where, when, and why.

``simulate(cfg, trace=TraceOptions("run.json"))`` writes it (``disco ... trace=true`` does in
a run's directory; docs/trace.md). The format is the Chrome trace-event JSON format, which both
viewers open, written here with the standard library (``json``, ``gzip``): the ``perfetto``
package's protobuf builder would need its trace processor to check a file, and that downloads
a binary at first use, which fails offline. A ``.gz`` path is gzip-compressed (both viewers
open it as is).

What it holds, in simulated time (1 s of simulation = 1 s on the viewer's axis):

- one process per cell, one thread per physical CPU of it (``node 3 / cpu 6``): a slice per
  VCPU run, named by its VM (so a VM keeps one colour), with the VCPU in its arguments; instant
  events on the destination CPU for VCPU moves (``idle steal``, ``periodic move``, ``move``
  for a whole VM's migration, with the distance and its cost) and gang preemptions;
  counters per cell: run-queue ``load``, ``free MB``, ``borrowed MB``;
- a ``VMs`` process, one thread per VM: its gang state, ``running`` (some VCPU on a CPU),
  ``waiting`` (runnable VCPUs, none running, since it woke or arrived) or ``descheduled``
  (runnable, taken off its CPUs by a preemption or a slice end); no slice while it has nothing
  to run (guest idle, blocked on I/O);
- a ``machine`` process: a thread per fault with the fault (instant) and its recovery phases
  as slices (``detection``, ``diagnosis``, ``agreement``, ``unwedge``, ``termination`` with the
  VMs killed; ``reboot`` without containment); cell failures and repairs; the ``paging writes``
  counter (MB written to the paging disks so far).

``TraceOptions.window`` keeps only what overlaps ``[from, to]`` seconds (slices clipped).

The tracer only observes (``disco/vmm/trace_hooks.py``): it schedules no event and draws no
random number, so a traced run's metrics, timeline and tables are the untraced run's, bit for
bit (tests/test_trace.py). Off, nothing of it runs.
"""

from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from disco.engine import EventLoop
from disco.hardware import OTHER_CELL, SAME_CELL, SAME_NODE, Machine
from disco.hardware.faults import Fault
from disco.vmm.bus import Bus
from disco.vmm.execution import Execution
from disco.vmm.frames import FrameStore
from disco.vmm.state import CPU, VCPU, VM, MonitorState
from disco.vmm.trace_hooks import GANG_STATES, TracedExecution, TraceHooks
from disco.vmm.vcpu_migration import VcpuMigrator

MACHINE_PID = 1
VMS_PID = 2
CELL_PID0 = 10  # cell c is process CELL_PID0 + c
DISTANCE = {SAME_NODE: "node", SAME_CELL: "cell", OTHER_CELL: "remote"}
_FLUSH_EVERY = 4096  # formatted events buffered before a write
_RUNS_EVERY = 65536  # VCPU runs and VM states kept as tuples before they are formatted


@dataclass(slots=True, frozen=True)
class TraceOptions:
    """Where to write a run's trace and what to keep.

    ``window``: ``(from_s, to_s)`` of simulated time, None for the whole run.
    ``counter_ms``: how often the counters are sampled (a sample is taken at the first VCPU
    start or stop after each interval, and written only when a value changed)."""

    path: str | Path
    window: tuple[float, float] | None = None
    counter_ms: float = 10.0


def _us(t: float) -> float:
    """Seconds -> microseconds, to the nanosecond (the file's resolution)."""
    return round(t * 1e9) / 1e3


class Tracer(TraceHooks):
    """Writes the trace as the run goes; ``attach`` before the clock starts, ``close`` after."""

    def __init__(self, options: TraceOptions) -> None:
        self.options = options
        w = options.window
        self.t0, self.t1 = (w[0], w[1]) if w is not None else (0.0, float("inf"))
        self.counter_s = options.counter_ms * 1e-3
        self.path = Path(options.path)
        self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self._out: IO[bytes] | None = None
        self._buf: list[str] = []
        self.events = 0

    # -- writing -------------------------------------------------------------------------
    def _emit(self, text: str) -> None:
        buf = self._buf
        buf.append(text)
        self.events += 1
        if len(buf) >= _FLUSH_EVERY:
            self._flush()

    def _flush(self) -> None:
        self._format_runs()
        if self._buf and self._out is not None:
            self._out.write((",\n".join(self._buf) + ",\n").encode())
            self._buf.clear()

    def _meta(self, pid: int, kind: str, value: str | int, tid: int | None = None) -> None:
        key = "sort_index" if kind.endswith("sort_index") else "name"
        where = f'"pid":{pid}' + (f',"tid":{tid}' if tid is not None else "")
        self._emit(f'{{"ph":"M",{where},"name":"{kind}","args":{{"{key}":'
                   f'{json.dumps(value)}}}}}')

    def _slice(self, pid: int, tid: int, name: str, start: float, end: float,
               args: str = "") -> None:
        """A complete event clipped to the window; ``name`` already JSON-quoted."""
        s, e = max(start, self.t0), min(end, self.t1)
        a, b = round(s * 1e9), round(e * 1e9)  # integer nanoseconds: exact durations
        if b <= a:  # empty, or under a nanosecond (the file's resolution)
            return
        extra = f',"args":{args}' if args else ""
        self._emit(f'{{"ph":"X","pid":{pid},"tid":{tid},"ts":{a / 1e3},"dur":{(b - a) / 1e3},'
                   f'"name":{name}{extra}}}')

    def _format_runs(self) -> None:
        """Format the VCPU runs and VM states ``TracedExecution`` recorded as tuples (its only
        cost per event), clipped to the window, to the nanosecond: one list comprehension per
        batch over prefixes (per CPU, per VM) and suffixes (per VCPU, per state) made once."""
        ex = self.execution
        runs, states = ex.runs, ex.states
        if not runs and not states:
            return
        ex.runs, ex.states = [], []
        self._name_new_vms()
        t0, t1 = self.t0, self.t1
        if t0 > 0.0 or t1 != float("inf"):
            runs = [(i, vm, vcpu, max(a, t0), min(b, t1)) for i, vm, vcpu, a, b in runs]
            states = [(vm, st, max(a, t0), min(b, t1)) for vm, st, a, b in states]
        cpu_head, vcpu_tail = self._cpu_head, self._vcpu_tail
        vm_head, state_tail = self._vm_head, self._state_tail
        # under a nanosecond would print as a zero duration: dropped
        lines = [f'{cpu_head[i]}{a * 1e6:.3f},"dur":{(b - a) * 1e6:.3f}{vcpu_tail[vm, vcpu]}'
                 for i, vm, vcpu, a, b in runs if b - a > 1e-9]
        lines += [f'{vm_head[vm]}{a * 1e6:.3f},"dur":{(b - a) * 1e6:.3f}{state_tail[st]}'
                  for vm, st, a, b in states if b - a > 1e-9]
        self._buf.extend(lines)
        self.events += len(lines)

    def _name_new_vms(self) -> None:
        """Track names and the format pieces of the VMs created since the last batch."""
        for vm in self.vms[len(self._vm_head):]:
            name = json.dumps(vm.name)
            self._vm_head.append(f'{{"ph":"X","pid":{VMS_PID},"tid":{vm.id},"ts":')
            for v in vm.vcpus:
                self._vcpu_tail[vm.id, v.index] = (f',"name":{name},"args":{{"vcpu":{v.index},'
                                                   f'"vm":{vm.id}}}}}')
            self._meta(VMS_PID, "thread_name", vm.name, vm.id)
            self._meta(VMS_PID, "thread_sort_index", vm.id, vm.id)

    def _instant(self, pid: int, tid: int, name: str, t: float, args: dict) -> None:
        if self.t0 <= t <= self.t1:
            self._emit(f'{{"ph":"i","s":"t","pid":{pid},"tid":{tid},"ts":{_us(t)},'
                       f'"name":{json.dumps(name)},"args":{json.dumps(args)}}}')

    # -- set up --------------------------------------------------------------------------
    def attach(self, loop: EventLoop, machine: Machine, state: MonitorState, bus: Bus,
               execution: Execution, frames: FrameStore, migrator: VcpuMigrator,
               rpc_s: float) -> None:
        """Take ``execution``'s records, subscribe to ``bus``, name the tracks, open the file
        (``runner.build`` calls it before the run)."""
        self.loop = loop
        assert isinstance(execution, TracedExecution), "build(cfg, tracer=...) makes it"
        self.execution = execution
        execution.trace_to(self)
        self.vms = state.vms
        self.machine = m = machine
        self.cpus = state.cpus
        self.frames = frames
        self.migrator = migrator
        self.rpc_s = rpc_s
        self._cpu_head = [f'{{"ph":"X","pid":{CELL_PID0 + cpu.cell},"tid":{cpu.index},"ts":'
                          for cpu in self.cpus]
        self._vm_head: list[str] = []  # per VM id
        self._vcpu_tail: dict[tuple[int, int], str] = {}  # per (VM id, VCPU index)
        self._state_tail = [f',"name":"{name}"}}' for name in GANG_STATES]
        self._last_counters: list[float] = []
        self._cell_cpus = [[self.cpus[i] for i in m.cell_cpus(c)] for c in range(m.cells)]
        names = [(CELL_PID0 + c, name) for c in range(m.cells)
                 for name in ("load", "free MB", "borrowed MB")]
        names.append((MACHINE_PID, "paging writes (MB)"))
        self._counter_heads = [f'{{"ph":"C","pid":{pid},"name":"{name}","ts":'
                               for pid, name in names]
        self._written_mb = 0.0
        self._faults = 0
        self._open: list[tuple[int, list[tuple[str, float, float]], Fault]] = []
        bus.on_vm_arrived(self._vm_arrived)
        bus.on_vm_exited(self._vm_exited)
        bus.on_vcpu_moved(self._vcpu_moved)
        bus.on_cell_failed(self._cell_failed)
        bus.on_cell_repaired(self._cell_repaired)
        bus.on_disk_request(self._disk_request)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        raw = open(self._tmp, "wb")  # noqa: SIM115 - closed in close()
        self._out = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) \
            if self.path.suffix == ".gz" else raw
        self._raw = raw
        self._out.write(b'{"displayTimeUnit":"ms","traceEvents":[\n')
        self._meta(MACHINE_PID, "process_name", "machine")
        self._meta(MACHINE_PID, "process_sort_index", 0)
        self._meta(MACHINE_PID, "thread_name", "cells", 0)
        self._meta(VMS_PID, "process_name", "VMs (gang state)")
        self._meta(VMS_PID, "process_sort_index", 1 + m.cells)
        for cell in range(m.cells):
            pid = CELL_PID0 + cell
            self._meta(pid, "process_name", f"cell {cell}")
            self._meta(pid, "process_sort_index", 1 + cell)
            for i in m.cell_cpus(cell):
                self._meta(pid, "thread_name", f"node {m.node_of(i)} / cpu {i}", i)
                self._meta(pid, "thread_sort_index", i, i)

    # -- counters ------------------------------------------------------------------------
    def sample(self, now: float) -> None:
        """Counters now (``TracedExecution`` asks every ``counter_ms``); written on change."""
        ex = self.execution
        ex.next_sample = now + self.counter_s
        if len(ex.runs) + len(ex.states) >= _RUNS_EVERY:
            self._flush()
        if not self.t0 <= now <= self.t1:
            return
        frames = self.frames
        chunk = frames.chunk_mb
        lent = frames.lent
        values = [0.0] * (3 * len(self._cell_cpus) + 1)
        for cell, cpus in enumerate(self._cell_cpus):
            load = 0
            for cpu in cpus:
                load += cpu.load
            values[3 * cell] = load
            values[3 * cell + 1] = frames.cell_free[cell] * chunk
            values[3 * cell + 2] = sum(lent[cell].values()) * chunk if cell in lent else 0
        values[-1] = self._written_mb
        last = self._last_counters
        if values == last:
            return
        heads, ts = self._counter_heads, f"{now * 1e6:.3f}"
        for k, value in enumerate(values):
            if k >= len(last) or last[k] != value:
                self._emit(f'{heads[k]}{ts},"args":{{"value":{value}}}}}')
        self._last_counters = values

    # -- the bus -------------------------------------------------------------------------
    def _vm_arrived(self, vm: VM) -> None:
        self.execution.vm_changed(vm, self.loop.now)

    def _vm_exited(self, vm: VM) -> None:
        now = self.loop.now
        self.execution.vm_changed(vm, now)
        if vm.status == "lost":
            self._instant(VMS_PID, vm.id, "killed", now, {"vm": vm.name})
            self._instant(MACHINE_PID, 0, "VM killed", now, {"vm": vm.name})

    def _vcpu_moved(self, v: VCPU, src: CPU, dst: CPU) -> None:
        now = self.loop.now
        dist = self.machine.distance(src.index, dst.index)
        args = {"vm": v.vm.name, "vcpu": v.index, "from_cpu": src.index, "to_cpu": dst.index,
                "distance": DISTANCE[dist], "cost_us": round(self.migrator.cost[dist] * 1e6, 3)}
        # Written when the next event comes: a balancer's hook right after names the move.
        self._flush_move()
        self._pending_move = (dst, now, args)

    _pending_move: tuple[CPU, float, dict] | None = None

    def _flush_move(self, name: str = "move") -> None:
        pending = self._pending_move
        if pending is not None:
            self._pending_move = None
            dst, t, args = pending
            self._instant(CELL_PID0 + dst.cell, dst.index, name, t, args)

    def idle_steal(self, v: VCPU, cpu: CPU) -> None:
        self._flush_move("idle steal")

    def periodic_move(self, v: VCPU, cpu: CPU) -> None:
        self._flush_move("periodic move")

    def gang_preempted(self, victim: VM, by: VM, cpu: CPU) -> None:
        self._flush_move()
        self._instant(CELL_PID0 + cpu.cell, cpu.index, "gang preempted", self.loop.now,
                      {"victim": victim.name, "by": by.name})

    def _cell_failed(self, cell: int) -> None:
        self._instant(MACHINE_PID, 0, "cell failed", self.loop.now, {"cell": cell})

    def _cell_repaired(self, cell: int) -> None:
        self._instant(MACHINE_PID, 0, "cell repaired", self.loop.now, {"cell": cell})

    def _disk_request(self, disk: int, time: float, mb: float, write: bool) -> None:
        if write:
            self._written_mb += mb

    # -- faults and recovery -------------------------------------------------------------
    def recovery(self, fault: Fault, phases: list[tuple[str, float]]) -> None:
        now = self.loop.now
        self._faults += 1
        tid = self._faults
        label = f"fault {tid}: {fault.type} ({fault.place})"
        self._meta(MACHINE_PID, "thread_name", label, tid)
        self._meta(MACHINE_PID, "thread_sort_index", tid, tid)
        self._instant(MACHINE_PID, tid, "fault", now, {"type": fault.type, "place": fault.place})
        spans = []
        t = now
        for name, seconds in phases:
            spans.append((name, t, t + seconds))
            t += seconds
        if not fault.hardware or phases and phases[0][0] == "reboot":
            self._write_phases(tid, spans, t)
            return
        # Another fault before the machine resumed restarts agreement: cut the others short.
        for other, other_spans, _ in self._open:
            self._write_phases(other, other_spans, now, cut=True)
            other_spans.clear()
        self._open.append((tid, spans, fault))

    def _write_phases(self, tid: int, spans: list[tuple[str, float, float]], until: float,
                      cut: bool = False) -> None:
        for name, a, b in spans:
            if a < until:
                args = '{"cut_short":true}' if cut and b > until else ""
                self._slice(MACHINE_PID, tid, json.dumps(name), a, min(b, until), args)

    def termination(self, end: float, vms: list[VM]) -> None:
        now = self.loop.now
        killed = json.dumps({"vms_killed": [vm.name for vm in vms]})
        for tid, spans, _ in self._open:
            self._write_phases(tid, spans, now)
            if end > now:
                self._slice(MACHINE_PID, tid, '"termination"', now, end, killed)
            else:
                self._instant(MACHINE_PID, tid, "termination", now,
                              {"vms_killed": [vm.name for vm in vms]})
        self._open.clear()

    # -- the end -------------------------------------------------------------------------
    def close(self) -> Path:
        """End every open slice at the run's end, write the file, and return its path."""
        now = self.loop.now
        self._flush_move()
        ex = self.execution
        for cpu in self.cpus:
            v = cpu.current
            if v is not None:
                ex.runs.append((cpu.index, v.vm.id, v.index, ex.run_start[cpu.index], now))
        for vm_id, (state, since) in sorted(ex.vm_state.items()):
            ex.states.append((vm_id, state, since, now))
        ex.vm_state.clear()
        for tid, spans, _ in self._open:
            self._write_phases(tid, spans, now, cut=True)
        self._open.clear()
        self.sample(now)
        self._flush()
        assert self._out is not None
        m = self.machine
        other = {"disco": "Cellular Disco simulator trace", "sim_time_s": now,
                 "window_s": None if self.options.window is None else list(self.options.window),
                 "cpus": m.cpus, "cells": m.cells, "nodes": m.nodes, "events": self.events,
                 "rpc_us": self.rpc_s * 1e6, "cell_pid0": CELL_PID0, "vms_pid": VMS_PID,
                 "machine_pid": MACHINE_PID}
        # The metadata event closes the list without a trailing comma.
        self._out.write(('{"ph":"M","pid":1,"name":"process_labels","args":{"labels":'
                         f'"simulated time"}}}}\n],"otherData":{json.dumps(other)}}}\n').encode())
        if self._out is not self._raw:
            self._out.close()
        self._raw.close()
        os.replace(self._tmp, self.path)
        self._out = None
        return self.path

    def abort(self) -> None:
        """The run failed: drop the partial file."""
        if self._out is not None:
            if self._out is not self._raw:
                self._out.close()
            self._raw.close()
            self._out = None
        self._tmp.unlink(missing_ok=True)


def load(path: str | Path) -> dict:
    """A trace written here, parsed (gzip or not)."""
    p = Path(path)
    data = p.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return json.loads(data)


__all__ = ["TraceOptions", "Tracer", "load"]
