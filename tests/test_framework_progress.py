"""The sweep's progress: tqdm bar on a terminal, plain lines elsewhere, an ETA whose clock starts
at the first finished run, cached runs as the initial count, failures printed as they happen,
and other output printed above the bar instead of through it."""

from __future__ import annotations

import io
import logging
import sys
import time

import pytest
from framework_helpers import tasks

from disco.framework import progress as progress_mod
from disco.framework.plan import make_plan
from disco.framework.progress import Progress
from disco.framework.sweep import run_sweep

TINY = ["sim.duration_s=0.5", "sim.sample_interval_s=0.5", "sweep.serial=true"]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_reports_failures_as_they_happen(tmp_path, monkeypatch):
    printed = tmp_path / "progress.txt"
    monkeypatch.setenv(tasks.STREAM_ENV, str(printed))
    with open(printed, "w", buffering=1) as stream:
        plan = make_plan([*TINY, f"results_dir={tmp_path}", "policy.periodic_period_ms=13,50,100",
                          "sweep.task=framework_helpers.tasks:check_failure_was_printed"])
        outcome = run_sweep(plan, stream=stream)
    assert outcome.failed == 1 and outcome.done == 2
    # Both runs after the failure saw its line already printed.
    assert [r.get("failure_seen") for r in outcome.rows] == [None, 1, 1]
    line = next(x for x in printed.read_text().splitlines() if x.startswith("FAILED"))
    assert "RuntimeError: unlucky period: 13 ms" in line and "periodic_period_ms=13.0" in line
    error_txt = line.rsplit(" -> ", 1)[1]
    assert error_txt.endswith("error.txt") and "unlucky" in open(error_txt).read()


def test_progress_eta_clock_starts_at_the_first_finished_run(monkeypatch):
    monkeypatch.setattr(progress_mod, "PLAIN_START_AFTER_S", 0.1)
    stream = io.StringIO()
    p = Progress("s", total=10, skipped=3, stream=stream)
    assert p.mode == "plain" and p.bar.n == 3  # cached runs are the initial count
    p.starting("starting Ray...")
    time.sleep(0.6)  # Ray starting: must count neither in the elapsed time nor in the rate
    assert "3/10" in stream.getvalue() and "starting Ray..." in stream.getvalue()
    p.add("ok")
    assert p.bar.n == p.bar.initial == 4 and p.bar.format_dict["elapsed"] < 0.3
    for _ in range(3):
        time.sleep(0.05)
        p.add("ok")
    d = p.bar.format_dict
    assert d["n"] == 7 and d["elapsed"] < 0.5
    rate = d["rate"] or (d["n"] - d["initial"]) / d["elapsed"]
    assert rate > 5, d  # runs/s from the runs themselves (~20/s), not from the start (~4/s)
    p.close()


def test_progress_is_a_plain_line_every_few_seconds_off_a_terminal(monkeypatch):
    monkeypatch.setattr(progress_mod, "PLAIN_EVERY_S", 0.0)
    stream = io.StringIO()
    p = Progress("study", total=4, skipped=0, stream=stream)
    for status in ("ok", "ok", "failed", "ok"):
        p.add(status, key="k", detail="x=1", error="Boom")
    p.close()
    out = stream.getvalue()
    assert "\r" not in out and "\x1b" not in out
    lines = out.splitlines()
    assert any("100%" in x and "4/4" in x and "runs/s" in x for x in lines)
    assert "FAILED k (x=1): Boom" in lines


def test_progress_bar_on_a_terminal_keeps_other_output_above_it(monkeypatch):
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)  # the terminal: the bar's and everyone's stderr
    ray_log = logging.getLogger("disco_test_ray")  # a logger with a console handler, as Ray's
    handler = logging.StreamHandler(term)
    ray_log.addHandler(handler)
    ray_log.propagate = False
    p = Progress("study", total=3, skipped=1, stream=term)
    assert p.mode == "tty"
    try:
        with p.bar_safe_output():
            p.add("ok")
            print("(run_batch pid=1) a worker's line", file=sys.stderr)
            ray_log.warning("a Ray log line")
            p.add("ok")
        p.close()
    finally:
        ray_log.removeHandler(handler)
    assert handler.stream is term
    out = term.getvalue()
    assert "%|" in out and "3/3" in out and "runs/s" in out
    for text in ("(run_batch pid=1) a worker's line", "a Ray log line"):
        i = out.index(text)
        # The bar was cleared first: the line starts at column 0, not after the bar's text.
        assert out[:i].endswith("\r") or out[:i].endswith("\n"), repr(out[max(0, i - 40):i])
        assert out[i + len(text)] == "\n"


@pytest.mark.parametrize("enabled", [False])
def test_progress_off_still_prints_failures(enabled):
    stream = io.StringIO()
    p = Progress("s", total=1, skipped=0, enabled=enabled, stream=stream)
    p.add("failed", key="k1", error="Traceback...\nValueError: bad")
    p.close()
    assert stream.getvalue() == "FAILED k1: ValueError: bad\n"
