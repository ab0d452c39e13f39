"""Sweep tasks for tests (``sweep.task=framework_helpers.tasks:<name>``)."""

from __future__ import annotations

import os
import time

from disco import SimConfig, SimResult, simulate

BAD_PERIOD_MS = 13.0


def fail_on_13(cfg: SimConfig) -> SimResult:
    """Raises for policy.periodic_period_ms=13, simulates otherwise."""
    if cfg.policy.periodic_period_ms == BAD_PERIOD_MS:
        raise RuntimeError("unlucky period: 13 ms")
    return simulate(cfg)


def die_on_13(cfg: SimConfig) -> SimResult:
    """Kills its own process (a Ray worker dying) for policy.periodic_period_ms=13."""
    if cfg.policy.periodic_period_ms == BAD_PERIOD_MS:
        os._exit(3)
    return simulate(cfg)


def slow(cfg: SimConfig) -> SimResult:
    """A run long enough to kill a sweep half-way through."""
    time.sleep(0.1)
    return simulate(cfg)


def ragged_timeline(cfg: SimConfig) -> SimResult:
    """Returns a result whose timeline columns differ in length: unwritable."""
    result = simulate(cfg)
    result.timeline = {"time_s": [0.0, 1.0], "load": [1.0]}
    return result


# A stream the sweep's progress writes to, read by ``check_failure_was_printed`` mid-sweep.
STREAM: list = []


def check_failure_was_printed(cfg: SimConfig) -> SimResult:
    """Fails for period 13; every later run checks that the failure is already on the stream."""
    if cfg.policy.periodic_period_ms == BAD_PERIOD_MS:
        raise RuntimeError("unlucky period: 13 ms")
    result = simulate(cfg)
    result.metrics["failure_seen"] = int(bool(STREAM) and "FAILED" in STREAM[0].getvalue())
    return result


def fail_on_13_else_slow(cfg: SimConfig) -> SimResult:
    """Raises at once for period 13; the others take a while (a sweep to stop half-way)."""
    if cfg.policy.periodic_period_ms == BAD_PERIOD_MS:
        raise RuntimeError("unlucky period: 13 ms")
    time.sleep(0.3)
    return simulate(cfg)


def bowl(cfg: SimConfig) -> SimResult:
    """No simulation: ``loss = (policy.periodic_period_ms - 40)^2``, least at 40 ms. Over
    ``interval(1,100)`` the config's own 100 ms is the worst point, so any other trial beats it.
    ``spread`` adds the balancer threshold: a second objective to trade against ``period``."""
    x = cfg.policy.periodic_period_ms
    y = cfg.policy.periodic_threshold
    return SimResult(metrics={"loss": (x - 40.0) ** 2, "period": x, "spread": (100.0 - x) + y})


def slow_bowl(cfg: SimConfig) -> SimResult:
    """``bowl`` that takes ``$DISCO_TEST_SLEEP_S`` per run: a tuning to kill half-way (the
    same results and run keys with or without the sleep, so a reference can run fast)."""
    time.sleep(float(os.environ.get("DISCO_TEST_SLEEP_S", "0")))
    return bowl(cfg)
