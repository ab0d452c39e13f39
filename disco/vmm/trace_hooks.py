"""What the mechanisms tell a trace of the run, and the do-nothing default (``NO_TRACE``).

A trace (``disco/trace.py``, written for Perfetto / chrome://tracing) must not change the run it
watches, and tracing off must cost nothing. So:

- The hot path (a VCPU starting and stopping on a CPU, waking up) has no hook at all when
  tracing is off: ``runner.build`` makes a ``TracedExecution`` instead of an ``Execution`` only
  when a tracer is given. It does exactly what ``Execution`` does, then records each VCPU run
  and each change of a VM's gang state as a tuple (compiled with the core: appending a tuple
  is the whole cost per event), which the tracer formats in batches; it calls the tracer only
  to sample the counters, every ``trace.counter_ms`` of simulated time.
- The rare decisions a trace wants to name (a gang preemption, an idle steal, a periodic move,
  a fault's recovery phases) call a hook on ``mechanism.trace``, ``NO_TRACE`` unless
  ``runner.build`` set a tracer: an empty method on a path that runs a few times a second.
- VM arrivals and exits, VCPU moves (with their cost), cell failures and repairs and disk
  requests come from the event bus (``bus.py``), which the tracer subscribes to.

A hook only observes: it must not schedule events, draw random numbers or change state.
"""

from __future__ import annotations

from typing import Final

from mypy_extensions import mypyc_attr

from disco.hardware.faults import Fault
from disco.vmm.execution import Execution
from disco.vmm.state import CPU, VCPU, VM

# A VM's gang state in the trace (``TracedExecution.vm_changed``): nothing to run (no slice),
# some VCPU running, runnable since it woke or arrived, runnable since it was taken off its CPUs.
OFF: Final = 0
RUNNING_STATE: Final = 1
WAITING: Final = 2
DESCHEDULED: Final = 3
GANG_STATES = ("", "running", "waiting", "descheduled")


@mypyc_attr(allow_interpreted_subclasses=True)
class TraceHooks:
    """The hooks, each a no-op here; ``disco.trace.Tracer`` overrides them."""

    def sample(self, now: float) -> None:
        """Time to sample the counters (``TracedExecution.next_sample`` has come)."""

    # -- the CPU mechanisms' decisions ----------------------------------------------------
    def gang_preempted(self, victim: VM, by: VM, cpu: CPU) -> None:
        """The gang scheduler preempted ``victim``'s gang for ``by``, which wants ``cpu``."""

    def idle_steal(self, v: VCPU, cpu: CPU) -> None:
        """The idle balancer just moved ``v`` to the idle ``cpu`` (the move was on the bus)."""

    def periodic_move(self, v: VCPU, cpu: CPU) -> None:
        """The periodic balancer just moved ``v`` to ``cpu`` (the move was on the bus)."""

    # -- faults and recovery --------------------------------------------------------------
    def recovery(self, fault: Fault, phases: list[tuple[str, float]]) -> None:
        """Recovery of ``fault`` begins now with ``phases`` (name, seconds) back to back; a
        later fault in the same episode cuts them short."""

    def termination(self, end: float, vms: list[VM]) -> None:
        """The machine-wide part is over: ``vms`` are killed, cleanup ends at ``end``."""


NO_TRACE = TraceHooks()


class TracedExecution(Execution):
    """``Execution`` that also records, after doing exactly what ``Execution`` does, every
    VCPU run (``runs``: cpu, VM id, VCPU index, start, end) and every change of a VM's gang
    state (``states``: VM id, state, start, end); ``runner.build`` picks it only when tracing.
    The tracer takes the lists away as it writes them."""

    hooks: TraceHooks
    runs: list[tuple[int, int, int, float, float]]
    states: list[tuple[int, int, float, float]]
    run_start: list[float]  # per CPU: when its current VCPU started
    vm_state: dict[int, tuple[int, float]]  # VM id -> (state, since), OFF VMs absent
    next_sample: float

    def trace_to(self, hooks: TraceHooks) -> None:
        self.hooks = hooks
        self.runs = []
        self.states = []
        self.run_start = [0.0] * len(self.cpus)
        self.vm_state = {}
        self.next_sample = 0.0

    def start(self, v: VCPU, cpu: CPU, extra_debt: float = 0.0) -> None:
        Execution.start(self, v, cpu, extra_debt)
        now = self.loop.now
        self.run_start[cpu.index] = now
        if v.vm.active == 1:  # its first VCPU on a CPU: the VM is running now
            self.vm_changed(v.vm, now)
        if now >= self.next_sample:
            self.hooks.sample(now)

    def stop(self, v: VCPU, new_state: int) -> CPU:
        cpu = Execution.stop(self, v, new_state)
        now = self.loop.now
        i = cpu.index
        self.runs.append((i, v.vm.id, v.index, self.run_start[i], now))
        self.vm_changed(v.vm, now)
        if now >= self.next_sample:
            self.hooks.sample(now)
        return cpu

    def _on_wake(self, v: VCPU) -> None:
        Execution._on_wake(self, v)
        self.vm_changed(v.vm, self.loop.now)

    def vm_changed(self, vm: VM, now: float) -> None:
        """Record the end of ``vm``'s gang state if it changed now."""
        old = self.vm_state.get(vm.id)
        prev = old[0] if old is not None else OFF
        if vm.active > 0:
            state = RUNNING_STATE
        elif vm.runnable > 0 and vm.status == "running":
            state = DESCHEDULED if prev == RUNNING_STATE or prev == DESCHEDULED else WAITING
        else:
            state = OFF
        if state == prev:
            return
        if old is not None:
            self.states.append((vm.id, prev, old[1], now))
        if state == OFF:
            del self.vm_state[vm.id]
        else:
            self.vm_state[vm.id] = (state, now)
