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


# The file the sweep's progress writes to, read by ``check_failure_was_printed`` mid-sweep (a
# serial sweep runs its tasks in a child process: the file is what both see).
STREAM_ENV = "DISCO_TEST_PROGRESS_FILE"


def check_failure_was_printed(cfg: SimConfig) -> SimResult:
    """Fails for period 13; every later run checks that the failure is already in the file."""
    if cfg.policy.periodic_period_ms == BAD_PERIOD_MS:
        raise RuntimeError("unlucky period: 13 ms")
    result = simulate(cfg)
    path = os.environ.get(STREAM_ENV)
    result.metrics["failure_seen"] = int(bool(path) and "FAILED" in open(path).read())
    return result


def fail_on_13_else_slow(cfg: SimConfig) -> SimResult:
    """Raises at once for period 13; the others take a while (a sweep to stop half-way)."""
    if cfg.policy.periodic_period_ms == BAD_PERIOD_MS:
        raise RuntimeError("unlucky period: 13 ms")
    time.sleep(0.3)
    return simulate(cfg)


# A file whose existence releases ``wait_for_release`` (a sweep held mid-run while a test looks
# at it); the runs of a held sweep give up after a minute.
RELEASE_ENV = "DISCO_TEST_RELEASE_FILE"


def held(cfg: SimConfig) -> SimResult:
    """Waits for the release file; then two runs pass and every later one is held until the
    sweep ends (a minute at most): a sweep stopped mid-way, on purpose."""
    release = os.environ[RELEASE_ENV]
    deadline = time.monotonic() + 60
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.05)
    slots = release + ".slots"
    os.makedirs(slots, exist_ok=True)
    for slot in ("0", "1"):
        try:
            os.close(os.open(os.path.join(slots, slot), os.O_CREAT | os.O_EXCL))
            return simulate(cfg)
        except FileExistsError:
            continue
    while time.monotonic() < deadline:
        time.sleep(0.05)
    return simulate(cfg)


def hang_on_13(cfg: SimConfig) -> SimResult:
    """Never returns for policy.periodic_period_ms=13 (a run that hangs)."""
    while cfg.policy.periodic_period_ms == BAD_PERIOD_MS:
        time.sleep(1)
    return simulate(cfg)


def sigkill_self_on_13(cfg: SimConfig) -> SimResult:
    """SIGKILLs its own process for policy.periodic_period_ms=13."""
    import signal

    if cfg.policy.periodic_period_ms == BAD_PERIOD_MS:
        os.kill(os.getpid(), signal.SIGKILL)
    return simulate(cfg)


def die_once(cfg: SimConfig) -> SimResult:
    """Kills its worker the first time it runs a config (a marker file in $DISCO_TEST_DIE_ONCE
    remembers), then simulates: a good run whose first worker died."""
    marker = os.path.join(os.environ["DISCO_TEST_DIE_ONCE"], f"{cfg.policy.periodic_period_ms}")
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(3)
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
