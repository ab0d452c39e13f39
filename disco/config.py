"""The simulator's typed configuration: plain dataclasses, no Hydra needed.

``SimConfig()`` is the paper machine (PAPER.md): an SGI Origin 2000 with 16 nodes of 2 CPUs and
512 MB each, split into 8 cells, running the default workload mix for 60 simulated seconds.
Every value marked [A] in PAPER.md is an assumption and is a field here, so it can be swept.

The same dataclasses are the Hydra schema (``disco.framework``), so there is one source of
truth. A numeric field declares the values it accepts where it is declared
(``Annotated[float, Fraction]``, ``Range(0, 1, lo_open=True)``; ``Within`` when its bounds
depend on other fields); units are in the field names (``_ms``, ``_mb``, ``_per_s`` ...).
``validate()`` checks every declared range, then the cross-field rules and the chosen system's
own (``PolicyRules.check``), before a run starts, and raises one ``ConfigError`` naming the key
and the bad value.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol

from disco.limits import MAGNITUDE, AtLeast, AtMost, Limit, check_budgets, raised, short

WORKLOAD_TYPES = ("raytrace", "pmake", "database", "webserver")


@dataclass(frozen=True, slots=True)
class Range:
    """A numeric field accepts finite values ``lo <= v <= hi`` (``lo < v`` when ``lo_open``,
    ``v < hi`` when ``hi_open``; no bound where None). None, for a field that may be null, is
    not checked."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def admits(self, v: float) -> bool:
        if isinstance(v, float) and not math.isfinite(v):  # an int may exceed float's range
            return False
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        return self.hi is None or (v < self.hi if self.hi_open else v <= self.hi)

    def describe(self) -> str:
        if self.hi is None:
            return f"must be {'>' if self.lo_open else '>='} {self.lo:g}"
        if self.lo is None:
            return f"must be {'<' if self.hi_open else '<='} {self.hi:g}"
        return (f"must be in {'(' if self.lo_open else '['}{self.lo:g}, "
                f"{self.hi:g}{')' if self.hi_open else ']'}")


@dataclass(frozen=True, slots=True)
class Within:
    """A numeric field whose bounds depend on other fields: ``validate()`` checks it."""

    what: str


Positive = Range(0, lo_open=True)
NonNegative = Range(0)
Fraction = Range(0, 1)

# Limits shared by several fields (disco/limits.py: raised with limits.<path>=N).
_LATENCY = AtMost(1e9, "a second per memory access: the run's stall arithmetic overflows")
_DIVISOR = AtLeast(1e-3, "a transfer rate divides every copy's size: slower ones give times "
                         "past any run")
_RATE = AtMost(10, "faults per simulated second and node; software faults per VM")


class ConfigError(ValueError):
    """A configuration value is wrong; ``key`` is its dotted path, ``value`` what was given."""

    def __init__(self, key: str, value: Any, reason: str) -> None:
        self.key, self.value, self.reason = key, value, reason
        shown = short(value)
        super().__init__(f"invalid config {key}={shown if shown is not value else repr(value)}: "
                         f"{reason}")


class PolicyRules(Protocol):
    """What validation and the machine's layout ask of the system ``policy.name`` names.
    Each system registers itself (``disco/policies/__init__.py``, imported by ``import
    disco``); this module knows no system by name."""

    name: str
    one_cell: bool  # the whole machine is one cell (one monitor or one OS)
    borrows_memory: bool  # may a cell lend memory to another

    def check(self, cfg: SimConfig) -> None:
        """The system's own rules: raise ``ConfigError`` naming the key."""
        ...


_POLICIES: dict[str, PolicyRules] = {}


def register_policy(rules: PolicyRules) -> None:
    _POLICIES[rules.name] = rules


# Registers every system (``disco.policies``, a layer above this one, so not imported here):
# set by ``disco/__init__``, called on the first lookup of a name not registered yet.
_load_policies: Callable[[], Any] | None = None


def on_unknown_policy(load: Callable[[], Any]) -> None:
    """``load`` is called once a policy name is looked up that no system registered yet."""
    global _load_policies
    _load_policies = load


def policy_rules(name: str) -> PolicyRules:
    """The registered system called ``name``; ``ConfigError`` on ``policy.name`` if none."""
    rules = _POLICIES.get(name)
    if rules is None and _load_policies is not None:
        _load_policies()
        rules = _POLICIES.get(name)
    if rules is None:
        raise ConfigError("policy.name", name, f"unknown policy; known: {', '.join(_POLICIES)}")
    return rules


@dataclass(slots=True)
class MachineConfig:
    """Hardware: nodes of CPUs and memory joined by a hypercube of routers (PAPER.md, Machine)."""

    name: str = "origin2000_32"
    nodes: Annotated[int, Positive, AtMost(4096, "each node is simulated with its own "
                                           "state; the paper's largest machine has 512")] = 16
    # [S] 2 R10000s per Origin node
    cpus_per_node: Annotated[int, Positive, AtMost(64, "CPUs of one node")] = 2
    # [A] 8 GB in all
    memory_per_node_mb: Annotated[int, Positive, AtMost(2**20, "1 TB per node")] = 512
    # [A] SGI material: 300-330 ns
    local_latency_ns: Annotated[float, NonNegative, _LATENCY] = 310.0
    remote_latency_ns: Annotated[float, NonNegative, _LATENCY] = 550.0  # [A] one router away
    hop_latency_ns: Annotated[float, NonNegative, _LATENCY] = 100.0  # [A] per extra router hop


