"""The run's own results: CPU time per bucket, the timeline, the per-VM table.

Every ``sim.sample_interval_s`` the timeline takes one row per cell: load, and the share of the
interval its CPUs spent on guest progress, spinning and idle (``accounting.py``). At the end,
the CPU-time fractions of the whole run, run times of the VMs that finished, and one row per
VM. The mechanisms report their own counters (``reporting.py``).
"""

from __future__ import annotations

from disco.engine import EventLoop
from disco.hardware import Machine
from disco.vmm.accounting import CpuAccounts, Timeline
from disco.vmm.execution import Execution
from disco.vmm.reporting import Report
from disco.vmm.state import MonitorState


class CpuReport:
    def __init__(self, loop: EventLoop, machine: Machine, state: MonitorState,
                 acct: CpuAccounts, execution: Execution, interval_s: float) -> None:
        self.loop = loop
        self.machine = machine
        self.state = state
        self.acct = acct
        self.execution = execution
        self.interval = interval_s
        self.timeline = Timeline()
        cells = machine.cells
        self._last_sample = (0.0, [0.0] * cells, [0.0] * cells, [0.0] * cells)

    def start(self) -> None:
        self.loop.schedule(self.interval, self._sample, self.interval)

    def _sample(self, interval: float) -> None:
        self.execution.flush()
        now = self.loop.now
        m = self.machine
        t0, guest0, spin0, idle0 = self._last_sample
        span = (now - t0) * m.cpus_per_cell
        acct, tl = self.acct, self.timeline
        all_cpus = self.state.cpus
        for cell in range(m.cells):
            cpus = all_cpus[cell * m.cpus_per_cell:(cell + 1) * m.cpus_per_cell]
            tl.time_s.append(now)
            tl.cell.append(cell)
            tl.load.append(sum(c.load for c in cpus))
            tl.utilization.append((acct.guest[cell] - guest0[cell]) / span if span else 0.0)
            tl.spin_fraction.append((acct.spin[cell] - spin0[cell]) / span if span else 0.0)
            tl.idle_fraction.append((acct.idle[cell] - idle0[cell]) / span if span else 0.0)
            tl.running_vms.append(len({v.vm.id for c in cpus for v in c.queue}))
        self._last_sample = (now, acct.guest[:], acct.spin[:], acct.idle[:])
        self.loop.schedule(interval, self._sample, interval)

    def report(self, out: Report) -> None:
        self.execution.flush()
        now = self.loop.now
        vms = self.state.vms
        total = now * len(self.state.cpus)
        guest, spin, overhead, idle = self.acct.totals()
        done = [vm for vm in vms if vm.status == "done"]
        runtimes = [vm.finish_s - vm.arrival_s for vm in done]
        nan = float("nan")
        out.metrics.update({
            "sim_time_s": now,
            "events": self.loop.events,
            "cpu_utilization": guest / total if total else 0.0,
            "idle_fraction": idle / total if total else 0.0,
            "spin_waste_fraction": spin / total if total else 0.0,
            "overhead_fraction": overhead / total if total else 0.0,
            "vm_runtime_mean_s": sum(runtimes) / len(runtimes) if runtimes else nan,
            "vm_runtime_max_s": max(runtimes) if runtimes else nan,
            "makespan_s": max(vm.finish_s for vm in done) if len(done) == len(vms) else now,
            "vms_total": len(vms),
            "vms_completed": len(done),
            # native CPU-seconds of guest work done (the same demand, per unit of which
            # costs such as disk writes compare across runs that did not all finish)
            "work_done_cpu_s": sum(vm.work_s - v.work_left for vm in vms for v in vm.vcpus),
        })
        cols: dict[str, list] = {k: [] for k in (
            "vm", "name", "workload", "vcpus", "memory_mb", "work_s", "arrival_s", "finish_s",
            "runtime_s", "status", "home_cells", "cells_visited")}
        for vm in vms:
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
        out.vm_columns.update(cols)
