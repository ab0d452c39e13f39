"""Composition: every option of every config group composes; bad overrides exit 2, write nothing."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
from framework_helpers.common import ROOT, env

from disco.cli import main
from disco.config import SimConfig
from disco.framework.compose import compose
from disco.framework.plan import make_plan, run_key
from disco.framework.schema import DiscoConfig

CONF = ROOT / "conf"
OPTIONS = sorted((p.parent.name, p.stem) for p in CONF.glob("*/*.yaml"))
# Options that need a bigger machine than the default one to be valid.
NEEDS = {"cells": ["machine=origin2000_1024"]}

@pytest.fixture(autouse=True)
def _private_sweep_cache(tmp_path_factory, monkeypatch):
    """Keep the re-run manifests (disco/framework/fastpath.py) out of ~/.cache."""
    monkeypatch.setenv("DISCO_CACHE_DIR", str(tmp_path_factory.mktemp("sweep_cache")))



def test_conf_has_every_group_of_the_issue():
    groups = {g for g, _ in OPTIONS}
    assert {"machine", "cells", "workload", "faults", "policy", "sim", "experiment"} <= groups


@pytest.mark.parametrize(("group", "option"), [o for o in OPTIONS if o[0] != "experiment"])
def test_every_config_group_option_composes(group, option):
    cfg = compose([f"{group}={option}", *NEEDS.get(group, [])])
    assert isinstance(cfg, SimConfig)
    if group in ("machine", "workload"):
        assert getattr(cfg, group).name == option


# One-at-a-time studies (a `sensitivity` table): experiments/one_at_a_time.py plans them, one
# sweep per knob (tests/test_sensitivity.py); the planner refuses them.
ONE_AT_A_TIME = {"sensitivity", "sensitivity_full"}
# Tuning studies (a search space, tune.params): `disco tune` runs them (tests/test_tune.py).
TUNED = {o for g, o in OPTIONS if g == "experiment" and o.startswith("tune_")}


@pytest.mark.parametrize("option", [o for g, o in OPTIONS if g == "experiment"
                                    and o not in ONE_AT_A_TIME | TUNED])
def test_every_experiment_plans_its_sweep(option):
    plan = make_plan([f"+experiment={option}"])
    assert plan.study == option
    assert len(plan.runs) >= 2
    assert len({r.key for r in plan.runs}) == len(plan.runs)


@pytest.mark.parametrize("option", sorted(TUNED))
def test_every_tuning_study_checks_as_a_tuning(option):
    from disco.framework import tune

    tuning, _ = tune.prepare([f"+experiment={option}"])
    assert tuning.study == option and tuning.space and tuning.objectives


def test_default_composition_is_the_simconfig_default():
    assert compose([]) == SimConfig()


def test_schema_carries_every_simconfig_section_and_the_framework_keys():
    names = {f.name for f in dataclasses.fields(DiscoConfig)}
    assert {f.name for f in dataclasses.fields(SimConfig)} <= names
    assert {"study", "sweep", "ray", "results_dir"} <= names


def test_cpu_balance_sweeps_workloads_variants_and_period_and_cli_overrides_win():
    plan = make_plan(["+experiment=cpu_balance"])
    assert len(plan.runs) == 2 * 5 * 3 * 3
    assert {r.columns["workload"] for r in plan.runs} == {"mix_shifting", "raytrace_overcommit"}
    assert {r.config["policy"]["gang"] for r in plan.runs} == {True, False}  # policy=gang_off
    fixed = make_plan(["+experiment=cpu_balance", "policy.gang=true", "sim.replicates=1"])
    assert len(fixed.runs) == 2 * 5 * 3 - 2 * 3  # gang_off forced on = cellular_disco
    assert {r.config["policy"]["gang"] for r in fixed.runs} == {True}


def test_replicate_seeds_come_from_seed_sequence_and_a_prefix_is_stable():
    plan = make_plan(["sim.seed=7", "sim.replicates=3"], multirun=False)
    expected = [int(c.generate_state(1)[0]) for c in np.random.SeedSequence(7).spawn(3)]
    assert [r.seed for r in plan.runs] == expected
    assert [r.config["sim"]["seed"] for r in plan.runs] == expected
    five = make_plan(["sim.seed=7", "sim.replicates=5"], multirun=False)
    assert [r.key for r in five.runs[:3]] == [r.key for r in plan.runs]


def test_run_key_depends_on_config_seed_and_code_not_on_spelling():
    a = make_plan(["policy.periodic_period_ms=100"], multirun=False).runs[0]
    b = make_plan(["policy.periodic_period_ms=100.0"], multirun=False).runs[0]
    c = make_plan(["policy.periodic_period_ms=50"], multirun=False).runs[0]
    assert a.key == b.key != c.key
    assert run_key(a.config, "code1", "t") != run_key(a.config, "code2", "t")


def test_a_sweep_that_repeats_a_config_runs_it_once():
    plan = make_plan(["policy.periodic_period_ms=100,100.0,50"])
    assert len(plan.runs) == 2 and plan.duplicates == 1


BAD = [
    (["policy.gangg=true"], "policy.gangg"),  # typo
    (["policy.gang=maybe"], "policy.gang"),  # wrong type
    (["sim.duration_s=abc"], "sim.duration_s"),
    (["cells.count=3"], "cells.count"),  # does not divide 16 nodes
    (["sim.duration_s=-1"], "sim.duration_s"),  # out of range
    (["machine=origin9"], "machine"),  # no such option
    (["workload=mix_shifting", "cells=cells_1"], "home_cell"),  # pinned to a cell that is not there
    (["+faults.rate=1"], "faults.rate"),  # no faults section in the simulator yet
    (["policy.periodic_period_ms=50,100"], "-m"),  # a sweep without --multirun
    (["-m", "policy.periodic_period_ms=50,-5"], "policy.periodic_period_ms"),
    (["-m", "+experiment=recovery", "size=huge"], "size='huge'"),
    (["-m", "size=full"], "+experiment"),  # a size without a study
    (["-m", "+experiment=smoke", "size=full"], "smoke_full"),  # a study with no full size
]


@pytest.mark.parametrize(("overrides", "names"), BAD)
def test_bad_override_exits_2_naming_the_key_and_writes_nothing(tmp_path, capsys, overrides,
                                                                 names):
    results = tmp_path / "results"
    assert main([*overrides, f"results_dir={results}"]) == 2
    err = capsys.readouterr().err
    assert names in err
    assert not results.exists()


def test_size_full_selects_the_studys_full_file_and_small_the_study_itself():
    full = make_plan(["size=full", "+experiment=recovery"])
    assert full.study == "recovery_full"
    assert make_plan(["+experiment=recovery_full"]).runs == full.runs
    small = make_plan(["+experiment=recovery", "size=small"])
    assert small.study == "recovery" and small.runs == make_plan(["+experiment=recovery"]).runs
    assert compose(["+experiment=paging", "size=full"]) == compose(["+experiment=paging_full"])


def test_cli_subprocess_exit_code_2_on_cross_field_error(tmp_path):
    results = tmp_path / "results"
    p = subprocess.run([sys.executable, "-m", "disco.cli", "-m", "cells.count=5,8",
                        f"results_dir={results}"], cwd=ROOT, env=env(),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    assert "cells.count=5" in p.stderr and "machine.nodes=16" in p.stderr
    assert not results.exists()


def test_import_disco_does_not_import_the_framework_libraries():
    code = ("import sys, disco; bad = [m for m in ('hydra', 'ray', 'polars', 'seaborn', "
            "'omegaconf') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr


def test_print_config_shows_the_run_config(capsys):
    assert main(["--cfg", "machine=origin2000_128", "cells=cells_16"]) == 0
    out = capsys.readouterr().out
    assert "nodes: 64" in out and "count: 16" in out


def test_a_study_sweep_can_be_narrowed_or_extended_from_the_command_line():
    assert len(make_plan(["+experiment=smoke"]).runs) == 2 * 2
    assert len(make_plan(["+experiment=smoke", "sweep.params.policy=no_balancers"]).runs) == 2
    plan = make_plan(["+experiment=smoke", '+sweep.params.sim.seed="1,2,3"'])
    assert len(plan.runs) == 2 * 2 * 3
    assert {r.base_seed for r in plan.runs} == {1, 2, 3}


def test_glob_sweeps_every_option_of_a_group():
    options = sorted(p.stem for p in (CONF / "policy").glob("*.yaml"))
    plan = make_plan(["policy=glob(*)"])
    assert sorted(r.columns["policy"] for r in plan.runs) == options
    assert "gang_off" not in {r.columns["policy"]
                              for r in make_plan(["policy=glob(*,exclude=gang*)"]).runs}