@dataclass(slots=True)
class CellsConfig:
    """Fault-containment cells: contiguous groups of nodes. Give ``count`` or ``nodes_per_cell``."""

    count: Annotated[int | None, Positive] = 8  # [R] the paper compares 1 cell with 8 cells
    # set this (and count=null) for e.g. one cell per node
    nodes_per_cell: Annotated[int | None, Positive] = None


@dataclass(slots=True)
class WorkloadProfile:
    """Parametric guest behaviour of one workload type (defaults: ``_default_profiles``).

    A VCPU alternates compute runs and waits: run lengths are exponential with mean
    ``burst_ms / (io_prob + idle_prob)``; then it blocks on I/O (``io_ms``) or idles in the guest
    (``idle_ms``). All values are [A]: chosen so the four workloads differ the way the paper
    describes them.
    """

    # mean compute between guest blocking points
    burst_ms: Annotated[float, Positive, AtLeast(1e-3, "a compute run of a microsecond; "
                                                 "shorter ones are events without work")] = 20.0
    io_prob: Annotated[float, Fraction] = 0.0  # chance a blocking point is an I/O wait
    io_ms: Annotated[float, NonNegative] = 5.0
    # chance a blocking point is guest-idle (no work for this VCPU)
    idle_prob: Annotated[float, Fraction] = 0.0
    idle_ms: Annotated[float, NonNegative] = 5.0
    # share of time in the kernel: sets virtualization overhead
    kernel_fraction: Annotated[float, NonNegative] = 0.1
    # progress lost while a sibling VCPU is descheduled
    spin_sensitivity: Annotated[float, Fraction] = 0.0
    # sensitivity to remote memory latency (memory issue)
    memory_intensity: Annotated[float, Fraction] = 0.3
    # Memory behaviour (disco/vmm/memory.py), all [A]: share of memory_mb touched at boot;
    # growth after boot (Database grows); hot share of the touched memory; guest kernel and
    # binaries identical across VMs of this workload (shared copy-on-write); share of its private
    # memory the guest frees (and reuses) per second; the guest's own paging once its memory is
    # full (what the virtual paging disk turns into remappings).
    memory_initial_fraction: Annotated[float, Fraction] = 0.5
    memory_growth_mb_per_s: Annotated[float, NonNegative] = 0.0
    working_set_fraction: Annotated[float, Fraction] = 0.5
    shared_mb: Annotated[int, NonNegative] = 32
    free_per_s: Annotated[float, Fraction] = 0.0
    guest_paging_mb_per_s: Annotated[float, NonNegative] = 0.0
    # Growth, frees and guest paging above are per second of the VM's *progress* (a second of
    # running unimpeded), not of wall time: a VM waiting for memory makes no new demands.
    # [A] Locality per VCPU: share of a VCPU's private-memory accesses that go to its own part
    # of the working set (the chunks it first touched, on its node); the rest spread over the
    # VM's whole working set (data its VCPUs share).
    private_access_fraction: Annotated[float, Fraction] = 0.8


def _default_profiles() -> dict[str, WorkloadProfile]:
    return {
        # CPU bound, barrier/spinlock synchronised: loses almost everything when a peer is off.
        "raytrace": WorkloadProfile(
            burst_ms=200.0, kernel_fraction=0.05, spin_sensitivity=0.9, memory_intensity=0.1,
            memory_initial_fraction=0.9, working_set_fraction=0.6,  # scene loaded at start
        ),
        # Many short compiles: kernel intensive, frequent disk waits; processes free memory.
        "pmake": WorkloadProfile(
            burst_ms=15.0, io_prob=0.35, io_ms=6.0, idle_prob=0.05, idle_ms=10.0,
            kernel_fraction=0.45, spin_sensitivity=0.2, memory_intensity=0.3,
            memory_initial_fraction=0.6, working_set_fraction=0.5, free_per_s=0.2,
        ),
        # Multi-threaded DB: memory heavy, I/O waits.
        "database": WorkloadProfile(
            burst_ms=25.0, io_prob=0.3, io_ms=8.0, kernel_fraction=0.25,
            spin_sensitivity=0.3, memory_intensity=0.8,
            memory_initial_fraction=0.3, memory_growth_mb_per_s=100.0, working_set_fraction=0.7,
            free_per_s=0.01, guest_paging_mb_per_s=8.0,  # buffer pool grows, then turns over
        ),
        # Request driven: idle between requests, I/O and kernel intensive.
        "webserver": WorkloadProfile(
            burst_ms=8.0, io_prob=0.2, io_ms=4.0, idle_prob=0.3, idle_ms=6.0,
            kernel_fraction=0.35, spin_sensitivity=0.1, memory_intensity=0.4,
            memory_initial_fraction=0.5, working_set_fraction=0.4, free_per_s=0.05,
        ),
    }


@dataclass(slots=True)
class VMGroup:
    """``count`` identical VMs; batch jobs with ``work_s`` CPU-seconds per VCPU at native speed."""

    workload: str = "raytrace"
    count: Annotated[int, Positive, AtMost(10_000, "VMs of one group, each simulated with "
                                                "its VCPUs and memory")] = 1
    vcpus: Annotated[int, Positive, AtMost(4096, "VCPUs of one VM")] = 4
    memory_mb: Annotated[int, Positive, AtMost(2**24, "16 TB for one VM")] = 256
    work_s: Annotated[float, Positive] = 5.0
    arrival_s: Annotated[float, NonNegative] = 0.0  # first VM of the group arrives here
    spacing_s: Annotated[float, NonNegative] = 0.0  # later VMs of the group follow at this spacing
    # Pin the home cell (null: least-loaded cells; one-cell policies ignore it).
    home_cell: Annotated[int | None, Within("a cell of the machine")] = None


