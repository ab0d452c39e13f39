"""The report's verdicts (analysis/verdicts.py): each claim on hand-made data that should agree
and on data that should not, both outcomes asserted, so no check is one that cannot fail."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import polars as pl
import pytest
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "analysis"))

import verdicts as V  # noqa: E402

CLAIM = dict(claim="a claim", source="[P]")


def runs(column: str, values: dict[str, list[float]], metric: str = "m") -> pl.DataFrame:
    """Runs of ``column`` = each key, replicate i carrying values[key][i]."""
    return pl.DataFrame([{column: k, "replicate": i, metric: x}
                         for k, xs in values.items() for i, x in enumerate(xs)])


def test_t_interval_is_scipys_student_t_interval():
    xs = [1.0, 2.0, 4.0, 3.5]
    iv = V.t_interval(xs)
    lo, hi = stats.t.interval(0.95, len(xs) - 1, loc=sum(xs) / 4, scale=stats.sem(xs))
    assert (iv.n, iv.lo, iv.hi) == (4, pytest.approx(lo), pytest.approx(hi))
    assert V.t_interval([5.0, None, math.nan]).valid is False  # one value: no interval
    assert V.t_interval([]).text() == "none completed"


def test_decide_names_calibrated_checks_and_missing_data():
    assert V.decide(True, "measured") == "agrees"
    assert V.decide(True, "analytic") == "agrees"
    assert V.decide(True, "calibrated") == "calibrated"
    assert V.decide(False, "calibrated") == "disagrees"
    assert V.decide(None, "measured") == "n/a"
    with pytest.raises(AssertionError):
        V.Check("c", "guessed", "[A]", "m", "agrees")


def test_paired_joins_the_two_settings_by_replicate():
    df = runs("policy", {"a": [1.0, 2.0, 3.0], "b": [1.5, 2.0]})
    d = V.paired(df, "policy", "a", "b", "m")
    assert d["diff"].to_list() == [0.5, 0.0]


def test_lower_is_better_agrees_only_when_the_whole_interval_is_below_zero():
    better = runs("policy", {"none": [10.0, 11.0, 12.0, 10.5], "both": [8.0, 9.1, 9.9, 8.4]})
    same = runs("policy", {"none": [10.0, 11.0, 12.0, 10.5], "both": [10.1, 10.8, 12.2, 10.4]})
    worse = runs("policy", {"none": [10.0, 11.0, 12.0], "both": [11.0, 12.0, 13.1]})
    assert V.lower_is_better(better, "policy", "none", "both", "m", **CLAIM).verdict == "agrees"
    assert V.lower_is_better(same, "policy", "none", "both", "m", **CLAIM).verdict == "disagrees"
    assert V.lower_is_better(worse, "policy", "none", "both", "m", **CLAIM).verdict == "disagrees"
    lonely = runs("policy", {"none": [10.0], "both": [5.0]})
    assert V.lower_is_better(lonely, "policy", "none", "both", "m", **CLAIM).verdict == "n/a"


def faults(cd_lost: list[int], fp_lost: list[int]) -> pl.DataFrame:
    """The same hardware faults (times, places) under both policies, plus noise that must not
    pair: a software fault and a fault one policy ignored."""
    rows = []
    for policy, lost in (("cellular_disco", cd_lost), ("fixed_partition", fp_lost)):
        for i, n in enumerate(lost):
            rows.append({"policy": policy, "replicate": i % 3, "time_s": 1.0 + i,
                         "place": f"node {i}", "type": "node", "ignored": False, "vms_lost": n})
        rows.append({"policy": policy, "replicate": 0, "time_s": 99.0, "place": "vm 3",
                     "type": "software", "ignored": False, "vms_lost": 1})
    rows.append({"policy": "cellular_disco", "replicate": 1, "time_s": 50.0, "place": "link 2",
                 "type": "link", "ignored": True, "vms_lost": 0})
    return pl.DataFrame(rows)


def test_containment_agrees_when_a_fault_costs_about_what_a_partition_loses():
    ok = V.containment_vs_partitions(faults([1, 2, 1, 2, 1, 0], [1, 2, 1, 1, 1, 1]))
    bad = V.containment_vs_partitions(faults([4, 3, 5, 2, 4, 3], [1, 1, 0, 1, 1, 1]))
    assert ok.verdict == "agrees" and ok.n == 6
    assert bad.verdict == "disagrees" and "+2.67" in bad.measured


def test_lost_share_agrees_near_one_cell_and_disagrees_well_above():
    near = pl.DataFrame({"share": [0.125, 0.1, 0.15, 0.14]})
    far = pl.DataFrame({"share": [0.3, 0.35, 0.4, 0.25]})
    assert V.lost_share_vs_cells(near, 8).verdict == "agrees"
    assert V.lost_share_vs_cells(far, 8).verdict == "disagrees"
    assert V.lost_share_vs_cells(far.head(0), 8).verdict == "n/a"


def test_slowdown_below_the_paper_bound():
    assert V.slowdown_below([0.2, -0.4, 0.9, 0.1], 1.0, **CLAIM).verdict == "agrees"
    assert V.slowdown_below([1.2, 3.0, 2.1, 0.8], 1.0, **CLAIM).verdict == "disagrees"
    assert V.slowdown_below([None, None], 1.0, **CLAIM).verdict == "n/a"


def test_ratio_within_needs_every_group_within_the_bound():
    ok = pl.DataFrame({"workload": ["a", "a", "b", "b"], "ratio": [1.0, 1.01, 0.99, 1.015]})
    one_bad = ok.with_columns(pl.when(pl.col("workload") == "b").then(1.09)
                              .otherwise(pl.col("ratio")).alias("ratio"))
    assert V.ratio_within(ok, "workload", 0.02, **CLAIM).verdict == "agrees"
    assert V.ratio_within(one_bad, "workload", 0.02, **CLAIM).verdict == "disagrees"


def sizes(cd: dict[int, list[float]], fp: dict[int, list[float]]) -> pl.DataFrame:
    return pl.DataFrame([{"cpus": s, "policy": p, "replicate": i, "rt": x}
                         for p, by in (("cellular_disco", cd), ("fixed_partition", fp))
                         for s, xs in by.items() for i, x in enumerate(xs)])


def test_beats_at_every_size_fails_when_one_size_does_not_beat():
    fp = {4: [29.0, 30.0, 28.5], 16: [15.0, 16.0, 15.5]}
    wins = sizes({4: [10.0, 10.5, 9.8], 16: [10.0, 10.2, 9.9]}, fp)
    ties = sizes({4: [10.0, 10.5, 9.8], 16: [15.1, 15.9, 15.6]}, fp)
    assert V.beats_at_every_size(wins, "cpus", "rt", **CLAIM).verdict == "agrees"
    assert V.beats_at_every_size(ties, "cpus", "rt", **CLAIM).verdict == "disagrees"


def test_within_at_every_size_fails_when_one_size_costs_more_than_the_bound():
    fp = {4: [8.4, 8.3, 8.5], 16: [8.9, 8.8, 9.0]}
    close = sizes({4: [8.9, 8.8, 9.0], 16: [8.95, 8.9, 9.0]}, fp)   # +6 %, +1 %
    far = sizes({4: [9.6, 9.5, 9.7], 16: [8.95, 8.9, 9.0]}, fp)     # +14 % at 4 CPUs
    assert V.within_at_every_size(close, "cpus", "rt", 0.10, **CLAIM).verdict == "agrees"
    assert V.within_at_every_size(far, "cpus", "rt", 0.10, **CLAIM).verdict == "disagrees"


BASE = [10.0, 11.0, 9.5, 10.4]


@pytest.mark.parametrize(("alt", "expect", "verdict"), [
    ([12.0, 13.2, 11.4, 12.6], "up", "responds"),        # +20 %, every seed
    ([8.0, 8.9, 7.5, 8.3], "down", "responds"),
    ([8.0, 8.9, 7.5, 8.3], "change", "responds"),
    (BASE, "up", "dead"),                                 # a fake dead knob: nothing moves
    ([10.02, 11.0, 9.49, 10.41], "up", "dead"),           # noise far below 1 %
    ([8.0, 8.9, 7.5, 8.3], "up", "inverted"),             # a fake inverted knob: -20 %
    ([14.0, 8.0, 13.5, 8.0], "up", "unclear"),            # +6 % but noisy: more seeds
])
def test_knob_verdict(alt, expect, verdict):
    assert V.knob_verdict(BASE, alt, expect).verdict == verdict


def test_knob_verdict_calls_a_negligible_wrong_way_effect_dead_not_inverted():
    base = [12.63] * 4
    alt = [12.61] * 4  # -0.16 % on every seed (a deterministic scenario): the interval is a point
    assert V.knob_verdict(base, alt, "up").verdict == "dead"
    assert V.knob_verdict(base, [x * 0.9 for x in base], "up").verdict == "inverted"


def test_knob_effect_is_relative_to_the_baseline_and_zero_baselines_are_handled():
    ke = V.knob_verdict([2.0, 2.0, 2.0], [3.0, 3.0, 3.0], "up")
    assert ke.effect.mean == pytest.approx(0.5) and ke.absolute.mean == pytest.approx(1.0)
    assert V.knob_verdict([0.0] * 3, [0.0] * 3, "down").verdict == "dead"
    assert V.knob_verdict([0.0] * 3, [5.0, 6.0, 7.0], "up").verdict == "responds"
    with pytest.raises(ValueError, match="expect"):
        V.knob_verdict(BASE, BASE, "sideways")
