"""A command line -> the validated list of runs, before anything runs or is written.

Per-run semantics are Hydra's: each job's value overrides (``policy.borrow_trigger_mb=4``) are
applied to the *unresolved* composed config with Hydra's own override code, and ``${...}`` is
resolved once per job, so an interpolation follows the swept value exactly as
``hydra.compose`` would (on the command line, in a YAML file of ``conf/``, in ``study=...``).

What makes it cheap: Hydra's ``compose`` (~50-100 ms) runs once per distinct *group selection*
(``machine=...``, ``policy=...``, ``+experiment=...``); a job that only sets existing leaves
(the usual ``-m key=a,b,c``) reuses one scratch copy of that composition per set of keys, since
it overwrites every leaf the previous job of the same keys set; anything else (``+key``, ``~key``,
a mapping value) gets a fresh copy. Each job is then validated by ``SimConfig.from_dict``, and
replicates only change the seed.

``Planner`` keeps those caches between calls, so a tuner can plan trial after trial through the
same planner, run keys and cache (``Planner.plan_jobs``).
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from disco.framework import compose as _compose
from disco.framework import schema, tracing
from disco.framework.compose import PlanError
from disco.framework.execute import RunSpec, task_search_path

if TYPE_CHECKING:
    from omegaconf import DictConfig

__all__ = ["Plan", "PlanError", "Planner", "make_plan", "plan_jobs", "replicate_seeds",
           "run_key", "task_digest"]


@dataclass(slots=True)
class Plan:
    results_dir: Path  # absolute
    sweep: dict[str, Any]
    ray: dict[str, Any]
    code_version: str
    runs: list[RunSpec] = field(default_factory=list)
    duplicates: int = 0  # jobs that resolved to a config already in the plan
    studies: list[str] = field(default_factory=list)  # in plan order; a run's is spec.study
    search: tuple[str, ...] = ()  # the config search path, first match wins
    groups: frozenset[str] = frozenset()  # the config groups on it

    @property
    def study(self) -> str:
        """The first study of the plan (most plans have exactly one)."""
        return self.studies[0] if self.studies else "default"

    @property
    def study_dir(self) -> Path:
        return self.results_dir / self.study

    def study_runs(self, study: str) -> list[RunSpec]:
        return [r for r in self.runs if r.study == study]


def _seed_of(child: Any) -> int:
    return int(child.generate_state(1)[0])


def replicate_seeds(base_seed: int, n: int) -> list[int]:
    """Seeds of replicates 0..n-1: ``SeedSequence(base_seed).spawn(n)``; a prefix is stable in n."""
    import numpy as np

    return [_seed_of(c) for c in np.random.SeedSequence(base_seed).spawn(n)]


def run_key(config: dict[str, Any], code_version: str, task: str,
            task_code: str | None = None) -> str:
    """Hash of the resolved config (seed included), the simulator's code and the task (its name,
    and for a custom task the source of its module, ``task_digest``)."""
    parts: dict[str, Any] = {"config": config, "code": code_version, "task": task}
    if task_code is not None:
        parts["task_code"] = task_code
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def task_digest(task: str) -> str | None:
    """Hash of the source file of a custom ``sweep.task``'s module (None for the default task,
    whose code is in the simulator's code version).

    Like joblib hashing a cached function's code: edit your task module and its runs get new
    keys instead of silently reusing stale results. Only that module's file is hashed, not what
    it imports. The module is located, not imported (its package ``__init__`` is, by Python).
    """
    if task == schema.DEFAULT_TASK:
        return None
    module, sep, name = task.partition(":")
    if not sep or not module or not name:
        raise PlanError(f"sweep.task={task}: expected 'module:function'")
    try:
        with task_search_path():
            spec = importlib.util.find_spec(module)
    except (ImportError, ValueError) as exc:
        raise PlanError(f"sweep.task={task}: cannot find module {module} ({exc})") from exc
    if spec is None:
        raise PlanError(f"sweep.task={task}: no module named {module} (a task module is "
                        "imported from sys.path without the working directory, serially and on "
                        "Ray: install it, or put its folder on PYTHONPATH)")
    h = hashlib.sha256(module.encode() + b"\0")
    origin = Path(spec.origin) if spec.origin and spec.has_location else None
    if origin is not None and origin.is_file():
        source = origin.read_bytes()
        h.update(source)
        if origin.suffix == ".py" and not _defines(source, name):
            raise PlanError(f"sweep.task={task}: module {module} ({origin}) defines no {name}")
    return h.hexdigest()[:16]


def _defines(source: bytes, name: str) -> bool:
    """Does a module's source bind ``name`` at its top level (or might it: ``import *``, a module
    ``__getattr__``)? Read, not run: planning never executes a task module."""
    import ast

    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return True  # importing it will say what is wrong, with the line
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if node.name in (name, "__getattr__"):
                return True
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                if alias.name == "*" or (alias.asname or alias.name.split(".")[0]) == name:
                    return True
        else:
            for sub in ast.walk(node):
                if isinstance(sub, ast.Name) and sub.id == name and isinstance(sub.ctx, ast.Store):
                    return True
    return False


def _column_value(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return value


def _select(data: Any, key: str) -> Any:
    """``data["a"]["b"][0]`` for ``"a.b.0"``; None when the path is not there (deleted)."""
    node = data
    for p in key.split("."):
        try:
            node = node[int(p)] if isinstance(node, list) else node[p]
        except (KeyError, IndexError, ValueError, TypeError):
            return None
    return node


def _norm(key: str) -> str:
    return key.lstrip("+~")


@dataclass(slots=True)
class _Base:
    cfg: DictConfig  # composed, unresolved, without the hydra node
    choices: dict[str, str | None]
    sweep_params: dict[str, Any] | None  # resolved sweep.params of the composition alone
    raw: dict[str, Any]  # the composition as a plain dict, ``${...}`` not resolved
    interpolations: tuple[str, ...]  # dotted paths of the ``${...}`` values in ``raw``
    missing: bool  # some value is ``???``


def _interpolations(value: Any, path: str = "") -> list[str]:
    """Dotted paths of every value holding ``${...}`` (``\\${`` escapes too: merely slower)."""
    if isinstance(value, str):
        return [path] if "${" in value else []
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _interpolations(v, f"{path}{k}.")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _interpolations(v, f"{path}{i}.")]
    return []


def _set_path(data: Any, key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for p in parts[:-1]:
        node = node[int(p)] if isinstance(node, list) else node[p]
    if isinstance(node, list):
        node[int(parts[-1])] = value
    else:
        node[parts[-1]] = value


class Planner:
    """Plans runs from override lists; keeps compositions and parsed overrides between calls."""

    def __init__(self, config_dirs: Sequence[str | Path] = ()) -> None:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        from disco.framework.provenance import code_version

        self.search = _compose.search_path(config_dirs)
        self.parser = OverridesParser.create()
        self.groups = _compose.group_names(self.search)
        self.code = code_version(_compose.project_root() / "disco")
        self._base: dict[tuple[str, ...], _Base] = {}
        self._parsed: dict[str, Any] = {}
        self._scratch: dict[tuple[tuple[str, ...], tuple[str, ...]], DictConfig] = {}
        self._leaf: dict[tuple[tuple[str, ...], str], bool] = {}
        self._tasks: dict[str, str | None] = {}
        # `disco tune` plans its trials with a search space in the config (tune.params);
        # anything else refuses one whose keys the job leaves open (``_refuse_search_space``).
        self.tuning = False

    # -- parsing and composition -----------------------------------------------------------

    def parse(self, overrides: Sequence[str]) -> list[Any]:
        """Parse override strings; each distinct string is parsed once (antlr is ~0.5 ms)."""
        out = []
        for text in overrides:
            ov = self._parsed.get(text)
            if ov is None:
                _compose.reject_hydra([text])
                ov = self._parsed[text] = self.parser.parse_overrides([text])[0]
            out.append(ov)
        return out

    def is_group(self, override: Any) -> bool:
        return override.key_or_group in self.groups or override.package is not None

    def split(self, job: Sequence[str]) -> tuple[list[str], list[str]]:
        groups, values = [], []
        for text, ov in zip(job, self.parse(job), strict=True):
            (groups if self.is_group(ov) else values).append(text)
        return groups, values

    def base(self, groups: tuple[str, ...]) -> _Base:
        hit = self._base.get(groups)
        if hit is None:
            from omegaconf import OmegaConf

            cfg = _compose.compose_dictconfig(list(groups), self.search)
            choices = _compose.choices_of(cfg)
            _compose.drop_hydra(cfg)
            params = OmegaConf.to_container(cfg.sweep.params, resolve=True) \
                if cfg.sweep.params else None
            raw = OmegaConf.to_container(cfg, resolve=False)
            assert isinstance(raw, dict)
            paths = tuple(p[:-1] for p in _interpolations(raw))
            hit = self._base[groups] = _Base(cfg, choices, params,  # type: ignore[arg-type]
                                             raw, paths, bool(OmegaConf.missing_keys(cfg)))
        return hit

    def _is_leaf(self, groups: tuple[str, ...], base: DictConfig, key: str) -> bool:
        hit = self._leaf.get((groups, key))
        if hit is None:
            from omegaconf import Container, OmegaConf

            node = OmegaConf.select(base, key, default=None, throw_on_resolution_failure=False)
            hit = self._leaf[(groups, key)] = not isinstance(node, Container)
        return hit

    def configure(self, groups: tuple[str, ...], values: Sequence[str]) -> DictConfig:
        """The composition of ``groups`` with ``values`` applied, unresolved (Hydra's own code:
        same grammar, same checks, same messages). The result may be a reused scratch copy:
        read it before the next call."""
        return self._configure(groups, values)[0]

    def _configure(self, groups: tuple[str, ...], values: Sequence[str]
                   ) -> tuple[DictConfig, bool]:
        from hydra._internal.config_loader_impl import ConfigLoaderImpl

        base = self.base(groups).cfg
        parsed = self.parse(values)
        reusable = all(
            not (ov.is_delete() or ov.is_add() or ov.is_force_add())
            and not isinstance(ov.value(), dict)
            and self._is_leaf(groups, base, ov.key_or_group)
            for ov in parsed)
        if reusable:
            slot = (groups, tuple(ov.key_or_group for ov in parsed))
            cfg = self._scratch.get(slot)
            if cfg is None:
                cfg = self._scratch[slot] = base.copy()
        else:
            cfg = base.copy()
        try:
            ConfigLoaderImpl._apply_overrides_to_config(parsed, cfg)
        except OverflowError:  # OmegaConf converts an int for a float field with float()
            raise _overflow(parsed) from None
        return cfg, reusable

    def fold_deletes(self, groups: tuple[str, ...], values: Sequence[str]
                     ) -> tuple[tuple[str, ...], list[str]]:
        """The same job with each ``~key`` that no other value of it touches moved into the
        composition: Hydra deletes it there, and the job's remaining values, leaves only, can
        reuse one scratch copy (a delete in the values costs a fresh copy of the whole config,
        ~30 ms, per job: the sensitivity study's every knob deletes its table). A delete and
        values on other keys commute, so the config is the same."""
        parsed = self.parse(values)
        keys = [_norm(ov.key_or_group) for ov in parsed]

        def touches(a: str, b: str) -> bool:
            return a == b or a.startswith(f"{b}.") or b.startswith(f"{a}.")

        moved = [i for i, ov in enumerate(parsed)
                 if ov.is_delete() and ov.value() is None
                 and not any(touches(keys[i], k) for j, k in enumerate(keys) if j != i)]
        if not moved:
            return groups, list(values)
        return ((*groups, *(values[i] for i in moved)),
                [v for i, v in enumerate(values) if i not in moved])

    def resolve(self, groups: tuple[str, ...], values: Sequence[str]) -> dict[str, Any]:
        """The job's config as a plain dict, ``${...}`` resolved once, after every override.

        What ``OmegaConf.to_container(cfg, resolve=True)`` gives, at a fraction of its cost
        when the job only sets leaves: the composition's unresolved dict with the set leaves
        and every ``${...}`` (the composition's and the values') replaced by their resolved,
        type-converted values in this job's config.
        """
        from omegaconf import Container, OmegaConf

        cfg, leaves_only = self._configure(groups, values)
        base = self.base(groups)
        parsed = self.parse(values)
        if leaves_only and not base.missing and not any(ov.value() == "???" for ov in parsed):
            data = copy.deepcopy(base.raw)
            paths = [*base.interpolations, *(ov.key_or_group for ov in parsed)]
            try:
                for path in paths:
                    value = OmegaConf.select(cfg, path)
                    if isinstance(value, Container):
                        value = OmegaConf.to_container(value, resolve=True)
                    _set_path(data, path, value)
            except (KeyError, IndexError, TypeError, ValueError):
                pass  # a set leaf under an interpolated node: resolve the whole config below
            else:
                return data
        data = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
        assert isinstance(data, dict)
        return data

    # -- jobs ------------------------------------------------------------------------------

    def expand(self, overrides: Sequence[str], multirun: bool
               ) -> list[tuple[tuple[str, ...], list[str]]]:
        """Command line + the study's ``sweep.params`` -> jobs: (groups, value overrides)."""
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

        _compose.reject_hydra(overrides)
        overrides = _compose.apply_size(self._expand_globs(list(overrides)), self.search)
        parsed = self.parse(overrides)
        if not multirun:
            for ov in parsed:
                if ov.is_sweep_override():
                    raise PlanError(f"'{ov.input_line}' is a sweep: add -m (--multirun) to run "
                                    "one job per value")
        _check_size(_product(parsed), {"max_runs": _given_max_runs(parsed)})
        cli_jobs = BasicSweeper.split_arguments(parsed, None)[0]
        jobs: list[tuple[tuple[str, ...], list[str]]] = []
        for job in cli_jobs:
            groups, values = self.split(job)
            base = self.base(tuple(groups))
            params = base.sweep_params
            if any(_norm(self.parse([t])[0].key_or_group).startswith("sweep")
                   for t in values):  # `sweep.params.x=...` or `~sweep.params` on the line
                from omegaconf import OmegaConf

                cfg = self.configure(tuple(groups), values)
                params = OmegaConf.to_container(cfg.sweep.params, resolve=True) \
                    if "sweep" in cfg and cfg.sweep.get("params") else None
            flat = _flatten(params or {})
            given = {_norm(self.parse([t])[0].get_key_element()) for t in job}
            extra = [f"{k}={_param_str(v)}" for k, v in flat.items() if _norm(k) not in given]
            _compose.reject_hydra(extra)
            if extra and not multirun:
                raise PlanError(f"this config sweeps sweep.params ({', '.join(extra)}): add -m "
                                "(--multirun) to run the sweep")
            if extra:
                _check_size(len(jobs) + _product(self.parse(extra)),
                            {"max_runs": _given_max_runs(parsed) or base.cfg.sweep.max_runs})
            combos = BasicSweeper.split_arguments(self.parse(extra), None)[0] if extra else [[]]
            for combo in combos:
                cg, cv = self.split(combo)
                jobs.append((tuple(groups + cg), values + cv))
        return jobs

    def _expand_globs(self, overrides: list[str]) -> list[str]:
        """``policy=glob(*)`` -> ``policy=<every option>`` of the group on the search path."""
        from hydra.core.override_parser.types import ValueType

        options = _compose.group_options(self.search)
        out = []
        for text, ov in zip(overrides, self.parse(overrides), strict=True):
            if ov.value_type == ValueType.GLOB_CHOICE_SWEEP:
                chosen = ov.value().filter(options.get(ov.key_or_group, []))
                if not chosen:
                    raise PlanError(f"'{text}' matches no option of {ov.key_or_group}/")
                text = f"{ov.get_key_element()}={','.join(chosen)}"
            out.append(text)
        return out

    def task_code(self, task: str) -> str | None:
        if task not in self._tasks:
            self._tasks[task] = task_digest(task)
        return self._tasks[task]

    def plan(self, overrides: Sequence[str], multirun: bool = True) -> Plan:
        """Every run of a command line, validated; raises ConfigError / PlanError / Hydra errors."""
        return self._plan(self.expand(overrides, multirun))

    def plan_jobs(self, jobs: Sequence[Sequence[str]]) -> Plan:
        """One job per override list (no sweep expansion: each list is one config, with its
        ``sim.replicates``), e.g. a tuner's trials; same validation, keys and cache as ``plan``."""
        out = []
        for job in jobs:
            _compose.reject_hydra(job)
            job = _compose.apply_size(list(job), self.search)
            for ov in self.parse(job):
                if ov.is_sweep_override():
                    raise PlanError(f"'{ov.input_line}' is a sweep: plan_jobs takes one config "
                                    "per override list")
            groups, values = self.split(job)
            out.append((tuple(groups), values))
        return self._plan(out)

    def _plan(self, jobs: list[tuple[tuple[str, ...], list[str]]]) -> Plan:
        from disco.config import SimConfig

        plan: Plan | None = None
        seen: set[str] = set()
        for groups, values in jobs:
            base = self.base(groups)
            data = self.resolve(*self.fold_deletes(groups, values))
            columns: dict[str, Any] = dict(base.choices)
            for text in values:
                key = _norm(self.parse([text])[0].key_or_group)
                if key.split(".")[0] not in schema.FRAMEWORK_KEYS:
                    columns[key] = _column_value(_select(data, key))
            sim, fw = schema.split_framework(data)
            schema.check_framework(fw)
            if fw.get("sensitivity"):
                raise PlanError(f"study '{fw.get('study')}' is a one-at-a-time knob study (its "
                                "'sensitivity' table): run it with `python "
                                f"experiments/reproduce.py {fw.get('study')}`, which plans one "
                                "sweep per knob")
            if not self.tuning:
                _refuse_search_space(fw, {_norm(self.parse([t])[0].key_or_group)
                                          for t in (*groups, *values)})
            cfg = SimConfig.from_dict(sim)
            if "machine" in columns:  # another group may set the machine (workload=solo_1cpu)
                columns["machine"] = cfg.machine.name
            if plan is None:
                plan = Plan(results_dir=Path(fw["results_dir"]).expanduser().resolve(),
                            sweep=fw["sweep"], ray=fw["ray"], code_version=self.code,
                            search=tuple(str(c.path) for c in self.search),
                            groups=self.groups)
            else:
                _check_sweep_level(plan, fw)
            study = str(fw["study"])
            if study not in plan.studies:
                plan.studies.append(study)
            task = plan.sweep["task"]
            task_code = self.task_code(task)
            trace = tracing.options(fw.get("trace"), task, schema.DEFAULT_TASK)
            resolved = cfg.to_dict()
            base_seed, n = cfg.sim.seed, cfg.sim.replicates
            # the first job's replicates times the jobs: the size, before any is planned
            _check_size(len(jobs) * n if not plan.runs else len(plan.runs) + n, plan.sweep)
            for i, seed in enumerate(replicate_seeds(base_seed, n)):
                run_cfg = copy.deepcopy(resolved) if n > 1 else resolved
                run_cfg["sim"]["seed"] = seed
                run_cfg["sim"]["replicates"] = 1
                key = run_key(run_cfg, self.code, task, task_code)
                if key in seen:
                    plan.duplicates += 1
                    continue
                seen.add(key)
                plan.runs.append(RunSpec(key=key, study=study, config=run_cfg, replicate=i,
                                         seed=seed, base_seed=base_seed, columns=dict(columns),
                                         trace=tracing.for_replicate(trace, i)))
        if plan is None:
            raise PlanError("nothing to plan: no jobs")
        return plan


def _product(parsed: list[Any]) -> int:
    """How many jobs the sweeps among ``parsed`` expand to, without expanding them."""
    import math

    from hydra.core.override_parser.types import ChoiceSweep, RangeSweep

    total = 1
    for ov in parsed:
        if not ov.is_sweep_override():
            continue
        value = ov.value()
        if isinstance(value, RangeSweep):
            start, stop = float(value.start or 0), float(value.stop or 0)
            total *= max(0, math.ceil((stop - start) / float(value.step or 1)))
        elif isinstance(value, ChoiceSweep):
            total *= len(value.list)
    return total


def _given_max_runs(parsed: list[Any]) -> int | None:
    for ov in parsed:
        if _norm(ov.key_or_group) == "sweep.max_runs" and isinstance(ov.value(), int):
            return int(ov.value())
    return None


def _check_size(runs: int, sweep: dict[str, Any]) -> None:
    """Refuse a sweep of more than ``sweep.max_runs`` runs before planning them in memory."""
    limit = sweep.get("max_runs") or schema.SweepConfig().max_runs
    if runs > limit:
        raise PlanError(f"sweep.max_runs={limit}: this sweep has about {runs} runs (each is "
                        f"planned in memory, ~7 KB and ~1 ms, before any starts); narrow it, or "
                        f"raise the limit: sweep.max_runs={runs}")


def _overflow(parsed: list[Any]) -> Exception:
    """The override whose integer is beyond a float's range, as a ConfigError naming it."""
    from disco.config import ConfigError

    for ov in parsed:
        value = ov.value()
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2.0**1023:
            return ConfigError(_norm(ov.key_or_group), value,
                               "beyond the range of a float (about 1.8e308)")
    return ConfigError("<override>", " ".join(ov.input_line for ov in parsed),
                       "a number beyond the range of a float (about 1.8e308)")


def _refuse_search_space(fw: dict[str, Any], given: set[str]) -> None:
    """A config with a search space (``tune.params``) is a tuning: running it as one config
    would silently drop the space, unless the job fixes every key of it (as the overrides
    ``disco tune`` prints for its best trial do)."""
    space = _flatten((fw.get("tune") or {}).get("params") or {})
    open_keys = [k for k in space if _norm(k) not in given]
    if open_keys:
        raise PlanError(f"study '{fw.get('study')}' has a search space (tune.params: "
                        f"{', '.join(open_keys)}): run it with `disco tune`, or give each of "
                        "those keys a value")


def _check_sweep_level(plan: Plan, fw: dict[str, Any]) -> None:
    """``results_dir``, ``sweep.*`` (but ``params``) and ``ray.*`` are the whole sweep's: a job
    that gives them another value would be silently ignored, so it is an error."""
    first = {"results_dir": str(plan.results_dir), "sweep": plan.sweep, "ray": plan.ray}
    given = {"results_dir": str(Path(fw["results_dir"]).expanduser().resolve()),
             "sweep": fw["sweep"], "ray": fw["ray"]}
    for name in first:
        a, b = first[name], given[name]
        if isinstance(a, dict):
            a = {k: v for k, v in a.items() if k != "params"}
            b = {k: v for k, v in b.items() if k != "params"}
            for k in dict.fromkeys([*a, *b]):
                if a.get(k) != b.get(k):
                    raise PlanError(f"{name}.{k} takes one value per sweep, got {a.get(k)!r} "
                                    f"and {b.get(k)!r}: run one sweep per value")
        elif a != b:
            raise PlanError(f"{name} takes one value per sweep, got {a!r} and {b!r}: run one "
                            "sweep per value")


def _flatten(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"policy": {"gang": "true,false"}}`` (from ``sweep.params.policy.gang=...``) -> dotted."""
    out: dict[str, Any] = {}
    for k, v in params.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _param_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(_param_str(v) for v in value)
    return str(value)


def make_plan(overrides: Sequence[str], multirun: bool = True, argv: list[str] | None = None,
              config_dirs: Sequence[str | Path] = ()) -> Plan:
    """Every run of the command line, validated; raises ConfigError / PlanError / Hydra errors.

    ``config_dirs``: extra config folders searched before ``conf/`` (``--config-dir``).
    """
    return Planner(config_dirs).plan(list(overrides), multirun)


def plan_jobs(jobs: Sequence[Sequence[str]], config_dirs: Sequence[str | Path] = ()) -> Plan:
    """One config per override list (see ``Planner.plan_jobs``)."""
    return Planner(config_dirs).plan_jobs(jobs)