def _default_vms() -> list[VMGroup]:
    # All four workloads, 64 VCPUs arriving over ~12 s on 32 CPUs: the CPUs are
    # overcommitted at times and the load moves between cells, so every mechanism has
    # something to do, and the last VM finishes well inside the default 60 s. [A]
    return [
        VMGroup("raytrace", count=2, vcpus=8, memory_mb=512, work_s=8.0, spacing_s=10.0),
        VMGroup("pmake", count=4, vcpus=4, memory_mb=256, work_s=6.0, arrival_s=1.0,
                spacing_s=3.0),
        VMGroup("database", count=2, vcpus=8, memory_mb=1024, work_s=8.0, arrival_s=2.0,
                spacing_s=6.0),
        VMGroup("webserver", count=4, vcpus=4, memory_mb=256, work_s=4.0, arrival_s=0.5,
                spacing_s=4.0),
    ]


@dataclass(slots=True)
class WorkloadConfig:
    """A workload mix: which VMs exist, their sizes and when they arrive."""

    name: str = "mix_default"
    vms: list[VMGroup] = field(default_factory=_default_vms)
    profiles: dict[str, WorkloadProfile] = field(default_factory=_default_profiles)


@dataclass(slots=True)
class PolicyConfig:
    """The monitor's policy and its knobs (PAPER.md, CPU management)."""

    name: str = "cellular_disco"
    gang: bool = True  # gang-schedule each VM's non-idle VCPUs together
    idle_balancer: bool = True
    periodic_balancer: bool = True
    periodic_period_ms: Annotated[float, Positive, AtLeast(
        0.1, "the balancer's smallest period: it walks the load tree each time")] = 100.0  # [A]
    periodic_threshold: Annotated[float, NonNegative] = 1.0  # [A] VCPUs of imbalance tolerated
    time_slice_ms: Annotated[float, Positive, AtLeast(
        0.01, "the smallest time slice: each one ends in an event per CPU")] = 10.0  # [A]
    # -- scheduling that behaves like the paper (issue 17; each knob's old behaviour stated) --
    # An idle CPU keeps looking: a CPU whose steal found nothing parks in its cell's set and is
    # woken, nearest first, when a VCPU starts waiting on a busy CPU of its cell (it woke up,
    # arrived, or its gang or slice was preempted). false: it steals only at the instant it
    # goes idle (the old behaviour).
    idle_rewake: bool = True
    # A steal must pay [A]: the wait it saves the VCPU's gang (its waiting members x the time
    # until its CPU yields) must exceed what the move costs beyond the VM-switch re-warm the
    # VCPU pays anyway. false: any stealable VCPU is taken (the old behaviour).
    idle_steal_costed: bool = True
    # Gang scheduling off: each CPU's slice timer has its own phase (a per-CPU offset drawn
    # from stream sched/timer/<cpu>) [A: independent per-CPU timers, as on hardware], and each
    # slice ends late by up to slice_jitter x slice [A: interrupt latency, a tenth of a slice].
    # Either alone de-synchronises siblings; false and 0: slices of siblings started together
    # stay aligned (the old behaviour).
    cpu_timer_phase: bool = True
    slice_jitter: Annotated[float, Fraction] = 0.1
    # A switch to a VCPU of another VM re-warms this share of the cache re-warm after a
    # migration (cache_warmup_ms x (1 - cache_warmup_slowdown) x this) [A: a tenth, 0.4 ms:
    # another VM's slice displaces part of the 4 MB L2; guest working sets are mostly smaller
    # than it]. 0: a switch costs only context_switch_us (the old behaviour).
    vm_switch_rewarm: Annotated[float, Fraction] = 0.1
    # -- the periodic balancer (periodic_balancer.py) --------------------------------------
    # Load is each VCPU's exponential average of being waiting or running at the ticks, with
    # this time constant [A: five periods, so no single tick decides]; 0: the snapshot at the
    # tick (the old behaviour).
    periodic_smoothing_ms: Annotated[float, NonNegative] = 500.0
    # A move is made only if what it gains within a horizon exceeds what it costs (migration
    # and cache re-warm). A VCPU move among the cells its VM already uses: this horizon [A:
    # about the smoothing time: the balancer predicts no further than it averages]; null:
    # costs and prices ignored, any move that evens the load is made (the old behaviour).
    periodic_horizon_s: Annotated[float | None, NonNegative] = 0.5
    # A move across cells (a whole VM, whose memory copy delays the gain, or a split, which
    # lasts until something undoes it): this horizon [A: the paper's workloads run tens of
    # seconds; a 5-20 s copy can only pay within such a horizon].
    periodic_vm_horizon_s: Annotated[float, NonNegative] = 10.0
    periodic_swaps: bool = True  # may swap two VCPUs (across cells: two whole VMs); false: old
    # Across cells, move or swap whole VMs (all their VCPUs, their memory copied:
    # vm_migration.py's cost model); false: across cells only single VCPUs move (the old way).
    periodic_vm_moves: bool = True
    # Containment has a price: a move that makes a VM depend on one more cell must gain this
    # many CPUs for as long as the extra dependency lasts (a split: the cross-cell horizon; a
    # whole VM: its copy, during which it is in transit) [A: half a CPU, so only a clear gain
    # trades containment away]. 0: containment is free (the old behaviour, with
    # periodic_vm_moves=false).
    containment_price: Annotated[float, NonNegative] = 0.5
    # The periodic balancer may split a VM (move a VCPU to a cell the VM does not use), and
    # then only as the exception: when no move or swap that keeps every VM in its cells pays.
    allow_cell_split: bool = True
    overcommit_vcpus: bool = True  # machine may hold more VCPUs than CPUs
    rpc_us: Annotated[float, NonNegative] = 16.0  # [S] inter-cell RPC round trip (gang preemption)
    # [A] monitor switch between VCPUs on one CPU
    context_switch_us: Annotated[float, NonNegative] = 5.0
    migration_node_us: Annotated[float, NonNegative] = 37.0  # [S]
    # [S] mostly copying the 32 KB software TLB
    migration_cell_us: Annotated[float, NonNegative] = 520.0
    migration_remote_us: Annotated[float, NonNegative] = 1520.0  # [S]
    cache_warmup_ms: Annotated[float, NonNegative] = 8.0  # [S] ~4 MB L2 refilled after a migration
    # [A] progress rate while the cache re-warms
    cache_warmup_slowdown: Annotated[float, Range(0, 1, lo_open=True)] = 0.5
    # [A] overhead per unit kernel_fraction (9 % worst on 1 CPU)
    trap_cost: Annotated[float, NonNegative] = 0.2
    # [A] extra per doubling of VCPUs (20 % on 32 CPUs)
    vcpu_scaling_cost: Annotated[float, NonNegative] = 0.05
    # [A] Kernel contention of a commodity OS: slowdown per unit kernel_fraction per doubling
    # of the CPUs one OS instance spans (a guest's VCPUs, a partition, or the SMP machine).
    os_contention: Annotated[float, NonNegative] = 0.15
    # -- memory (PAPER.md, Memory management and Paging; disco/vmm/memory.py) --------------
    # [A] tracking granularity: one chunk stands for 1024 4 KB pages
    chunk_mb: Annotated[int, Positive] = 4
    # [A] period of guest memory activity and the NUMA policy
    memory_tick_ms: Annotated[float, Positive, AtLeast(
        0.1, "the smallest memory tick: each one visits every VM")] = 100.0
    # [A] share of native time a memory_intensity=1 workload stalls on local-latency misses;
    # remote chunks stretch that share by latency / local latency.
    memory_stall_fraction: Annotated[float, Fraction] = 0.15
    numa_migration: bool = True  # Disco: migrate chunks toward the VCPUs using them
    numa_replication: bool = True  # Disco: replicate read-shared (kernel, binary) chunks
    # [A] chunks a VM may migrate or replicate per tick
    numa_chunks_per_tick: Annotated[int, NonNegative] = 2
    # [A] a move or replica must repay its copy within this
    numa_horizon_s: Annotated[float, NonNegative] = 5.0
    # [A] memory-to-memory copy: the cost of a move or replica
    copy_mb_per_s: Annotated[float, Positive, _DIVISOR] = 400.0
    # [A] a VCPU's chunks follow it only once it has stayed on its node this long (Disco moved
    # a page once its miss counters said it was hot there: a VCPU in transit is not yet)
    numa_settle_ms: Annotated[float, NonNegative] = 500.0
    borrow_policy: str = "paper"  # paper | none (own cells only) | anywhere (ignore containment)
    # [S] a cell with less free than this borrows
    borrow_trigger_mb: Annotated[int, NonNegative] = 16
    # [S] borrowed in units of this, at least this per lender
    borrow_unit_mb: Annotated[int, Positive] = 4
    # [S] a cell lends only while it keeps this much free
    lend_floor_mb: Annotated[int, NonNegative] = 32
    # [A] A loan takes an RPC (rpc_us) plus the lender handing the frames over (firewall and
    # free-list updates, page by page) at this rate: a 4 MB unit in ~10 ms, what the paper sized
    # its thresholds to. An allocation that finds only loans in flight waits for them.
    loan_mb_per_s: Annotated[float, Positive, _DIVISOR] = 400.0
    # [A] native CPU time in which a running VCPU references all of its working set: one that
    # ran this long since the last memory tick faults on every paged-out chunk of it
    working_set_touch_s: Annotated[float, Positive] = 0.1
    paging: bool = True  # page to disk when every cell is short (else allocations wait)
    paging_skip_freed: bool = True  # never write chunks the guest has freed
    paging_shared_once: bool = True  # a shared chunk is written once, with its sharing info
    paging_virtual_disk: bool = True  # guest page-outs of paged-out chunks only remap
    # [A] paging disks, one FIFO queue each
    paging_disks: Annotated[int, Positive, AtMost(4096, "disks, one queue each")] = 4
    disk_seek_ms: Annotated[float, NonNegative] = 8.0  # [A] per request
    # [A] transfer bandwidth of one disk
    disk_mb_per_s: Annotated[float, Positive, _DIVISOR] = 20.0


