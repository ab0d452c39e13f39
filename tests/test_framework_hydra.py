"""Hydra semantics per run, Hydra's own settings refused, and the habits of a Hydra app:
--cfg/--package, --info, --config-dir / $DISCO_CONF_DIR, tab completion, --version, hints."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys

import pytest
from framework_helpers.common import ROOT, env

from disco.cli import main
from disco.config import SimConfig
from disco.framework import schema
from disco.framework.plan import Planner, make_plan

CONF = ROOT / "conf"
LINKED = """\
# A user's policy whose lend floor follows its borrow trigger.
defaults:
  - cellular_disco
lend_floor_mb: ${policy.borrow_trigger_mb}
"""


@pytest.fixture(autouse=True)
def _private_sweep_cache(tmp_path_factory, monkeypatch):
    """Keep the re-run manifests (disco/framework/fastpath.py) out of ~/.cache."""
    monkeypatch.setenv("DISCO_CACHE_DIR", str(tmp_path_factory.mktemp("sweep_cache")))
    monkeypatch.delenv("DISCO_CONF_DIR", raising=False)


@pytest.fixture
def user_conf(tmp_path):
    """A user's config folder: a new policy option, and one that replaces a project option."""
    d = tmp_path / "user_conf"
    (d / "policy").mkdir(parents=True)
    (d / "policy" / "linked.yaml").write_text(LINKED)
    (d / "policy" / "no_balancers.yaml").write_text(
        "name: cellular_disco\nidle_balancer: false\nperiodic_balancer: false\ngang: false\n")
    return d


