"""The invariant checker: run after every event when ``sim.check_invariants`` is on.

It states what must always hold, whatever the mechanisms did: no CPU runs two VCPUs and no
VCPU runs on two CPUs; a VM's VCPUs sit on distinct CPUs; with gang scheduling, a VM that runs
has every non-idle VCPU running; the counters the hot path keeps incrementally (waiting, load,
load tree) equal a recount; CPU time adds up to CPUs x time. O(CPUs + VCPUs) per event: a
debugging and testing aid, never on in sweeps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from disco.vmm.state import RUNNABLE, RUNNING, STATE_NAMES

if TYPE_CHECKING:
    from disco.vmm.monitor import Monitor


class InvariantViolation(AssertionError):
    pass


class InvariantChecker:
    def __init__(self, mon: Monitor) -> None:
        self.mon = mon

    def fail(self, what: str) -> None:
        raise InvariantViolation(f"t={self.mon.loop.now:.9f}: {what}")

    def check(self) -> None:
        mon = self.mon
        running_seen: dict[int, int] = {}
        for cpu in mon.cpus:
            cur = cpu.current
            if cur is not None:
                if cur.state != RUNNING:
                    self.fail(f"cpu {cpu.index} holds {cur.vm.name}/{cur.index} in state "
                              f"{STATE_NAMES[cur.state]}")
                if cur.cpu != cpu.index:
                    self.fail(f"cpu {cpu.index} runs a VCPU queued on cpu {cur.cpu}")
                if id(cur) in running_seen:
                    self.fail(f"{cur.vm.name}/{cur.index} runs on two CPUs")
                running_seen[id(cur)] = cpu.index
            waiting = sum(1 for v in cpu.queue if v.state == RUNNABLE)
            load = sum(1 for v in cpu.queue if v.state in (RUNNABLE, RUNNING))
            if waiting != cpu.waiting or load != cpu.load or mon.tree.load(cpu.index) != load:
                self.fail(f"cpu {cpu.index} counters waiting={cpu.waiting} load={cpu.load} "
                          f"tree={mon.tree.load(cpu.index)}, recount {waiting}/{load}")
            for v in cpu.queue:
                if v.cpu != cpu.index:
                    self.fail(f"{v.vm.name}/{v.index} in queue of cpu {cpu.index} says {v.cpu}")
        if mon.tree.sum[0] != sum(c.load for c in mon.cpus):
            self.fail("load tree root differs from the sum of CPU loads")
        for vm in mon.vms:
            if vm.status != "running":
                continue
            cpus = [v.cpu for v in vm.vcpus if v.state in (RUNNABLE, RUNNING) or v.cpu >= 0
                    and v in mon.cpus[v.cpu].queue]
            if len(cpus) != len(set(cpus)):
                self.fail(f"{vm.name} has two VCPUs on one CPU: {sorted(cpus)}")
            states = [v.state for v in vm.vcpus]
            running = states.count(RUNNING)
            runnable = states.count(RUNNABLE)
            if running != vm.active or runnable != vm.runnable:
                self.fail(f"{vm.name} counters active={vm.active} runnable={vm.runnable}, "
                          f"recount {running}/{runnable}")
            for v in vm.vcpus:
                if v.state == RUNNING and id(v) not in running_seen:
                    self.fail(f"{vm.name}/{v.index} RUNNING but on no CPU")
            if mon.gang_on:
                if running and runnable:
                    self.fail(f"gang broken: {vm.name} runs {running} VCPUs while {runnable} "
                              "non-idle ones wait")
                if vm.running != (running > 0):
                    self.fail(f"{vm.name} running flag {vm.running} with {running} running")
        self.check_accounts()
        self.check_faults()

    def check_accounts(self) -> None:
        """Charged time plus the open segments equals CPUs x now."""
        mon = self.mon
        now = mon.loop.now
        charged = sum(mon.acct.totals())
        open_time = sum(now - (c.current.seg_start if c.current is not None else c.idle_since)
                        for c in mon.cpus)
        total = now * len(mon.cpus)
        if abs(charged + open_time - total) > 1e-6 * max(1.0, total):
            self.fail(f"CPU time does not add up: {charged + open_time} != {total}")

    def check_faults(self) -> None:
        """Fault recovery: an offline CPU runs nothing; while recovery pauses the machine no
        CPU runs; once a failed cell is recovered no running VM still has a VCPU there."""
        mon = self.mon
        rec = getattr(mon, "recovery", None)
        if rec is None:
            return
        for cpu in mon.cpus:
            if not cpu.online and cpu.current is not None:
                self.fail(f"offline cpu {cpu.index} runs {cpu.current.vm.name}")
        if rec.episode is not None or rec.paused_at is not None:
            return
        failed = [c for c, state in enumerate(rec.cell_state) if state == "failed"]
        for vm in mon.vms:
            if vm.status == "running" and any(c in vm.cell_vcpus for c in failed):
                self.fail(f"{vm.name} runs on with a VCPU on failed cell(s) {failed}")
