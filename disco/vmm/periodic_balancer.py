"""The periodic balancer (PAPER.md, CPU management), containment-aware.

Every ``periodic_period_ms`` it smooths each queued VCPU's load (1 if waiting or running at the
tick, else 0) into an exponential average with time constant ``periodic_smoothing_ms``, sums
those per CPU into the load tree and walks the tree from the root. Where the two halves under a
tree node differ by more than ``periodic_threshold`` VCPUs (per-CPU averages, so uneven halves
compare fairly), it makes the candidate move of best positive *value* between the heaviest CPU
of the heavy half (``src``) and the lightest CPU of the light half (``dst``).

*Candidates*:

- move one VCPU of ``src`` (waiting, blocked or guest-idle; never a running one) to ``dst``, or
  swap it with a lighter VCPU of ``dst`` where moving it alone would overshoot (a swap must
  leave the two more even than the move would); neither CPU may end up with two VCPUs of one
  VM;
- where ``src`` and ``dst`` are in different cells (``periodic_vm_moves``): move a *whole VM*
  with a VCPU on ``src`` that lies wholly in the heavy half's cells to the least loaded whole
  live cells of the light half (as many as it occupies), or swap it with a lighter VM wholly in
  the light half that has a VCPU in ``dst``'s cell (again only where the move would
  overshoot). Its memory is copied first (``vm_migration.py``), so its gain comes only after
  the copy.

*Value* = what the move gains within a horizon - what it costs - the containment price:

- gain rate of moving load ``d`` from a CPU (or cells) of load ``Ls`` per CPU to load ``Ld``:
  ``d * (1 / max(Ld + d, 1) - 1 / max(Ls, 1))``, the moved work's speed-up in CPU-seconds per
  second (a swap adds the other side's);
- cost: the VCPU migration cost by distance with its cache re-warm (``vcpu_migration.py``); for
  a whole VM, the final switch plus a remote move per VCPU;
- horizon: ``periodic_horizon_s`` for a VCPU move among the cells its VM already uses;
  ``periodic_vm_horizon_s`` across cells (a whole VM: minus its copy time);
- containment price: ``containment_price`` CPUs for every second a move makes a VM depend on a
  cell more (a *split*, a VCPU onto a cell its VM does not use: the cross-cell horizon) or keeps
  it in transit (a whole VM's copy, a swap's two copies).

A split needs ``allow_cell_split`` and is the exception: made only when no candidate that keeps
every VM in its cells (VCPU moves and swaps within them, whole-VM moves and swaps) has a positive
value. A whole VM in flight counts as moved already (its load is projected onto its destination
cells), so one imbalance does not start several copies.

Old behaviours, for comparison: ``periodic_smoothing_ms=0`` (snapshot loads),
``periodic_horizon_s=null`` (value = gain rate: costs and prices ignored, any move that evens
the load is made), ``periodic_vm_moves=false`` and ``periodic_swaps=false``.
"""

from __future__ import annotations

import math

from librt.vecs import vec

from disco.config import PolicyConfig
from disco.engine import EventLoop
from disco.hardware import OTHER_CELL, Machine
from disco.vmm.gang import GangScheduler
from disco.vmm.reporting import Report
from disco.vmm.state import CPU, DONE, INF, RUNNABLE, RUNNING, VCPU, VM, MonitorState
from disco.vmm.trace_hooks import NO_TRACE, TraceHooks
from disco.vmm.vcpu_migration import VcpuMigrator
from disco.vmm.vm_migration import VMMigrator

_MOVE, _SWAP, _VM_MOVE, _VM_SWAP = 0, 1, 2, 3


def _rate(d: float, ls: float, ld: float) -> float:
    """Speed-up of load ``d`` moved from per-CPU load ``ls`` to ``ld`` (both before the move)."""
    return d * (1.0 / max(ld + d, 1.0) - 1.0 / max(ls, 1.0))