@dataclass(slots=True)
class SimSection:
    duration_s: Annotated[float, Positive, AtMost(1e6, "11.6 simulated days")] = 60.0
    seed: Annotated[int, NonNegative, AtMost(2**64 - 1, "a 64-bit seed")] = 0
    # used by sweeps; one simulate() call is one replicate
    replicates: Annotated[int, Positive, AtMost(10_000, "replicates of one config: each is a "
                                                     "run the sweep plans in memory")] = 1
    # timeline sampling period
    sample_interval_s: Annotated[float, Positive, AtLeast(
        1e-3, "the timeline keeps a row per cell per sample")] = 1.0
    check_invariants: bool = False  # run the invariant checker after every event (slow)


FAULT_TYPES = ("node", "router", "link", "firmware", "software")
HARDWARE_FAULT_TYPES = ("node", "router", "link", "firmware")
KILL_POLICIES = ("early", "lazy")


@dataclass(slots=True)
class ScheduledFault:
    """One fault at a fixed time. Hardware faults name a ``node`` (or a ``cell``: its first
    node); a router fault hits the router serving that node. Software faults name a ``vm`` id
    (VMs are numbered in mix order, from 0)."""

    type: str = "node"  # node, router, link, firmware, software
    at_s: Annotated[float, NonNegative] = 1.0
    node: Annotated[int | None, Within("a node of the machine")] = None
    cell: Annotated[int | None, Within("a cell of the machine")] = None
    vm: Annotated[int | None, Within("a VM of the mix")] = None


