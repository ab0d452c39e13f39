"""What remote memory costs a running VCPU: the progress-rate model of memory stalls [A].

A VCPU on node ``a`` sends ``kernel_fraction`` of its accesses to the shared region (kernel
code; at a local copy if there is one) and the rest to its VM's resident hot working set
(``guest_memory.py``): ``private_access_fraction`` of those to its own part (the chunks it
first-touched, on its node unless they were borrowed or it moved), the rest spread over the
whole working set, shared by its siblings. Cold chunks get no accesses, so borrowed memory
costs in proportion to how hot it is. Its mean latency is ``L = sum_b share_b * latency_ns(a,
b)`` (``Machine.latency_ns``: weighted by hop distance). A workload stalls on memory for ``s =
memory_intensity * memory_stall_fraction`` of its native time at local latency, and that part
stretches by ``L / local``: the progress rate is multiplied by ``1 / (1 + s * (L / local -
1))``. With the defaults (stall 0.15, 310 ns local, 550 ns one hop, 650 ns two) all-remote
Database (intensity 0.8) runs ~12 % slower at two hops, Raytrace (0.1) ~1.6 %.

The factor is cached per (VCPU, node) in the VM's ``VMMemory`` and recomputed only when its
placement changed (``dirty``): the memory then ``forget``s the cache and execution re-rates
its running VCPUs, once per tick at most. ``remote_access_fraction`` is the share of accesses
to other nodes, weighted by memory intensity, sampled each tick over the running VCPUs.

**Slowdown** (per-VM column): run time over the same VM alone on an idle machine, computed
analytically: ``work_s / (base_rate * f_alone)`` plus the expected guest I/O and idle waits,
where ``f_alone`` is the rate factor with each VCPU's own working set on its node (first touch)
and the rest of its memory spread evenly over the nodes its VCPUs would fill in its home cells
(no NUMA copies). Gang and VCPU-to-CPU effects alone are in ``base_rate``; a VM alone still
finishes when its slowest VCPU does, so slightly above 1 is "no slowdown". Contention, remote or
borrowed memory and paging show as more.
"""

from __future__ import annotations

from disco.hardware import Machine
from disco.vmm.execution import ProgressRate
from disco.vmm.guest_memory import VMMemory
from disco.vmm.reporting import Report
from disco.vmm.state import CPU, RUNNING, VCPU, VM