class Candidate:
    """One possible move: its value, kind, the VCPUs or VMs it moves and where."""

    __slots__ = ("value", "kind", "v", "u", "vms", "splits")

    def __init__(self, value: float, kind: int, v: VCPU | None = None, u: VCPU | None = None,
                 vms: list[tuple[VM, tuple[int, ...]]] | None = None,
                 splits: bool = False) -> None:
        self.value = value
        self.kind = kind
        self.v = v
        self.u = u
        self.vms = vms
        self.splits = splits


class PeriodicBalancer:
    """``vms``: the whole-VM migrator (None: no whole-VM moves); ``cross_cell``: the system
    lets VCPUs and VMs cross cells at all (``Policy.cross_cell_moves``)."""

    def __init__(self, loop: EventLoop, machine: Machine, state: MonitorState,
                 migrator: VcpuMigrator, gang: GangScheduler, vms: VMMigrator | None,
                 p: PolicyConfig, cross_cell: bool) -> None:
        self.loop = loop
        self.machine = machine
        self.state = state
        self.cpus = state.cpus
        self.migrator = migrator
        self.gang = gang
        self.vms = vms
        self.period = p.periodic_period_ms * 1e-3
        self.half_threshold = p.periodic_threshold / 2.0
        self.allow_split = p.allow_cell_split
        self.cross_cell = cross_cell
        tau = p.periodic_smoothing_ms * 1e-3
        self.alpha = 1.0 if tau <= 0.0 else 1.0 - math.exp(-self.period / tau)
        self.costed = p.periodic_horizon_s is not None
        self.horizon = p.periodic_horizon_s if p.periodic_horizon_s is not None else INF
        self.vm_horizon = p.periodic_vm_horizon_s if self.costed else INF
        self.price = p.containment_price if self.costed else 0.0
        self.swaps = p.periodic_swaps
        self.vm_moves = p.periodic_vm_moves and cross_cell and vms is not None
        self.cpc = machine.cpus_per_cell
        self.cell_of = [cpu.cell for cpu in state.cpus]
        # A vec (librt.vecs, see load_tree.py): unboxed, rewritten at every tick.
        self.loads: vec[float] = vec[float]([0.0] * len(state.cpus))
        self.cell_load = [0.0] * machine.cells
        self.cell_cpus = [0] * machine.cells  # online CPUs per cell, at this tick
        self.moves = 0
        self.swaps_made = 0
        self.vm_moves_made = 0
        self.vm_swaps_made = 0
        self.splits = 0
        self.trace: TraceHooks = NO_TRACE  # runner.build sets a tracer when tracing

    def start(self) -> None:
        self.loop.schedule(self.period, self.tick)

    def report(self, out: Report) -> None:
        out.metrics.update({"balancer_moves_periodic": self.moves,
                            "balancer_swaps_periodic": self.swaps_made,
                            "balancer_vm_moves": self.vm_moves_made,
                            "balancer_vm_swaps": self.vm_swaps_made,
                            "balancer_splits": self.splits})

    # -- the tick -------------------------------------------------------------------------------
    def tick(self) -> None:
        alpha = self.alpha
        loads = self.loads
        for cpu in self.cpus:
            total = 0.0
            for v in cpu.queue:
                avg = v.avg + alpha * ((1.0 if v.state <= RUNNABLE else 0.0) - v.avg)
                v.avg = avg
                total += avg
            loads[cpu.index] = total if cpu.online else 0.0
        vms = self.vms
        if vms is not None and vms.in_flight:
            state_vms = self.state.vms
            for vm_id, cells in vms.in_flight.items():
                self._project(state_vms[vm_id], cells)
        cell_load, cell_cpus = self.cell_load, self.cell_cpus
        for c in range(len(cell_load)):
            cell_load[c] = 0.0
            cell_cpus[c] = 0
        for cpu in self.cpus:
            if cpu.online:
                cell_load[cpu.cell] += loads[cpu.index]
                cell_cpus[cpu.cell] += 1
        tree = self.state.tree
        tree.refresh(loads)
        s, size, left, right = tree.sum, tree.size, tree.left, tree.right
        ht = self.half_threshold
        for node in tree.internal:
            a, b = left[node], right[node]
            na, nb = float(size[a]), float(size[b])
            if not na or not nb:  # one side has only failed CPUs (faults): nothing to balance
                continue
            excess = (s[a] * nb - s[b] * na) / (na + nb)
            if excess > ht:
                self._balance(a, b)
            elif -excess > ht:
                self._balance(b, a)
        self.loop.schedule(self.period, self.tick)

    def _project(self, vm: VM, cells: tuple[int, ...]) -> None:
        """A whole-VM move in flight: its load counts on its destination cells already."""
        loads, cell_of = self.loads, self.cell_of
        moved = 0.0
        for v in vm.vcpus:
            if v.cpu >= 0 and v.state < DONE and cell_of[v.cpu] not in cells:
                loads[v.cpu] -= v.avg
                moved += v.avg
        dest = [cpu.index for c in cells for cpu in self._cell(c) if cpu.online]
        for i in dest:
            loads[i] += moved / len(dest)

    def _cell(self, cell: int) -> list[CPU]:
        return self.cpus[cell * self.cpc:(cell + 1) * self.cpc]

    def _value(self, rate: float, cost: float, new_deps: int) -> float:
        """A VCPU move: its gain within its horizon minus its cost; a split (``new_deps``
        cells more for its VM) pays the containment price over the cross-cell horizon."""
        if not self.costed:
            return rate
        if not new_deps:
            return rate * self.horizon - cost
        h = self.vm_horizon
        return rate * h - cost - new_deps * self.price * h

    def _vm_value(self, rate: float, delay: float, cost: float, transit: float) -> float:
        """A whole-VM move or swap: the gain after the copy (``delay``) within the cross-cell
        horizon, minus its cost and the price of ``transit`` VM-seconds in transit."""
        if not self.costed:
            return rate
        return rate * (self.vm_horizon - delay) - cost - self.price * transit

    # -- one imbalanced tree node ---------------------------------------------------------------
    def _balance(self, heavy: int, light: int) -> None:
        tree = self.state.tree
        src = self.cpus[tree.heaviest(heavy)]
        dst = self.cpus[tree.lightest(light)]
        if not src.online or not dst.online:
            return
        cross = src.cell != dst.cell
        best_free: Candidate | None = None  # no VM comes to depend on a cell more
        best_split: Candidate | None = None
        if not cross or self.cross_cell:
            for cand in self._vcpu_candidates(src, dst, cross):
                if cand.splits:
                    if best_split is None or cand.value > best_split.value:
                        best_split = cand
                elif best_free is None or cand.value > best_free.value:
                    best_free = cand
        if cross and self.vm_moves:
            for cand in self._vm_candidates(heavy, light, src, dst):
                if best_free is None or cand.value > best_free.value:
                    best_free = cand
        best = best_free if best_free is not None and best_free.value > 0.0 else None
        if best is None and best_split is not None and best_split.value > 0.0:
            best = best_split
        if best is None:
            return
        if best.kind == _MOVE:
            assert best.v is not None
            self._move_vcpu(best.v, dst, best.splits)
        elif best.kind == _SWAP:
            assert best.v is not None and best.u is not None
            self._move_vcpu(best.v, dst, best.splits)
            self._move_vcpu(best.u, src, False)
            self.swaps_made += 1
        else:
            assert best.vms is not None
            for vm, cells in best.vms:
                self._move_vm(vm, cells)
            if best.kind == _VM_SWAP:
                self.vm_swaps_made += 1
            else:
                self.vm_moves_made += 1

    def _vcpu_candidates(self, src: CPU, dst: CPU, cross: bool) -> list[Candidate]:
        """Moving one VCPU ``src`` -> ``dst``, or swapping two."""
        loads = self.loads
        ls, ld = loads[src.index], loads[dst.index]
        cost = self.migrator.cost[self.machine.distance(src.index, dst.index)]
        vms = self.vms
        in_flight = vms.in_flight if vms is not None and cross else {}
        allow_split = self.allow_split
        out: list[Candidate] = []
        for v in src.queue:
            if v.state == RUNNING or v.avg <= 0.0 or v.vm.id in in_flight:
                continue
            vm = v.vm
            if _holds(dst, vm, None):
                continue
            splits = cross and dst.cell not in vm.cell_vcpus
            if splits and not allow_split:
                continue
            out.append(Candidate(self._value(_rate(v.avg, ls, ld), cost, int(splits)), _MOVE,
                                 v, splits=splits))
        if not self.swaps:
            return out
        for v in src.queue:
            if v.state == RUNNING or v.avg <= 0.0 or v.vm.id in in_flight:
                continue
            for u in dst.queue:
                if u.state == RUNNING or u.avg >= v.avg or u.vm is v.vm or u.vm.id in in_flight:
                    continue
                if _holds(dst, v.vm, u) or _holds(src, u.vm, v):
                    continue
                new = 0
                if cross:
                    new = int(dst.cell not in v.vm.cell_vcpus) + int(src.cell not in
                                                                    u.vm.cell_vcpus)
                    if new and not allow_split:
                        continue
                d = v.avg - u.avg
                if abs(ls - ld - 2.0 * d) >= abs(ls - ld - 2.0 * v.avg):
                    continue  # moving v alone evens the two as well, at half the cost
                rate = (v.avg * (1.0 / max(ld + d, 1.0) - 1.0 / max(ls, 1.0))
                        + u.avg * (1.0 / max(ls - d, 1.0) - 1.0 / max(ld, 1.0)))
                out.append(Candidate(self._value(rate, 2.0 * cost, new), _SWAP, v, u,
                                     splits=new > 0))
        return out

    def _vm_candidates(self, heavy: int, light: int, src: CPU, dst: CPU) -> list[Candidate]:
        """Moving a whole VM with a VCPU on ``src`` from the heavy half's cells to the least
        loaded whole live cells of the light half, or swapping it with a lighter VM of the
        light half that has a VCPU in ``dst``'s cell."""
        vms = self.vms
        assert vms is not None
        tree = self.state.tree
        cell_of = self.cell_of
        h_lo, h_hi = cell_of[tree.lo[heavy]], cell_of[tree.hi[heavy] - 1]
        l_lo, l_hi = cell_of[tree.lo[light]], cell_of[tree.hi[light] - 1]
        in_flight = vms.in_flight
        movable = [vm for vm in _vms_on([src]) if vm.id not in in_flight
                   and vm.status == "running" and _within(vm, h_lo, h_hi)
                   and not _within_any(vm, l_lo, l_hi)]
        if not movable:
            return []
        live, cell_cpus, cpc = self.state.cell_live, self.cell_cpus, self.cpc
        cell_load = self.cell_load
        light_cells = sorted((c for c in range(l_lo, l_hi + 1)
                              if not h_lo <= c <= h_hi and live[c] and cell_cpus[c] == cpc),
                             key=lambda c: (cell_load[c], c))
        partners = [vm for vm in _vms_on(self._cell(dst.cell)) if vm.id not in in_flight
                    and vm.status == "running" and _within(vm, l_lo, l_hi)
                    and not _within_any(vm, h_lo, h_hi)] if self.swaps else []
        remote = self.migrator.cost[OTHER_CELL]
        switch = vms.switch_s
        out: list[Candidate] = []
        for vm in movable:
            cells_a = tuple(sorted(vm.cell_vcpus))
            k = len(cells_a)
            n_s = sum(cell_cpus[c] for c in cells_a)
            if n_s <= 0:
                continue
            ls = sum(cell_load[c] for c in cells_a) / n_s
            da = _vm_load(vm)
            cost_a = _movers(vm) * (switch + remote)
            copy_a = vms.copy_time(vm)
            if k <= len(light_cells):
                dest = tuple(sorted(light_cells[:k]))
                ld = sum(cell_load[c] for c in dest) / (k * cpc)
                rate = _rate(da / (k * cpc), ls, ld) * k * cpc
                out.append(Candidate(self._vm_value(rate, copy_a, cost_a, copy_a), _VM_MOVE,
                                     vms=[(vm, dest)]))
            for other in partners:
                cells_b = tuple(sorted(other.cell_vcpus))
                db = _vm_load(other)
                if len(cells_b) != k or db >= da:
                    continue
                ld = sum(cell_load[c] for c in cells_b) / (k * cpc)
                d = (da - db) / (k * cpc)
                if abs(ls - ld - 2.0 * d) >= abs(ls - ld - 2.0 * da / (k * cpc)):
                    continue  # moving vm alone evens the cells as well
                rate = (da * (1.0 / max(ld + d, 1.0) - 1.0 / max(ls, 1.0))
                        + db * (1.0 / max(ls - d, 1.0) - 1.0 / max(ld, 1.0)))
                copy_b = vms.copy_time(other)
                cost = cost_a + _movers(other) * (switch + remote)
                out.append(Candidate(self._vm_value(rate, max(copy_a, copy_b), cost,
                                                    copy_a + copy_b), _VM_SWAP,
                                     vms=[(vm, cells_b), (other, cells_a)]))
        return out

    # -- doing it -------------------------------------------------------------------------------
    def _move_vcpu(self, v: VCPU, dst: CPU, splits: bool) -> None:
        src = self.cpus[v.cpu]
        self.migrator.migrate(v, dst)
        loads, cell_load = self.loads, self.cell_load
        loads[src.index] -= v.avg
        loads[dst.index] += v.avg
        cell_load[src.cell] -= v.avg
        cell_load[dst.cell] += v.avg
        tree = self.state.tree
        tree.set_load(src.index, loads[src.index])
        tree.set_load(dst.index, loads[dst.index])
        self.moves += 1
        self.trace.periodic_move(v, dst)
        if splits:
            self.splits += 1
        if v.state == RUNNABLE:
            self.gang.ensure_slice_on(dst, v)

    def _move_vm(self, vm: VM, cells: tuple[int, ...]) -> None:
        vms = self.vms
        assert vms is not None
        if not vms.migrate(vm, cells):
            return
        before = list(self.loads)
        self._project(vm, cells)
        tree = self.state.tree
        for i, (old, new) in enumerate(zip(before, self.loads, strict=True)):
            if old != new:
                self.cell_load[self.cell_of[i]] += new - old
                tree.set_load(i, new)


