"""The invariant checker: run after every event when ``sim.check_invariants`` is on.

It states what must always hold, whatever the mechanisms did: no CPU runs two VCPUs and no
VCPU runs on two CPUs; a VM's VCPUs sit on distinct CPUs; with gang scheduling, a VM that runs
has every non-idle VCPU running; the counters the hot path keeps incrementally (waiting, load)
equal a recount (the load tree is rebuilt from them at each balancer tick); CPU time adds up
to CPUs x time. O(CPUs + VCPUs) per event: a debugging and testing aid, never on in sweeps.
"""

from __future__ import annotations

import numpy as np

from disco.engine import EventLoop
from disco.hardware import Machine
from disco.vmm.accounting import CpuAccounts
from disco.vmm.cell_lifecycle import CellLifecycle
from disco.vmm.frames import FREE, REPLICA, FrameStore
from disco.vmm.guest_memory import RESIDENT, GuestMemory
from disco.vmm.recovery import Recovery
from disco.vmm.state import RUNNABLE, RUNNING, STATE_NAMES, MonitorState


class InvariantViolation(AssertionError):
    pass


class InvariantChecker:
    """Checks the parts it is given; ``runner.Simulation.checker`` gives it every part."""

    def __init__(self, loop: EventLoop, machine: Machine, state: MonitorState,
                 acct: CpuAccounts, gang: bool, lifecycle: CellLifecycle, recovery: Recovery,
                 frames: FrameStore, guest: GuestMemory) -> None:
        self.loop = loop
        self.machine = machine
        self.state = state
        self.acct = acct
        self.gang = gang
        self.lifecycle = lifecycle
        self.recovery = recovery
        self.frames = frames
        self.guest = guest
        self._memory_events = 0

    def fail(self, what: str) -> None:
        raise InvariantViolation(f"t={self.loop.now:.9f}: {what}")

    def check(self) -> None:
        state = self.state
        running_seen: dict[int, int] = {}
        for cpu in state.cpus:
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
            if waiting != cpu.waiting or load != cpu.load:
                self.fail(f"cpu {cpu.index} counters waiting={cpu.waiting} load={cpu.load}, "
                          f"recount {waiting}/{load}")
            for v in cpu.queue:
                if v.cpu != cpu.index:
                    self.fail(f"{v.vm.name}/{v.index} in queue of cpu {cpu.index} says {v.cpu}")
        for vm in state.vms:
            if vm.status != "running":
                continue
            cpus = [v.cpu for v in vm.vcpus if v.state in (RUNNABLE, RUNNING) or v.cpu >= 0
                    and v in state.cpus[v.cpu].queue]
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
            if self.gang:
                if running and runnable:
                    self.fail(f"gang broken: {vm.name} runs {running} VCPUs while {runnable} "
                              "non-idle ones wait")
                if vm.running != (running > 0):
                    self.fail(f"{vm.name} running flag {vm.running} with {running} running")
        self.check_accounts()
        self.check_faults()
        self.check_memory()

    def check_accounts(self) -> None:
        """Charged time plus the open segments equals CPUs x now."""
        cpus = self.state.cpus
        now = self.loop.now
        charged = sum(self.acct.totals())
        open_time = sum(now - (c.current.seg_start if c.current is not None else c.idle_since)
                        for c in cpus)
        total = now * len(cpus)
        if abs(charged + open_time - total) > 1e-6 * max(1.0, total):
            self.fail(f"CPU time does not add up: {charged + open_time} != {total}")

    def check_faults(self) -> None:
        """Fault recovery: an offline CPU runs nothing; while recovery pauses the machine no
        CPU runs; once a failed cell is recovered no running VM still has a VCPU there."""
        st = self.state
        life = self.lifecycle
        for cpu in st.cpus:
            if not cpu.online and cpu.current is not None:
                self.fail(f"offline cpu {cpu.index} runs {cpu.current.vm.name}")
        if self.recovery.episode is not None or life.paused_at is not None:
            return
        failed = [c for c, state in enumerate(life.cell_state) if state == "failed"]
        for vm in st.vms:
            if vm.status == "running" and any(c in vm.cell_vcpus for c in failed):
                self.fail(f"{vm.name} runs on with a VCPU on failed cell(s) {failed}")
        tree = st.tree
        for cell, state in enumerate(life.cell_state):
            down = state in ("failed", "evacuated")
            for i in self.machine.cell_cpus(cell):
                cpu = st.cpus[i]
                if cpu.online == down or (tree.size[tree.leaf_of[i]] == 1) == down:
                    self.fail(f"cpu {i} of {state} cell {cell}: online={cpu.online}, "
                              f"in the load tree={not down}")
                if down and state == "failed" and cpu.queue:
                    self.fail(f"cpu {i} of failed cell {cell} still queues VCPUs")

    def check_memory(self) -> None:
        """Memory: per node used + free = frames, every event; every 64th event a full audit
        (``audit_memory``)."""
        fs = self.frames
        used = np.bincount(np.flatnonzero(fs.owner != FREE) // fs.fpn, minlength=len(fs.free))
        for n, stacks in enumerate(fs.free):
            free = sum(len(s) for s in stacks.values())
            if free != fs.node_free[n] or free + int(used[n]) != fs.fpn:
                self.fail(f"memory of node {n}: used {int(used[n])} + free {free} "
                          f"(counter {fs.node_free[n]}) != {fs.fpn} frames")
        self._memory_events += 1
        if self._memory_events % 64 == 1:
            self.audit_memory()

    def audit_memory(self) -> None:
        """Every frame has one home node and is in exactly one place: one free stack (with its
        manager) or one owner's chunk; per-cell free and the loans recount; lent = borrowed."""
        fs, guest = self.frames, self.guest
        fpn = fs.fpn
        nodes_per_cell = self.machine.nodes_per_cell
        seen = np.zeros(fs.frames, np.int32)
        cells = len(fs.cell_free)
        own_free = [0] * cells
        loan_free: dict[tuple[int, int], int] = {}
        for n, stacks in enumerate(fs.free):
            cell = fs.cell_of_node[n]
            for mgr, stack in stacks.items():
                for f in stack:
                    seen[f] += 1
                    if f // fpn != n or fs.owner[f] != FREE or fs.manager[f] != mgr:
                        self.fail(f"free frame {f} on node {n} stack of cell {mgr}: home "
                                  f"{f // fpn}, owner {fs.owner[f]}, manager {fs.manager[f]}")
                if mgr == cell:
                    own_free[cell] += len(stack)
                elif stack:
                    loan_free[(mgr, cell)] = loan_free.get((mgr, cell), 0) + len(stack)
        # Every resident chunk has a live entry in its holder's FIFO (else never evictable).
        entries = {(vid, e[0], e[1]) for vid, r in guest.records.items() for e in r.fifo}
        for vid, r in guest.records.items():
            resident = np.flatnonzero(r.frame >= 0).tolist()
            missing = 0
            for j in resident:
                f = int(r.frame[j])
                seen[f] += 1
                if fs.owner[f] != vid or fs.index[f] != j:
                    self.fail(f"vm {vid} chunk {j} in frame {f} owned by {fs.owner[f]}")
                if (vid, j, int(r.gen[j])) not in entries:
                    missing += 1
            if missing or len(resident) != r.resident:
                self.fail(f"vm {vid}: {r.resident} resident counted, {len(resident)} mapped, "
                          f"{missing} outside its FIFO (never evictable)")
            hot = [0] * r.nv
            for j in range(r.lo, r.lo + r.hot):
                if r.frame[j] >= 0:
                    hot[j % r.nv] += 1
            if hot != r.hot_res or sum(hot) != r.hot_all_n:
                self.fail(f"vm {vid}: hot counts {r.hot_res} != recount {hot}")
        for reg in guest.regions.values():
            for i in np.flatnonzero(reg.frame >= 0).tolist():
                seen[int(reg.frame[i])] += 1
                if reg.sharers and (reg.sharers[0], -(i + 1), int(reg.gen[i])) not in entries:
                    self.fail(f"region {reg.key} chunk {i} outside its holder's FIFO")
            for reps in reg.replicas.values():
                for i, f in reps.items():
                    seen[f] += 1
                    if fs.owner[f] != REPLICA or fs.index[f] != i or reg.state[i] != RESIDENT:
                        self.fail(f"replica frame {f} of chunk {i}: owner {fs.owner[f]}")
        replicas = np.bincount(np.flatnonzero(fs.owner == REPLICA) // fpn
                               // nodes_per_cell, minlength=cells)
        if replicas.tolist() != fs.cell_replicas:
            self.fail(f"replica frames per cell {replicas.tolist()} != books {fs.cell_replicas}")
        bad = np.flatnonzero(seen != 1)
        if len(bad):
            f = int(bad[0])
            self.fail(f"frame {f} is in {int(seen[f])} places (owner {fs.owner[f]})")
        for c in range(cells):
            if fs.cell_online[c] and own_free[c] != fs.cell_free[c]:
                self.fail(f"cell {c} free counter {fs.cell_free[c]} != recount {own_free[c]}")
        home = np.repeat(np.arange(len(fs.free)) // nodes_per_cell, fpn)
        lent_rc: dict[tuple[int, int], int] = {}
        for f in np.flatnonzero(fs.manager != home).tolist():
            key = (int(fs.manager[f]), int(home[f]))
            lent_rc[key] = lent_rc.get(key, 0) + 1
        lent = {(b, ln): k for b, d in fs.lent.items() for ln, k in d.items() if k}
        if lent != lent_rc:
            self.fail(f"loans (borrower, lender): books {lent} != frames {lent_rc}")
        books = {(b, ln): k for b, d in fs.loan_free.items() for ln, k in d.items() if k}
        if books != loan_free:
            self.fail(f"borrowed reserves: books {books} != free stacks {loan_free}")
        if fs.on_loan != sum(lent_rc.values()):
            self.fail(f"on loan {fs.on_loan} != {sum(lent_rc.values())}")
        if fs.reserved != sum(loan_free.values()):
            self.fail(f"reserves {fs.reserved} != free borrowed frames {sum(loan_free.values())}")