@dataclass(slots=True)
class EvacuateCell:
    """Planned hot replacement: at ``at_s`` the cell's VMs move off, then the cell goes offline."""

    cell: Annotated[int, Within("a cell of the machine")] = 0
    at_s: Annotated[float, NonNegative] = 1.0
    # back in service this long after going offline; null: never
    return_s: Annotated[float | None, NonNegative] = None


@dataclass(slots=True)
class FaultsConfig:
    """Fault injection, recovery cost model and whole-VM migration (PAPER.md, Faults and
    recovery; ``disco/hardware/faults.py``, ``disco/vmm/recovery.py``). Defaults: no faults.

    Rates are faults per simulated second: hardware rates per node (router: per router, one
    router per two nodes), ``software_rate`` per running VM. All costs are [A] unless noted;
    with the defaults recovery at paper scale (16 nodes x 512 MB) takes ~0.3 s (< 0.5 s [S]).
    """

    node_rate: Annotated[float, NonNegative, _RATE] = 0.0
    router_rate: Annotated[float, NonNegative, _RATE] = 0.0
    link_rate: Annotated[float, NonNegative, _RATE] = 0.0
    firmware_rate: Annotated[float, NonNegative, _RATE] = 0.0
    # guest OS crashes, each kills only its VM
    software_rate: Annotated[float, NonNegative, _RATE] = 0.0
    scheduled: list[ScheduledFault] = field(default_factory=list)
    evacuate: list[EvacuateCell] = field(default_factory=list)
    # Dependent VMs: "early" kills all at once; "lazy" lets a VM whose only tie to the failed
    # cell is memory run until it touches a lost line: the first touch comes at an exponential
    # time of rate touch_rate_per_s x its workload's memory_intensity x the share of its
    # resident memory that was lost, and a VM that finishes first survives.
    kill_policy: str = "early"
    # [A] first-touch rate of a VM of memory intensity 1 whose memory was all lost
    touch_rate_per_s: Annotated[float, NonNegative, AtMost(1e4, "touches of a bad line per "
                                                           "VM per second")] = 10.0
    # Monitor data of a VCPU that moved across cells follows it after this delay [A: the
    # monitor copies it in the background, within a second]; null: never (the VM depends on
    # every cell its VCPUs visited until it is migrated whole: the old behaviour).
    data_follow_s: Annotated[float | None, NonNegative] = 1.0
    restart_lost: bool = False  # restart lost VMs (from scratch) on surviving cells
    # [A] guest reboot before a restarted VM runs
    restart_delay_s: Annotated[float, NonNegative] = 0.0
    # a failed cell comes back after this; null: never
    cell_repair_s: Annotated[float | None, NonNegative] = None
    # [A] policy smp_os: any hardware fault reboots the machine
    smp_reboot_s: Annotated[float, NonNegative] = 120.0
    # Recovery cost model [A]: detection; diagnosis = base + a firmware scan of each node's
    # directory and memory (nodes in parallel: memory per node) + per-node collection;
    # agreement = timeout on the dead cells + rounds of RPCs to every other live cell;
    # unwedge = cancel stuck RPCs and messages, per CPU; termination per killed VM.
    detect_ms: Annotated[float, NonNegative] = 1.0  # hardware error signal (node, router, link)
    # a hung hub's firmware is caught by a watchdog
    firmware_detect_ms: Annotated[float, NonNegative] = 20.0
    # guest panic traps straight into the monitor
    software_detect_ms: Annotated[float, NonNegative] = 0.0
    diag_base_ms: Annotated[float, NonNegative] = 10.0
    # firmware scan rate of directories + memory, per node
    scan_mb_per_s: Annotated[float, Positive, _DIVISOR] = 2000.0
    diag_per_node_ms: Annotated[float, NonNegative] = 1.0
    agreement_rounds: Annotated[int, NonNegative, AtMost(1000, "rounds of RPCs to every "
                                                         "live cell")] = 2
    agreement_timeout_ms: Annotated[float, NonNegative] = 10.0
    rpc_us: Annotated[float, NonNegative] = 16.0  # [S] inter-cell RPC round trip
    unwedge_us_per_cpu: Annotated[float, NonNegative] = 50.0
    terminate_ms_per_vm: Annotated[float, NonNegative] = 1.0
    # Whole-VM migration: copy memory + I/O state (tens of seconds for GBs [S]); the VM runs
    # during the copy and stops for the final switch.
    migration_mb_per_s: Annotated[float, Positive, _DIVISOR] = 50.0
    io_state_mb: Annotated[float, NonNegative] = 16.0
    migration_switch_ms: Annotated[float, NonNegative] = 50.0
    # During the copy the VM also depends on its destination cells (a fault there kills it).
    # false [A]: pre-copy; the source holds the VM's whole state until the switch, so a fault
    # on a destination only aborts the copy (the VM stays where it was). true: the old rule.
    migration_copy_dependency: bool = False


