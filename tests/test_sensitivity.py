"""The knob-sensitivity study: the table (conf/experiment/sensitivity.yaml), its one-sweep-per-knob
runner (experiments/one_at_a_time.py) and the table's verdicts (analysis/sensitivity.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "analysis"))
sys.path.insert(0, str(ROOT / "experiments"))

import one_at_a_time as O  # noqa: E402
import sensitivity  # noqa: E402

from disco.framework.plan import PlanError, make_plan  # noqa: E402

TWO_ON_ONE = ("sensitivity.knobs=["
              "{knob:policy.rpc_us,from:16,to:1000,scenario:raytrace2x,metric:makespan_s,"
              "expect:up},"
              "{knob:policy.gang,from:true,to:false,scenario:raytrace2x,metric:makespan_s,"
              "expect:up}]")


def test_the_planner_refuses_a_one_at_a_time_study_and_names_its_runner():
    with pytest.raises(PlanError, match="experiments/reproduce.py sensitivity"):
        make_plan(["+experiment=sensitivity"])
    with pytest.raises(PlanError, match="one-at-a-time"):
        make_plan(["+experiment=smoke", "+sensitivity.knobs=[1]"])


def test_every_shipped_knob_is_planned_alone_on_its_scenario():
    kp = O.plan_knobs("sensitivity", ["sim.replicates=1"])  # ~8 s: 36 plans
    assert len(kp.plans) == len(kp.table.knobs) >= 30
    for knob, plan in kp.plans:
        sides = sorted(O.side_of(knob, r.columns) for r in plan.runs)
        assert sides == sorted(["from", "to"] * (len(plan.runs) // 2)) and sides, knob.id


def test_both_values_share_seeds_and_knobs_on_one_scenario_share_its_baseline():
    kp = O.plan_knobs("sensitivity", [TWO_ON_ONE, "sim.replicates=3"])
    for knob, plan in kp.plans:
        seeds = {s: [r.seed for r in plan.runs if O.side_of(knob, r.columns) == s]
                 for s in O.SIDES}
        assert seeds["from"] == seeds["to"] and len(seeds["from"]) == 3
        assert {r.config["workload"]["name"] for r in plan.runs} == {"raytrace_overcommit"}
    # rpc_us=16 and gang=true are both the scenario's defaults: one baseline, run once
    assert len(kp.merged.runs) == 3 * 3
    labels = pl.DataFrame(O.labels(kp.plans, kp.table.dead_below))
    assert labels.height == 12 and labels.filter(pl.col("side") == "from")["key"].n_unique() == 3
    assert set(labels["value"]) == {"16", "1000", "true", "false"}


def test_a_noisy_scenario_multiplies_the_replicates_given_on_the_command_line():
    cells = ("sensitivity.knobs=[{knob:cells,from:cells_8,to:cells_1,scenario:campaign,"
             "metric:vms_lost,expect:up}]")
    kp = O.plan_knobs("sensitivity", [cells, "sim.replicates=2"])
    assert kp.table.scenarios["campaign"].seeds == 2
    assert len(kp.merged.runs) == 2 * 2 * 2
    assert {r.columns["cells"] for r in kp.merged.runs} == {"cells_8", "cells_1"}


@pytest.mark.parametrize(("override", "named"), [
    ("sensitivity.knobs.0.expect=sideways", "sensitivity.knobs.0.expect"),
    ("sensitivity.knobs.0.scenario=nowhere", "sensitivity.knobs.0.scenario"),
    ("~sensitivity.knobs.0.metric", "missing metric"),
    ("+sensitivity.knobs.0.colour=red", "unknown key colour"),
    ("sensitivity.knobs.0.to=true", "from and to are the same"),
    ("sensitivity.scenarios.campaign.seeds=0", "sensitivity.scenarios.campaign.seeds"),
    ("sensitivity.knobs.0.knob=policy.no_such_knob", "no_such_knob"),
])
def test_a_malformed_table_entry_is_an_error_naming_it(override, named):
    from hydra.errors import HydraException

    from disco.config import ConfigError

    with pytest.raises((PlanError, ConfigError, HydraException), match=named):
        O.plan_knobs("sensitivity", [override])


def reproduce_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("reproduce",
                                                  ROOT / "experiments" / "reproduce.py")
    reproduce = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reproduce)
    return reproduce


def test_reproduce_plans_every_study_first_so_a_bad_table_runs_nothing(tmp_path, capsys):
    reproduce = reproduce_module()
    assert reproduce.main(["recovery", "sensitivity", f"results_dir={tmp_path}",
                           "sweep.serial=true", "sensitivity.knobs.3.expect=up-ish"]) == 2
    assert "sensitivity.knobs.3.expect" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # recovery, planned first, did not run either


def test_reproduce_gives_the_knob_table_overrides_to_the_sensitivity_study_alone():
    reproduce = reproduce_module()
    given = ["sim.replicates=2", "sensitivity.dead_below=0.05", "+sensitivity.x=1"]
    assert reproduce.for_study("sensitivity", given) == given
    assert reproduce.for_study("recovery", given) == ["sim.replicates=2"]


@pytest.mark.parametrize(("value", "text"), [(True, "true"), (None, "null"), (100, "100"),
                                             (100.0, "100"), (0.002, "0.002"), ("paper", "paper")])
def test_values_are_written_as_hydra_reads_them(value, text):
    assert O.value_text(value) == text


def labelled(knob: str, expect: str, base: list[float], alt: list[float]) -> list[dict]:
    return [{"knob_id": f"{knob} @ s (m)", "knob": knob, "scenario": "s", "metric": "m",
             "expect": expect, "side": side, "value": value, "replicate": i, "m": x}
            for side, value, xs in (("from", "a", base), ("to", "b", alt))
            for i, x in enumerate(xs)]


def test_the_table_calls_a_fake_dead_knob_dead_and_a_fake_inverted_one_inverted():
    base = [10.0, 10.8, 9.6, 10.3]
    df = pl.DataFrame(labelled("live", "up", base, [x * 1.2 for x in base])
                      + labelled("dead", "up", base, base)
                      + labelled("inverted", "up", base, [x * 0.8 for x in base])
                      + labelled("noisy", "down", base, [14.0, 7.0, 13.0, 7.5]))
    table = sensitivity.effects(df)
    verdict = dict(table.select("knob", "verdict").iter_rows())
    assert verdict == {"live": "responds", "dead": "dead", "inverted": "inverted",
                       "noisy": "unclear"}
    live = table.filter(pl.col("knob") == "live").row(0, named=True)
    assert live["effect"] == pytest.approx(0.2) and live["change"] == "a → b"
    assert live["effect_lo"] < 0.2 < live["effect_hi"] or live["effect_lo"] == pytest.approx(0.2)


def test_vms_lost_per_fault_counts_only_faults_that_hit_a_live_part():
    df = pl.DataFrame({"faults_injected": [4, 0, 3], "faults_ignored": [1, 0, 3],
                       "vms_lost": [6, 0, 0]})
    assert sensitivity.derived(df, None)["vms_lost_per_fault"].to_list() == [2.0, None, None]
