"""Engine benchmark: the same process model on disco's EventLoop, a bare heapq loop and SimPy.

N processes, each repeatedly waiting a random time (delays drawn up front, the same for all
three, so only the event machinery is timed). Prints events/s of each and the ratios.
Targets: disco >= 1.0 x bare heapq (issue 24; 0.8 in issue 7), >= 2 x SimPy.

``disco`` is the loop ``import disco`` chose: compiled when a current build exists
(``disco.native``). ``disco-src`` is always the loop's Python source, loaded on its own, so one
run shows both.

    python benchmarks/engine.py [--events 400000] [--procs 100]
"""

from __future__ import annotations

import argparse
import heapq
import importlib.util
import time
from functools import partial

import numpy as np

from disco import native
from disco.engine import EventLoop


def source_event_loop() -> type[EventLoop]:
    """disco's EventLoop from ``loop.py`` itself, whether or not the core runs compiled."""
    spec = importlib.util.spec_from_file_location(
        "disco_loop_source", native.PACKAGE_DIR / "engine" / "loop.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.EventLoop


def delays_for(n_events: int, seed: int = 0) -> list[float]:
    return np.random.default_rng(seed).exponential(1.0, n_events).tolist()


def run_disco(n_procs: int, delays: list[float], loop_class: type[EventLoop] = EventLoop) -> int:
    loop = loop_class()
    schedule = loop.schedule
    it = iter(delays)
    budget = len(delays) - n_procs

    def wake(i: int) -> None:
        nonlocal budget
        if budget > 0:
            budget -= 1
            schedule(next(it), wake, i)

    for i in range(n_procs):
        schedule(next(it), wake, i)
    loop.run(until=float("inf"))
    return loop.events


def run_heapq(n_procs: int, delays: list[float]) -> int:
    heap: list[tuple[float, int, object, tuple]] = []
    it = iter(delays)
    seq = 0
    budget = len(delays) - n_procs
    now = 0.0
    events = 0

    def wake(i: int) -> None:
        nonlocal seq, budget
        if budget > 0:
            budget -= 1
            seq += 1
            heapq.heappush(heap, (now + next(it), seq, wake, (i,)))

    for i in range(n_procs):
        seq += 1
        heapq.heappush(heap, (next(it), seq, wake, (i,)))
    while heap:
        now, _, cb, args = heapq.heappop(heap)
        events += 1
        cb(*args)
    return events


def run_simpy(n_procs: int, delays: list[float]) -> int:
    import simpy

    env = simpy.Environment()
    it = iter(delays)
    budget = [len(delays) - n_procs]
    events = [0]

    def proc(env: simpy.Environment):
        yield env.timeout(next(it))
        events[0] += 1
        while budget[0] > 0:
            budget[0] -= 1
            yield env.timeout(next(it))
            events[0] += 1

    for _ in range(n_procs):
        env.process(proc(env))
    env.run()
    return events[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=400_000)
    ap.add_argument("--procs", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    delays = delays_for(args.events)
    runners = {"heapq": run_heapq, "disco": run_disco,
               "disco-src": partial(run_disco, loop_class=source_event_loop()),
               "simpy": run_simpy}
    rates = dict.fromkeys(runners, 0.0)
    counts = dict.fromkeys(runners, 0)
    # Round robin, best of each: a burst of load on this shared machine hits all three alike.
    for _ in range(args.repeats):
        for name, fn in runners.items():
            t0 = time.perf_counter()
            counts[name] = fn(args.procs, delays)
            rates[name] = max(rates[name], counts[name] / (time.perf_counter() - t0))
    print(f"disco's core: {native.describe()}")
    for name, rate in rates.items():
        print(f"{name:9s} {counts[name]:>9d} events  {rate / 1e6:6.2f} M events/s")
    for name in ("disco", "disco-src"):
        print(f"{name} / heapq = {rates[name] / rates['heapq']:.2f}  (target >= 1.0)   "
              f"{name} / simpy = {rates[name] / rates['simpy']:.2f}  (target >= 2)")


if __name__ == "__main__":
    main()
