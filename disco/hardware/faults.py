"""Faults: what fails, where and when (PAPER.md, Faults and recovery).

What each fault type takes out, a deliberately simple model of the Origin 2000 [A]:

- ``node``: the node's CPUs and its memory.
- ``router``: Origin routers each serve two nodes (router ``r`` serves nodes ``2r`` and
  ``2r + 1``) and form a hypercube among themselves. A router fault isolates the nodes it
  serves; traffic between other routers reroutes around it through the hypercube, so no other
  node is cut off.
- ``link``: the link between a node's hub and its router. The node is isolated, which loses its
  CPUs and memory to the rest of the machine just as a node fault does.
- ``firmware``: the node's hub firmware (directory controller) hangs: its CPUs and memory are lost
  like a node fault, but only a watchdog notices, so detection is slower
  (``faults.firmware_detect_ms``).
- ``software``: a guest OS crash; it takes out only its own VM.

The cell(s) holding the lost nodes are declared failed by recovery (``disco/vmm/recovery.py``).

Injection: ``faults.scheduled`` lists faults at fixed times; each hardware type also arrives as
a Poisson process at ``<type>_rate`` per node (per router for routers), its place drawn
uniformly. (A rate per cell is the per-node rate times ``nodes_per_cell``: cells are whole
nodes, so the two views give the same process.) Each process has its own streams
(``faults/<type>`` for times, ``faults/<type>/place`` for places), so turning one on never
changes the draws of another. Guest OS crashes are armed per VM (``faults/software/<vm id>``)
by recovery, which knows when VMs run. A fault naming a ``cell`` hits that cell's first node
in the layout of the ``cells`` section, whatever the policy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from disco.config import HARDWARE_FAULT_TYPES, FaultsConfig, ScheduledFault
from disco.engine import EventLoop, Handle, RandomStreams
from disco.hardware.machine import Machine


@dataclass(slots=True, frozen=True)
class Fault:
    time_s: float
    type: str  # node, router, link, firmware, software
    place: str  # e.g. "node 3", "router 1", "link 5", "vm 7"
    nodes: tuple[int, ...] = ()  # nodes lost (hardware)
    vm: int = -1  # the crashed VM (software)

    @property
    def hardware(self) -> bool:
        return self.type != "software"


def routers(machine: Machine) -> int:
    return (machine.nodes + 1) // 2


def router_nodes(machine: Machine, router: int) -> tuple[int, ...]:
    return tuple(n for n in (2 * router, 2 * router + 1) if n < machine.nodes)


def hardware_fault(machine: Machine, kind: str, node: int, time_s: float) -> Fault:
    """The fault of ``kind`` at ``node`` (a router fault: the router serving ``node``)."""
    if kind == "router":
        r = node // 2
        return Fault(time_s, kind, f"router {r}", router_nodes(machine, r))
    return Fault(time_s, kind, f"{kind} {node}", (node,))


class FaultInjector:
    """Schedules every configured fault (``start``) and hands each to ``handler`` when it
    strikes."""

    def __init__(self, machine: Machine, cfg: FaultsConfig, loop: EventLoop,
                 streams: RandomStreams, handler: Callable[[Fault], None],
                 layout_nodes_per_cell: int | None = None) -> None:
        self.machine = machine
        # Cells named in the schedule are those of the ``cells`` section (see SimConfig).
        self.layout_nodes_per_cell = layout_nodes_per_cell or machine.nodes_per_cell
        self.cfg = cfg
        self.loop = loop
        self.streams = streams
        self.handler = handler

    def start(self) -> None:
        """Schedule the fixed faults and the first fault of each Poisson process."""
        for sf in self.cfg.scheduled:
            self.loop.at(sf.at_s, self._scheduled, sf)
        for kind in HARDWARE_FAULT_TYPES:
            rate = self.machine_rate(kind)
            if rate > 0.0:
                self._arm(kind, rate)

    def machine_rate(self, kind: str) -> float:
        per = getattr(self.cfg, f"{kind}_rate")
        places = routers(self.machine) if kind == "router" else self.machine.nodes
        return per * places

    # -- scheduled faults --------------------------------------------------------------
    def _scheduled(self, sf: ScheduledFault) -> None:
        now = self.loop.now
        if sf.type == "software":
            assert sf.vm is not None
            self.handler(Fault(now, "software", f"vm {sf.vm}", vm=sf.vm))
            return
        node = sf.node if sf.node is not None else (sf.cell or 0) * self.layout_nodes_per_cell
        self.handler(hardware_fault(self.machine, sf.type, node, now))

    # -- Poisson processes -------------------------------------------------------------
    def _arm(self, kind: str, rate: float) -> None:
        gap = self.streams.get(f"faults/{kind}").exponential(1.0 / rate)
        self.loop.schedule(gap, self._random, kind, rate)

    def _random(self, kind: str, rate: float) -> None:
        rng = self.streams.get(f"faults/{kind}/place")
        if kind == "router":
            node = 2 * int(rng.integers(routers(self.machine)))
        else:
            node = int(rng.integers(self.machine.nodes))
        self._arm(kind, rate)
        self.handler(hardware_fault(self.machine, kind, node, self.loop.now))

    def arm_software(self, vm_id: int) -> Handle | None:
        """Draw when a running VM's guest OS crashes; returns the event handle (None: never)."""
        rate = self.cfg.software_rate
        if rate <= 0.0:
            return None
        gap = self.streams.get(f"faults/software/{vm_id}").exponential(1.0 / rate)
        return self.loop.schedule(gap, self._software, vm_id)

    def _software(self, vm_id: int) -> None:
        self.handler(Fault(self.loop.now, "software", f"vm {vm_id}", vm=vm_id))