def _holds(cpu: CPU, vm: VM, but: VCPU | None) -> bool:
    """Does ``cpu``'s queue hold a VCPU of ``vm`` (other than ``but``)?"""
    for u in cpu.queue:
        if u.vm is vm and u is not but:
            return True
    return False


def _vms_on(cpus: list[CPU]) -> list[VM]:
    """The VMs with a VCPU queued on ``cpus``, in queue order, each once."""
    seen: dict[int, VM] = {}
    for cpu in cpus:
        for v in cpu.queue:
            if v.vm.id not in seen:
                seen[v.vm.id] = v.vm
    return list(seen.values())


def _within(vm: VM, lo: int, hi: int) -> bool:
    """Are all of ``vm``'s VCPUs queued in cells ``lo..hi``?"""
    for c in vm.cell_vcpus:
        if not lo <= c <= hi:
            return False
    return True


def _within_any(vm: VM, lo: int, hi: int) -> bool:
    for c in vm.cell_vcpus:
        if lo <= c <= hi:
            return True
    return False


def _vm_load(vm: VM) -> float:
    return sum(v.avg for v in vm.vcpus if v.cpu >= 0 and v.state < DONE)


def _movers(vm: VM) -> int:
    return sum(1 for v in vm.vcpus if v.state < DONE)