class RemoteAccessCost(ProgressRate):
    def __init__(self, machine: Machine, cpus: list[CPU], records: dict[int, VMMemory],
                 vms: list[VM], stall_fraction: float) -> None:
        self.machine = machine
        self.vms = vms  # every VM, for the slowdown column
        self.node_of_cpu = [c.node for c in cpus]
        self.records = records  # the guest memory's, by VM id
        self.stall = stall_fraction
        self.local_ns = machine.local_latency_ns
        self.nodes = machine.nodes  # cache keys: VCPU index * nodes + node
        # latency_ns(a, b) as a table: the NUMA policy and rate factors look it up per tick.
        self.lat = machine.latency_table()
        self.remote_w = 0.0
        self.remote_sum = 0.0

    def factor(self, v: VCPU) -> float:
        r = self.records.get(v.vm.id)
        cpu = v.cpu
        if r is None or cpu < 0:
            return 1.0
        node = self.node_of_cpu[cpu]
        f = r.factor.get(v.index * self.nodes + node)
        if f is None:
            f = self.compute(r, v.index, node)
        return f

    def forget(self, r: VMMemory) -> None:
        """``r``'s placement changed: drop its cached factors."""
        r.factor.clear()
        r.remote.clear()

    def compute(self, r: VMMemory, i: int, node: int) -> float:
        """Mean latency and remote share seen by VCPU ``i`` from ``node``: ``kernel_fraction``
        of its accesses go to the shared region (kernel code), the rest to the VM's resident
        hot chunks, ``private_access_fraction`` of those to its own part."""
        lat = self.lat[node]
        all_n = r.hot_all_n
        w_sh = 0.0
        reg = r.region
        if reg is not None and reg.resident:
            w_sh = r.vm.profile.kernel_fraction if all_n else 1.0
        mean = 0.0
        remote = 0.0
        if all_n and w_sh < 1.0:
            own_n = r.hot_res[i] if i < r.nv else 0
            pf = r.vm.profile.private_access_fraction if own_n else 0.0
            acc = 0.0
            for n, k in r.hot_all.items():
                acc += k * lat[n]
            w = (1.0 - w_sh) * (1.0 - pf) / all_n
            mean += w * acc
            remote += w * (all_n - r.hot_all.get(node, 0))
            if own_n:
                own = r.hot_node[i]
                acc = 0.0
                for n, k in own.items():
                    acc += k * lat[n]
                w = (1.0 - w_sh) * pf / own_n
                mean += w * acc
                remote += w * (own_n - own.get(node, 0))
        if w_sh > 0.0:
            assert reg is not None
            here = reg.node_count.get(node, 0)
            reps = len(reg.replicas.get(node, ()))
            acc = 0.0
            for n, k in reg.node_count.items():
                if n != node:
                    acc += k * lat[n]
            far = reg.resident - here  # chunks whose primary copy is elsewhere ...
            scale = (far - reps) / far if far else 0.0  # ... and not replicated here
            w = w_sh / reg.resident
            mean += w * ((here + reps) * self.local_ns + acc * scale)
            remote += w * (far - reps)
        if all_n == 0 and w_sh == 0.0:
            mean = self.local_ns
        key = i * self.nodes + node
        f = r.factor[key] = self.factor_for(r.vm, mean)
        r.remote[key] = remote
        return f

    def factor_for(self, vm: VM, mean_ns: float) -> float:
        """The stall model: progress rate at mean memory latency ``mean_ns`` (1 when local)."""
        s = vm.profile.memory_intensity * self.stall
        return 1.0 / (1.0 + s * (mean_ns / self.local_ns - 1.0))

    def alone_factor(self, vm: VM) -> float:
        """Rate factor of ``vm`` alone on an idle machine: VCPUs fill its home cells' nodes in
        order, each VCPU's own working set on its node (first touch), the rest of its memory
        spread evenly over those nodes."""
        m = self.machine
        k = min(-(-len(vm.vcpus) // m.cpus_per_node), m.nodes)
        first = vm.home_cells[0] * m.nodes_per_cell if vm.home_cells else 0
        nodes = [(first + i) % m.nodes for i in range(k)]
        spread = sum(self.lat[a][b] for a in nodes for b in nodes) / (k * k)
        p = vm.profile
        kf = p.kernel_fraction if p.shared_mb > 0 else 0.0
        pf = p.private_access_fraction
        mean = kf * spread + (1.0 - kf) * (pf * self.local_ns + (1.0 - pf) * spread)
        return self.factor_for(vm, mean)

    def sample(self, dt: float) -> None:
        """Weigh the remote share of every running VCPU's accesses over the last ``dt``."""
        node_of_cpu = self.node_of_cpu
        nodes = self.nodes
        for r in self.records.values():
            w = r.vm.profile.memory_intensity * dt
            if w <= 0.0:
                continue
            remote = r.remote
            for v in r.vm.vcpus:
                if v.state == RUNNING:
                    node = node_of_cpu[v.cpu]
                    key = v.index * nodes + node
                    rem = remote.get(key)
                    if rem is None:
                        self.compute(r, v.index, node)
                        rem = remote[key]
                    self.remote_w += w
                    self.remote_sum += w * rem

    def report(self, out: Report) -> None:
        out.metrics["remote_access_fraction"] = (self.remote_sum / self.remote_w
                                                 if self.remote_w else 0.0)
        slow: list[float] = []
        for vm in self.vms:
            if vm.status != "done":
                slow.append(float("nan"))
                continue
            p = vm.profile
            alone = self.alone_factor(vm)
            waits = vm.work_s * (p.io_prob * p.io_ms + p.idle_prob * p.idle_ms) / p.burst_ms
            ideal = vm.work_s / (vm.base_rate * alone) + waits
            slow.append((vm.finish_s - vm.arrival_s) / ideal)
        out.vm_columns["slowdown"] = slow
