"""Limits: bounds a config can exceed on purpose but should not by accident.

A declared ``Range`` (``disco/config.py``) says what a value *means* (a fraction is in [0, 1]);
a ``Limit`` says what the simulator is built and tested for: a machine of 10 million nodes, a
million VMs or a period of a picosecond is a valid number that would exhaust memory or run for
ever. Each limit is declared at its field, next to its ``Range``
(``Annotated[int, Positive, AtMost(4096, "why")]``), and says why in its message. Every numeric
field without an upper limit of its own gets ``MAGNITUDE``: a number past it is a typo whose
arithmetic overflows (``machine.hop_latency_ns=1e308``).

Budgets bound what several fields give together (``check_budgets``): the clocked events a run
schedules (its periods against its duration), the memory chunks it tracks, the VMs it holds.

A user who means it raises a limit in the config itself, so the run's ``config.yaml`` still
validates when it is replayed: ``+limits.<field path>=N`` on the command line for a field
(``+limits.machine.nodes=100000``; a list's or a mapping's fields without the index:
``+limits.workload.vms.count=N``), ``+limits.<budget>=N`` for a budget (``+limits.events=1e10``),
or ``SimConfig(limits={"machine": {"nodes": 100000}})``. For a lower limit (the smallest period),
N is the new smallest value. All of it is checked by ``SimConfig.validate()``, before
anything is allocated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Limit:
    """A soft bound on a numeric field: ``value <= bound`` (``upper``) or ``value >= bound``."""

    bound: float
    why: str
    upper: bool = True

    def admits(self, value: float, raised: float | None) -> bool:
        bound = self.bound if raised is None else raised
        return value <= bound if self.upper else value >= bound

    def describe(self, path: str, value: Any, raised: float | None = None) -> str:
        side = "at most" if self.upper else "at least"
        bound = self.bound if raised is None else raised
        return (f"{side} {bound:g} ({self.why}); to run it anyway, raise the limit: "
                f"+limits.{path}={_fmt(value)}")


def AtMost(bound: float, why: str) -> Limit:  # noqa: N802 (reads as a type in Annotated)
    return Limit(float(bound), why, True)


def AtLeast(bound: float, why: str) -> Limit:  # noqa: N802
    return Limit(float(bound), why, False)


# Every numeric field without an upper limit of its own: past this, a value is a typo, and the
# model's sums and products of times, rates and sizes overflow or lose all precision.
MAGNITUDE = AtMost(1e12, "larger values are typos that overflow the model's arithmetic")

# Budgets: name -> (default, why).
BUDGETS: dict[str, tuple[float, str]] = {
    "events": (1e8, "clocked events (its periods and rates against sim.duration_s; 1e8 take "
                    "minutes)"),
    "chunks": (4e6, "memory chunks, tracked one by one (the machine's and the VMs' memory over "
                    "policy.chunk_mb)"),
    "vms": (1e5, "VMs (each with its own VCPUs, memory and events)"),
}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    text = str(value)
    return text if len(text) <= 24 else f"{text[:6]}...({len(text)} digits)"


def short(value: Any) -> Any:
    """A value for an error message: a 400-digit integer is shown by its length."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**24:
        return _fmt(value)
    return value


def raised(limits: Any) -> dict[str, float]:
    """``cfg.limits`` (nested, as YAML or ``limits.a.b=N`` give it) -> ``{"a.b": N}``.

    Raises ValueError naming the entry when one is not a number > 0."""
    out: dict[str, float] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
            return
        key = prefix[:-1]
        if (isinstance(node, bool) or not isinstance(node, int | float)
                or not (isinstance(node, int) or math.isfinite(node)) or node <= 0):
            raise ValueError(key)
        out[key] = float(node) if isinstance(node, float) or abs(node) < 2**53 else math.inf
    walk(limits or {}, "")
    return out


def estimate(cfg: Any) -> dict[str, dict[str, tuple[float, Any]]]:
    """Each budget's terms for ``cfg``: {budget: {the key that drives the term: (cost, value)}}."""
    m, w, p, s, f = cfg.machine, cfg.workload, cfg.policy, cfg.sim, cfg.faults
    ms = s.duration_s * 1e3
    cpus = m.nodes * m.cpus_per_node
    n_vms = sum(g.count for g in w.vms)
    bursts, shortest = 0.0, math.inf
    for g in w.vms:
        prof = w.profiles.get(g.workload)
        if prof is not None:  # a compute run ends at a blocking point: io_prob + idle_prob
            bursts += g.count * g.vcpus * ms * (prof.io_prob + prof.idle_prob) / prof.burst_ms
            shortest = min(shortest, prof.burst_ms)
    hw_rate = f.node_rate + f.link_rate + f.firmware_rate + f.router_rate
    events = {
        "workload.profiles.burst_ms": (bursts, shortest),
        "policy.time_slice_ms": (ms / p.time_slice_ms * cpus, p.time_slice_ms),
        "policy.periodic_period_ms": (ms / p.periodic_period_ms if p.periodic_balancer else 0.0,
                                      p.periodic_period_ms),
        "policy.memory_tick_ms": (ms / p.memory_tick_ms * max(1, n_vms), p.memory_tick_ms),
        "sim.sample_interval_s": (s.duration_s / s.sample_interval_s * m.nodes,
                                  s.sample_interval_s),
        "faults.node_rate": ((hw_rate * m.nodes + f.software_rate * n_vms) * s.duration_s,
                             f.node_rate),
        "faults.touch_rate_per_s": (f.touch_rate_per_s * n_vms * s.duration_s
                                    if f.kill_policy == "lazy" else 0.0, f.touch_rate_per_s),
    }
    memory_mb = m.nodes * m.memory_per_node_mb + sum(g.count * g.memory_mb for g in w.vms)
    return {"events": events,
            "chunks": {"policy.chunk_mb": (memory_mb / p.chunk_mb, p.chunk_mb)},
            "vms": {"workload.vms": (float(n_vms), n_vms)}}


def check_budgets(cfg: Any, limits: dict[str, float], error: Any) -> None:
    """Raise ``error(key, value, reason)`` for the first budget ``cfg`` goes past, naming the
    key that contributes most."""
    for name, terms in estimate(cfg).items():
        default, why = BUDGETS[name]
        bound = limits.get(name, default)
        total = sum(cost for cost, _ in terms.values())
        if total > bound:
            worst = max(terms, key=lambda k: terms[k][0])
            raise error(worst, terms[worst][1],
                        f"the run would need ~{total:.3g} {why}, mostly from {worst} "
                        f"(~{terms[worst][0]:.3g}): at most {bound:g} (limits.{name}); to run "
                        f"it anyway, raise the budget: +limits.{name}={total:.3g}")