def _hydra_compose(conf_dir, overrides):
    """What Hydra itself composes for one job (the reference)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    schema.register()
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True)


def test_interpolation_follows_swept_value_like_hydra_compose(tmp_path, user_conf):
    # Reference tree for hydra.compose: conf/ with the user's files copied in.
    ref = tmp_path / "ref_conf"
    shutil.copytree(CONF, ref)
    shutil.copytree(user_conf, ref, dirs_exist_ok=True)
    sweeps = {"policy": ["linked", "cellular_disco"], "policy.borrow_trigger_mb": ["4", "8"]}
    fixed = ["study=bt_${policy.borrow_trigger_mb}",  # an interpolation on the command line
             "policy.borrow_unit_mb=${policy.borrow_trigger_mb}",
             "sim.duration_s=${policy.borrow_trigger_mb}"]  # int into a float: converted
    line = [f"{k}={','.join(v)}" for k, v in sweeps.items()] + fixed
    plan = make_plan(line, config_dirs=[user_conf])
    assert len(plan.runs) == 4
    got = {(r.columns["policy"], r.config["policy"]["borrow_trigger_mb"]): r for r in plan.runs}
    for values in itertools.product(*sweeps.values()):
        job = [f"{k}={v}" for k, v in zip(sweeps, values, strict=True)] + fixed
        sim, fw = schema.split_framework(_hydra_compose(ref, job))
        want = SimConfig.from_dict(sim).to_dict()
        run = got[(values[0], int(values[1]))]
        want["sim"].update(seed=run.seed, replicates=1)  # replicate 0's spawned seed
        assert run.config == want, job
        assert run.study == fw["study"] == f"bt_{values[1]}"
    linked = [r for r in plan.runs if r.columns["policy"] == "linked"]
    assert sorted(r.config["policy"]["lend_floor_mb"] for r in linked) == [4, 8]
    assert {r.config["sim"]["duration_s"] for r in plan.runs} == {4.0, 8.0}
    assert plan.studies == ["bt_4", "bt_8"]


def test_a_deleted_key_gives_hydra_compose_s_config_whatever_else_the_job_sets():
    """``~key`` beside leaf values (the sensitivity study's every knob deletes its table) is
    folded into the composition (``Planner.fold_deletes``): the configs stay Hydra's."""
    line = ["+experiment=sensitivity", "~sensitivity", "policy.gang=true,false",
            "sim.duration_s=2"]
    plan = make_plan(line)
    assert len(plan.runs) == 8  # the study's 4 replicates, two values
    for run in plan.runs:
        gang = "true" if run.config["policy"]["gang"] else "false"
        job = ["+experiment=sensitivity", "~sensitivity", f"policy.gang={gang}",
               "sim.duration_s=2"]
        sim, fw = schema.split_framework(_hydra_compose(CONF, job))
        assert "sensitivity" not in fw
        want = SimConfig.from_dict(sim).to_dict()
        want["sim"].update(seed=run.seed, replicates=1)
        assert run.config == want, job
    planner = Planner()
    groups = ("+experiment=sensitivity",)
    assert planner.fold_deletes(groups, ["~sensitivity", "policy.gang=true"]) == (
        (*groups, "~sensitivity"), ["policy.gang=true"])
    # a delete the job's other values touch keeps its place among them (Hydra's order)
    touching = ["sensitivity.dead_below=0.5", "~sensitivity"]
    assert planner.fold_deletes(groups, touching) == (groups, touching)


def test_cfg_shows_the_interpolated_value_of_the_command_line(capsys):
    assert main(["--cfg", "policy.borrow_trigger_mb=4",
                 "policy.lend_floor_mb=${policy.borrow_trigger_mb}", "-p",
                 "policy.lend_floor_mb"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "4"


HYDRA = [
    ("hydra/sweeper=optuna", "disco tune"),
    ("+hydra/sweeper=optuna", "disco tune"),
    ("+hydra/launcher=ray", "ray.address"),
    ("+hydra.run.dir=out", "results_dir"),
    ("hydra.sweep.dir=out", "results_dir"),
    ("hydra.job.chdir=true", "working directory"),
    ("+hydra.searchpath=[file:///x]", "--config-dir"),
]


@pytest.mark.parametrize(("override", "hint"), HYDRA)
def test_hydra_keys_are_rejected_with_a_hint(tmp_path, capsys, override, hint):
    results = tmp_path / "results"
    assert main(["-m", override, f"results_dir={results}"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert override in err and "not a @hydra.main app" in err and hint in err
    assert not results.exists()


def test_hydra_settings_in_a_config_file_are_rejected_too(tmp_path, capsys):
    d = tmp_path / "conf_extra"
    (d / "experiment").mkdir(parents=True)
    (d / "experiment" / "mine.yaml").write_text(
        "# @package _global_\nstudy: mine\nhydra:\n  run:\n    dir: somewhere\n")
    assert main(["-cd", str(d), "--cfg", "+experiment=mine"]) == 2
    err = capsys.readouterr().err
    assert "hydra.run.dir" in err and "results_dir" in err


def test_hydra_flags_and_typos_get_a_hint(capsys):
    for argv, hint in ((["-cn", "other"], "--config-dir"), (["--config-name=x"], "--config-dir"),
                       (["--dryrun"], "did you mean --dry-run"), (["--cfg", "hydra"], "--cfg job"),
                       (["--resolve"], "resolved")):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert hint in err and len(err.strip().splitlines()) == 1, (argv, err)


def test_cfg_job_prints_the_framework_keys_and_package_selects_one(tmp_path, capsys):
    assert main(["-m", "--cfg", "job", f"results_dir={tmp_path}", "+experiment=smoke"]) == 0
    import yaml

    data = yaml.safe_load(capsys.readouterr().out)
    assert data["study"] == "smoke" and data["results_dir"] == str(tmp_path)
    assert data["sweep"]["params"] == {"policy": "cellular_disco,no_balancers"}
    assert data["ray"]["address"] == "local" and data["machine"]["nodes"] == 16
    assert main(["--cfg", "-p", "ray"]) == 0
    ray = yaml.safe_load(capsys.readouterr().out)
    assert ray["address"] == "local" and "study" not in ray
    assert main(["-c", "job", "--package", "sweep.fail_fast"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "false"
    assert main(["--cfg", "-p", "policy.nope"]) == 2
    assert "policy.nope" in capsys.readouterr().err


def test_cfg_all_prints_every_run(capsys):
    assert main(["-m", "--cfg", "all", "policy.gang=true,false", "-p", "policy.gang"]) == 0
    docs = capsys.readouterr().out.split("---\n")
    assert [d.strip().splitlines()[-1] for d in docs] == ["true", "false"]


def test_info_lists_every_group_and_option_and_the_search_path(capsys, user_conf):
    assert main(["--info"]) == 0
    out = capsys.readouterr().out
    for path in CONF.glob("*/*.yaml"):
        line = next(x for x in out.splitlines() if x.strip().startswith(f"{path.parent.name}:"))
        assert path.stem in [w.rstrip("*") for w in line.split()], (path, line)
    assert "origin2000_32*" in out and "experiment:" in out
    assert main(["--info", "searchpath", "-cd", str(user_conf)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert str(user_conf) in lines[1] and str(CONF) in lines[2]  # first match wins: user's


def test_config_dir_adds_user_options(user_conf, monkeypatch):
    plan = make_plan(["policy=linked,no_balancers", "machine=origin2000_128", "cells=cells_16"],
                     config_dirs=[user_conf])
    by = {r.columns["policy"]: r.config["policy"] for r in plan.runs}
    assert by["linked"]["lend_floor_mb"] == by["linked"]["borrow_trigger_mb"]
    assert by["no_balancers"]["gang"] is False  # the user's no_balancers wins over conf/'s
    assert {r.config["machine"]["nodes"] for r in plan.runs} == {64}  # conf/ is still there
    assert make_plan(["policy=no_balancers"]).runs[0].config["policy"]["gang"] is True
    monkeypatch.setenv("DISCO_CONF_DIR", str(user_conf))  # the same, from the environment
    plan = make_plan(["policy=linked", "policy.borrow_trigger_mb=8", "+experiment=smoke"])
    assert {r.config["policy"]["lend_floor_mb"] for r in plan.runs} == {8}


def test_a_config_dir_that_does_not_exist_exits_2(tmp_path, capsys):
    assert main(["-cd", str(tmp_path / "nope"), "--dry-run"]) == 2
    assert "nope: not a directory" in capsys.readouterr().err


def test_shell_completion_offers_groups_options_and_keys(tmp_path, user_conf):
    from disco.framework.completion import candidates

    assert "machine=" in candidates("mach") and "+experiment=" in candidates("exp")
    assert candidates("machine=origin2000_1") == ["machine=origin2000_1024",
                                                  "machine=origin2000_128"]
    assert "policy.gang=" in candidates("policy.ga")
    assert candidates("policy.gang=") == ["policy.gang=true", "policy.gang=false"]
    assert "sweep.fail_fast=" in candidates("sweep.") and "ray.address=" in candidates("ray.")
    assert "policy=linked" in candidates("policy=l", [user_conf])
    # End to end, as bash calls it (argcomplete's protocol).
    out = tmp_path / "completions"
    line = "disco polic"
    p = subprocess.run([sys.executable, "-m", "disco.cli"], cwd=ROOT, capture_output=True,
                       text=True, timeout=60, env={**env(), "_ARGCOMPLETE": "1",
                                                   "COMP_LINE": line,
                                                   "COMP_POINT": str(len(line)),
                                                   "_ARGCOMPLETE_STDOUT_FILENAME": str(out)})
    assert p.returncode == 0, p.stderr
    words = out.read_text().split("\x0b")
    assert "policy=" in words and "policy.gang=" in words
    script = subprocess.run([sys.executable, "-m", "disco.cli", "--shell-completion", "bash"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60, env=env())
    assert script.returncode == 0 and "complete" in script.stdout and "disco" in script.stdout


def test_version_names_disco_and_its_libraries(capsys):
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("disco ") and "hydra-core" in out and "ray" in out


def test_hydra_ray_launcher_is_not_a_dependency():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    deps = " ".join(project["project"]["dependencies"])
    assert "hydra-ray-launcher" not in deps and "tqdm" in deps and "argcomplete" in deps
    assert project["tool"]["setuptools"]["packages"]["find"]["include"] == ["disco*"]
    assert not any(os.path.exists(ROOT / p) for p in ("hydra_plugins",))