@dataclass(slots=True)
class SimConfig:
    machine: MachineConfig = field(default_factory=MachineConfig)
    cells: CellsConfig = field(default_factory=CellsConfig)
    workload: WorkloadConfig = field(default_factory=WorkloadConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    sim: SimSection = field(default_factory=SimSection)
    faults: FaultsConfig = field(default_factory=FaultsConfig)
    # Limits raised on purpose, by field path or budget: {"machine": {"nodes": 100000}}
    # (``limits.machine.nodes=100000``); see disco/limits.py. The simulator does not read it.
    limits: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None = None) -> SimConfig:
        """Build from nested plain dicts (YAML, OmegaConf containers); unknown keys are errors."""
        cfg = _build(cls, data or {}, "")
        cfg.validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    # -- derived topology -------------------------------------------------------------
    @property
    def nodes_per_cell(self) -> int:
        """Nodes per cell of the simulated machine: the whole machine under a one-cell
        system, else the ``cells`` section's layout."""
        if policy_rules(self.policy.name).one_cell:
            return self.machine.nodes
        if self.cells.nodes_per_cell is not None:
            return self.cells.nodes_per_cell
        assert self.cells.count is not None
        return self.machine.nodes // self.cells.count

    @property
    def total_cpus(self) -> int:
        return self.machine.nodes * self.machine.cpus_per_node

    @property
    def layout_nodes_per_cell(self) -> int:
        """Nodes per cell as the ``cells`` section lays them out, even under a one-cell policy
        (which merges them): ``faults`` name cells in this layout, so one fault schedule hits
        the same nodes under every policy."""
        m, c = self.machine, self.cells
        npc = c.nodes_per_cell if c.nodes_per_cell is not None else (
            m.nodes // c.count if c.count else 0)
        if npc <= 0 or m.nodes % npc:
            return self.nodes_per_cell
        return npc

    def validate(self) -> None:
        """Every declared range, then every cross-field rule and the system's own, before the
        clock starts. Raises ConfigError."""
        limits = _raised_limits(self)
        _check_ranges(self, "", "", limits)
        m, c, w, p = self.machine, self.cells, self.workload, self.policy
        rules = policy_rules(p.name)
        if not rules.one_cell:  # else the whole machine is one cell
            _check_cells(m, c)
        for name, prof in w.profiles.items():
            if prof.io_prob + prof.idle_prob > 1.0:
                raise ConfigError(f"workload.profiles.{name}.io_prob", prof.io_prob,
                                  f"io_prob + idle_prob must be <= 1 (idle_prob={prof.idle_prob})")
        if not w.vms:
            raise ConfigError("workload.vms", w.vms, "the mix has no VMs")
        cpus = self.total_cpus
        cells = m.nodes // self.nodes_per_cell
        total_vcpus = 0
        for i, g in enumerate(w.vms):
            key = f"workload.vms[{i}]"
            if g.workload not in w.profiles:
                raise ConfigError(f"{key}.workload", g.workload,
                                  f"unknown workload; known: {', '.join(sorted(w.profiles))}")
            if g.vcpus > cpus:
                raise ConfigError(f"{key}.vcpus", g.vcpus,
                                  f"a VM's VCPUs need distinct CPUs; the machine has {cpus}")
            # One-cell systems ignore home_cell, so one mix compares across every policy.
            if (g.home_cell is not None and not rules.one_cell
                    and not 0 <= g.home_cell < cells):
                raise ConfigError(f"{key}.home_cell", g.home_cell, f"the machine has {cells} cells")
            total_vcpus += g.count * g.vcpus
        if not p.overcommit_vcpus and total_vcpus > cpus:
            raise ConfigError("policy.overcommit_vcpus", p.overcommit_vcpus,
                              f"the mix has {total_vcpus} VCPUs for {cpus} CPUs")
        rules.check(self)
        _check_memory(self, rules)
        _check_faults(self)
        check_budgets(self, limits, ConfigError)


BORROW_POLICIES = ("paper", "none", "anywhere")


def _check_memory(cfg: SimConfig, rules: PolicyRules) -> None:
    """The memory knobs that depend on each other, and VM sizes against the machine."""
    m, p, w = cfg.machine, cfg.policy, cfg.workload
    if m.memory_per_node_mb % p.chunk_mb:
        raise ConfigError("policy.chunk_mb", p.chunk_mb,
                          f"must divide machine.memory_per_node_mb={m.memory_per_node_mb}")
    if p.borrow_policy not in BORROW_POLICIES:
        raise ConfigError("policy.borrow_policy", p.borrow_policy,
                          f"unknown policy; known: {', '.join(BORROW_POLICIES)}")
    if p.lend_floor_mb < p.borrow_trigger_mb:
        raise ConfigError("policy.lend_floor_mb", p.lend_floor_mb,
                          f"must be >= policy.borrow_trigger_mb={p.borrow_trigger_mb} (a cell "
                          "would lend memory it then has to borrow back)")
    total = m.nodes * m.memory_per_node_mb
    cell_mb = cfg.nodes_per_cell * m.memory_per_node_mb
    cpus_per_cell = cfg.nodes_per_cell * m.cpus_per_node
    own_only = p.borrow_policy == "none" or not rules.borrows_memory
    for i, g in enumerate(w.vms):
        if p.paging:
            break
        key = f"workload.vms[{i}].memory_mb"
        if g.memory_mb > total:
            raise ConfigError(key, g.memory_mb, f"larger than the machine's {total} MB memory "
                              "and policy.paging is off")
        home_mb = -(-g.vcpus // cpus_per_cell) * cell_mb
        if own_only and g.memory_mb > home_mb:
            raise ConfigError(key, g.memory_mb, f"larger than its home cells' {home_mb} MB, "
                              "with no borrowing and policy.paging off")


def _check_faults(cfg: SimConfig) -> None:
    """The ``faults`` section: known kinds, and every scheduled fault's place exists."""
    f = cfg.faults
    if f.kill_policy not in KILL_POLICIES:
        raise ConfigError("faults.kill_policy", f.kill_policy,
                          f"unknown policy; known: {', '.join(KILL_POLICIES)}")
    nodes = cfg.machine.nodes
    cells = nodes // cfg.layout_nodes_per_cell
    n_vms = sum(g.count for g in cfg.workload.vms)
    for i, sf in enumerate(f.scheduled):
        key = f"faults.scheduled[{i}]"
        if sf.type not in FAULT_TYPES:
            raise ConfigError(f"{key}.type", sf.type,
                              f"unknown fault type; known: {', '.join(FAULT_TYPES)}")
        if sf.type == "software":
            if sf.vm is None or isinstance(sf.vm, bool) or not 0 <= sf.vm < n_vms:
                raise ConfigError(f"{key}.vm", sf.vm, f"a software fault names a VM id in "
                                  f"[0, {n_vms}) (the mix has {n_vms} VMs)")
            continue
        if (sf.node is None) == (sf.cell is None):
            raise ConfigError(f"{key}.node", sf.node, "a hardware fault names exactly one of "
                              f"node and cell (cell={sf.cell!r})")
        if sf.node is not None and not 0 <= sf.node < nodes:
            raise ConfigError(f"{key}.node", sf.node, f"no such node: the machine has {nodes}")
        if sf.cell is not None and not 0 <= sf.cell < cells:
            raise ConfigError(f"{key}.cell", sf.cell, f"no such cell: the machine has {cells}")
    for i, ev in enumerate(f.evacuate):
        key = f"faults.evacuate[{i}]"
        if not 0 <= ev.cell < cells:
            raise ConfigError(f"{key}.cell", ev.cell, f"no such cell: the machine has {cells}")


def _check_cells(m: MachineConfig, c: CellsConfig) -> None:
    if (c.count is None) == (c.nodes_per_cell is None):
        raise ConfigError("cells.count", c.count, "give exactly one of cells.count and "
                          f"cells.nodes_per_cell (nodes_per_cell={c.nodes_per_cell!r})")
    if c.count is not None:
        if m.nodes % c.count:
            raise ConfigError("cells.count", c.count,
                              f"must divide machine.nodes={m.nodes} (cells are whole nodes)")
    else:
        assert c.nodes_per_cell is not None
        if m.nodes % c.nodes_per_cell:
            raise ConfigError("cells.nodes_per_cell", c.nodes_per_cell,
                              f"must divide machine.nodes={m.nodes}")


@functools.cache
def _type_hints(tp: type) -> dict[str, Any]:
    # get_type_hints re-evaluates every annotation string: cached, once per class.
    return typing.get_type_hints(tp)


@dataclass(frozen=True, slots=True)
class _Field:
    """What ``validate()`` checks of one field: its name, plain type, declared ``Range`` (None:
    none, or a ``Within``), whether it may be null, and its upper and lower ``Limit``."""

    name: str
    plain: Any
    rng: Range | None
    nullable: bool
    upper: Limit | None
    lower: Limit | None


@functools.cache
def _fields(tp: type) -> tuple[_Field, ...]:
    out = []
    for name, hint in typing.get_type_hints(tp, include_extras=True).items():
        meta: list[Any] = []
        if typing.get_origin(hint) is Annotated:
            hint, *meta = typing.get_args(hint)
        args = typing.get_args(hint)
        nullable = type(None) in args
        plain = next(a for a in args if a is not type(None)) \
            if typing.get_origin(hint) in (typing.Union, types.UnionType) else hint
        rng = next((x for x in meta if isinstance(x, Range)), None)
        upper = next((x for x in meta if isinstance(x, Limit) and x.upper), None)
        lower = next((x for x in meta if isinstance(x, Limit) and not x.upper), None)
        if plain in (int, float) and upper is None:
            upper = MAGNITUDE
        out.append(_Field(name, plain, rng, nullable, upper, lower))
    return tuple(out)


def _type_error(value: Any, plain: Any) -> str | None:
    """Why ``value`` is not of the field's plain type (a hand-built config), or None."""
    origin = typing.get_origin(plain) or plain
    if plain is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif plain is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif origin in (list, dict, bool, str) or dataclasses.is_dataclass(origin):
        ok = isinstance(value, origin)
    else:
        return None
    name = getattr(origin, "__name__", str(origin))
    return None if ok else f"expected {'a ' + name if name != 'float' else 'a number'}, " \
                           f"got {type(value).__name__}"


def limit_paths(tp: type = None, prefix: str = "") -> list[str]:  # type: ignore[assignment]
    """Every field path a limit applies to (``limits.<path>``), lists and mappings without the
    index: ``machine.nodes``, ``workload.vms.count``, ``workload.profiles.burst_ms``."""
    out: list[str] = []
    for f in _fields(tp or SimConfig):
        path = f"{prefix}{f.name}"
        item = f.plain
        if typing.get_origin(item) in (list, dict):
            item = typing.get_args(item)[-1]
        if dataclasses.is_dataclass(item):
            out += limit_paths(item, f"{path}.")
        elif f.upper is not None or f.lower is not None:
            out.append(path)
    return out


def _raised_limits(cfg: SimConfig) -> dict[str, float]:
    """``cfg.limits``, flat, every entry naming a limited field or a budget."""
    from disco.limits import BUDGETS

    if not isinstance(cfg.limits, dict):
        raise ConfigError("limits", cfg.limits, "expected a mapping of raised limits")
    try:
        lim = raised(cfg.limits)
    except ValueError as exc:
        raise ConfigError(f"limits.{exc}", None, "a raised limit is a number > 0") from None
    known = set(limit_paths()) | set(BUDGETS)
    for key in lim:
        if key not in known:
            import difflib

            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f"did you mean limits.{close[0]}?" if close else "see docs/framework.md, Limits"
            raise ConfigError(f"limits.{key}", lim[key], f"no field or budget of that name has "
                              f"a limit; {hint}")
    return lim


def _check_ranges(obj: Any, key: str, path: str, lim: dict[str, float]) -> None:
    """Check every field of ``obj`` (a config dataclass) and below it: its type (a hand-built
    config), its declared ``Range`` and its limits (``lim``: the raised ones by path)."""
    for f in _fields(type(obj)):
        value = getattr(obj, f.name)
        where = f"{key}.{f.name}".lstrip(".")
        fpath = f"{path}.{f.name}".lstrip(".")
        if value is None:
            if f.nullable:
                continue
            raise ConfigError(where, value, f.rng.describe() if f.rng else "must be set")
        why = _type_error(value, f.plain)
        if why is not None:
            raise ConfigError(where, value, f.rng.describe() if f.rng and f.plain in (int, float)
                              else why)
        if f.plain in (int, float):
            if f.rng is not None and not f.rng.admits(value):
                raise ConfigError(where, value, f.rng.describe())
            for limit in (f.upper, f.lower):
                if limit is not None and not limit.admits(value, lim.get(fpath)):
                    raise ConfigError(where, value, limit.describe(fpath, value,
                                                                   lim.get(fpath)))
        elif dataclasses.is_dataclass(value):
            _check_ranges(value, where, fpath, lim)
        elif isinstance(value, list | dict):
            item = typing.get_args(f.plain)[-1] if typing.get_args(f.plain) else Any
            if not dataclasses.is_dataclass(item):
                continue
            pairs = enumerate(value) if isinstance(value, list) else value.items()
            for i, v in pairs:
                at = f"{where}[{i}]" if isinstance(value, list) else f"{where}.{i}"
                if not isinstance(v, item):
                    raise ConfigError(at, v, f"expected a {item.__name__}")
                _check_ranges(v, at, fpath, lim)


def build(tp: Any, data: Any, key: str = "") -> Any:
    """Plain containers -> the config dataclass ``tp``, with every check a SimConfig section gets
    (keys, types, declared ranges and limits); ``key`` prefixes the names in errors."""
    obj = _build(tp, data, key)
    _check_ranges(obj, key, key, {})
    return obj


def _build(tp: Any, data: Any, key: str) -> Any:
    """Recursively turn plain containers into the typed dataclasses, checking keys and types."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if isinstance(data, tp):
            return data
        if not isinstance(data, dict):
            raise ConfigError(key or "<root>", data, f"expected a mapping for {tp.__name__}")
        hints = _type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        for k in data:
            if k not in names:
                raise ConfigError(f"{key}.{k}".lstrip("."), data[k],
                                  f"unknown key; {tp.__name__} has: {', '.join(sorted(names))}")
        kwargs = {k: _build(hints[k], v, f"{key}.{k}".lstrip(".")) for k, v in data.items()}
        if tp is WorkloadConfig and "profiles" in kwargs:
            # Partial profile overrides sit on top of the defaults.
            merged = _default_profiles()
            merged.update(kwargs["profiles"])
            kwargs["profiles"] = merged
        return tp(**kwargs)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if data is None:
            return None
        return _build(args[0], data, key)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(data, list | tuple):
            raise ConfigError(key, data, "expected a list")
        return [_build(item, v, f"{key}[{i}]") for i, v in enumerate(data)]
    if origin is dict:
        _, item = typing.get_args(tp)
        if not isinstance(data, dict):
            raise ConfigError(key, data, "expected a mapping")
        return {str(k): _build(item, v, f"{key}.{k}") for k, v in data.items()}
    if tp is bool:
        if not isinstance(data, bool):
            raise ConfigError(key, data, "expected true or false")
        return data
    if tp is int:
        if isinstance(data, bool) or not isinstance(data, int):
            raise ConfigError(key, data, "expected an integer")
        return data
    if tp is float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            raise ConfigError(key, data, "expected a number")
        try:
            return float(data)
        except OverflowError:
            raise ConfigError(key, data, "beyond the range of a float (about 1.8e308)") from None
    if tp is str:
        if not isinstance(data, str):
            raise ConfigError(key, data, "expected a string")
        return data
    return data
