"""A command line -> the validated list of runs, before anything runs or is written.

Hydra's ``compose`` costs ~50-100 ms, so it is called once per distinct *group selection*
(``machine=...``, ``policy=...``, ``+experiment=...``). Plain value overrides
(``policy.periodic_period_ms=50``) are checked once per distinct override string against the
structured config with Hydra's own override code (same grammar, same error messages), then
applied to plain dicts per job; each job is validated by ``SimConfig.from_dict``. Replicates
only change the seed. A 1000-run sweep therefore costs a few compositions, not a thousand.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from disco.framework import compose as _compose
from disco.framework import schema
from disco.framework.execute import RunSpec

if TYPE_CHECKING:
    from omegaconf import DictConfig


class PlanError(ValueError):
    """A usage error in the command line (not a config value): exit code 2 like a ConfigError."""


@dataclass(slots=True)
class Plan:
    study: str
    results_dir: Path  # absolute
    sweep: dict[str, Any]
    ray: dict[str, Any]
    code_version: str
    runs: list[RunSpec] = field(default_factory=list)
    duplicates: int = 0  # jobs that resolved to a config already in the plan

    @property
    def study_dir(self) -> Path:
        return self.results_dir / self.study


def _seed_of(child: Any) -> int:
    return int(child.generate_state(1)[0])


def replicate_seeds(base_seed: int, n: int) -> list[int]:
    """Seeds of replicates 0..n-1: ``SeedSequence(base_seed).spawn(n)``; a prefix is stable in n."""
    import numpy as np

    return [_seed_of(c) for c in np.random.SeedSequence(base_seed).spawn(n)]


def run_key(config: dict[str, Any], code_version: str, task: str) -> str:
    """Hash of the resolved config (seed included), the simulator's code and the task."""
    blob = json.dumps({"config": config, "code": code_version, "task": task},
                      sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _set_path(data: Any, key: str, value: Any) -> None:
    try:
        _set_path_unchecked(data, key, value)
    except (TypeError, KeyError, IndexError, ValueError) as exc:
        raise PlanError(f"cannot set {key}: {exc!r} (does a value sit where a mapping "
                        "is needed?)") from exc


def _set_path_unchecked(data: Any, key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for p in parts[:-1]:
        node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def _del_path(data: Any, key: str) -> None:
    try:
        _del_path_unchecked(data, key)
    except (TypeError, KeyError, IndexError, ValueError) as exc:
        raise PlanError(f"cannot delete {key}: {exc!r}") from exc


def _del_path_unchecked(data: Any, key: str) -> None:
    parts = key.split(".")
    node = data
    for p in parts[:-1]:
        node = node[int(p)] if isinstance(node, list) else node[p]
    if isinstance(node, list):
        del node[int(parts[-1])]
    else:
        del node[parts[-1]]


def _column_value(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return value


class _Composer:
    """Caches compositions per group selection and checked value overrides per string."""

    def __init__(self) -> None:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        self.parser = OverridesParser.create()
        self.groups = _compose.group_names()
        self._base: dict[tuple[str, ...], tuple[DictConfig, dict[str, Any], dict]] = {}
        self._ops: dict[tuple[tuple[str, ...], str], tuple[str, str, Any]] = {}
        self._parsed: dict[str, Any] = {}
        self._scratch: dict[tuple[tuple[str, ...], str], DictConfig] = {}

    def parse(self, overrides: list[str]) -> list[Any]:
        """Parse override strings; each distinct string is parsed once (antlr is ~0.5 ms)."""
        out = []
        for text in overrides:
            ov = self._parsed.get(text)
            if ov is None:
                ov = self._parsed[text] = self.parser.parse_overrides([text])[0]
            out.append(ov)
        return out

    def is_group(self, override: Any) -> bool:
        return override.key_or_group in self.groups or override.package is not None

    def split(self, job: list[str]) -> tuple[list[str], list[str]]:
        groups, values = [], []
        for text, ov in zip(job, self.parse(job), strict=True):
            (groups if self.is_group(ov) else values).append(text)
        return groups, values

    def base(self, groups: tuple[str, ...]) -> tuple[DictConfig, dict[str, Any], dict]:
        hit = self._base.get(groups)
        if hit is None:
            cfg = _compose.compose_dictconfig(list(groups))
            choices = _compose.choices_of(cfg)
            _compose.drop_hydra(cfg)
            plain = _compose.to_container(cfg)
            hit = self._base[groups] = (cfg, plain, choices)
        return hit

    def op(self, groups: tuple[str, ...], text: str) -> tuple[str, str, Any]:
        """Check one value override against the structured config; return a plain dict edit."""
        hit = self._ops.get((groups, text))
        if hit is None:
            from hydra._internal.config_loader_impl import ConfigLoaderImpl
            from omegaconf import Container, OmegaConf

            base = self.base(groups)[0]
            (ov,) = self.parse([text])
            key = ov.key_or_group
            plain_set = not (ov.is_delete() or ov.is_add() or ov.is_force_add())
            if plain_set and not isinstance(OmegaConf.select(base, key, default=None), Container):
                # A leaf: one scratch copy per key serves all its values (a copy costs ~2 ms).
                cfg = self._scratch.get((groups, key))
                if cfg is None:
                    cfg = self._scratch[(groups, key)] = base.copy()
            else:
                cfg = base.copy()
            ConfigLoaderImpl._apply_overrides_to_config([ov], cfg)
            if ov.is_delete():
                hit = ("del", key, None)
            else:
                node = OmegaConf.select(cfg, key)
                if isinstance(node, Container):
                    node = OmegaConf.to_container(node, resolve=True)
                hit = ("set", key, node)
            self._ops[(groups, text)] = hit
        return hit


def _norm(key: str) -> str:
    return key.lstrip("+~")


def expand_jobs(overrides: list[str], multirun: bool,
                composer: _Composer) -> list[tuple[tuple[str, ...], list[str]]]:
    """Command line + the study's ``sweep.params`` -> jobs: (group overrides, value overrides)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    overrides = _compose.apply_size(_expand_globs(overrides, composer))
    parsed = composer.parse(overrides)
    if not multirun:
        for ov in parsed:
            if ov.is_sweep_override():
                raise PlanError(f"'{ov.input_line}' is a sweep: add -m (--multirun) to run one "
                                "job per value")
    cli_jobs = BasicSweeper.split_arguments(parsed, None)[0]
    jobs: list[tuple[tuple[str, ...], list[str]]] = []
    for job in cli_jobs:
        groups, values = composer.split(job)
        _, plain, _ = composer.base(tuple(groups))
        sweep = dict(plain.get("sweep") or {})
        for text in values:  # `sweep.params.x=...` or `~sweep.params` on the command line
            kind, key, value = composer.op(tuple(groups), text)
            if key.startswith("sweep.params") or key == "sweep":
                data = {"sweep": copy.deepcopy(sweep)}
                (_del_path if kind == "del" else _set_path)(data, key, *([] if kind == "del"
                                                                          else [value]))
                sweep = data.get("sweep") or {}
        params = _flatten(sweep.get("params") or {})
        given = {_norm(composer.parse([t])[0].get_key_element()) for t in job}
        extra = [f"{k}={_param_str(v)}" for k, v in params.items() if _norm(k) not in given]
        if extra and not multirun:
            raise PlanError(f"this config sweeps sweep.params ({', '.join(extra)}): add -m "
                            "(--multirun) to run the sweep")
        combos = BasicSweeper.split_arguments(composer.parse(extra), None)[0] if extra else [[]]
        for combo in combos:
            cg, cv = composer.split(combo)
            jobs.append((tuple(groups + cg), values + cv))
    return jobs


def _expand_globs(overrides: list[str], composer: _Composer) -> list[str]:
    """``policy=glob(*)`` -> ``policy=<every option>``: the options are conf/<group>/*.yaml."""
    from hydra.core.override_parser.types import ValueType

    out = []
    for text, ov in zip(overrides, composer.parse(overrides), strict=True):
        if ov.value_type == ValueType.GLOB_CHOICE_SWEEP:
            names = sorted(p.stem for p in (_compose.conf_dir() / ov.key_or_group).glob("*.yaml"))
            chosen = ov.value().filter(names)
            if not chosen:
                raise PlanError(f"'{text}' matches no option of {ov.key_or_group}/")
            text = f"{ov.get_key_element()}={','.join(chosen)}"
        out.append(text)
    return out


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


def make_plan(overrides: list[str], multirun: bool = True,
              argv: list[str] | None = None) -> Plan:
    """Every run of the command line, validated; raises ConfigError / PlanError / Hydra errors."""
    from disco.config import SimConfig
    from disco.framework.provenance import code_version

    composer = _Composer()
    jobs = expand_jobs(overrides, multirun, composer)
    code = code_version(_compose.project_root() / "disco")
    plan: Plan | None = None
    seen: set[str] = set()
    for groups, values in jobs:
        _, plain, choices = composer.base(groups)
        data = copy.deepcopy(plain)
        columns: dict[str, Any] = {k: v for k, v in choices.items()}
        for text in values:
            kind, key, value = composer.op(groups, text)
            if kind == "del":
                _del_path(data, key)
            else:
                _set_path(data, key, value)
            if key.split(".")[0] not in schema.FRAMEWORK_KEYS:
                columns[key] = _column_value(value) if kind == "set" else None
        sim, fw = schema.split_framework(data)
        if fw.get("sensitivity"):
            raise PlanError(f"study '{fw.get('study')}' is a one-at-a-time knob study (its "
                            "'sensitivity' table): run it with `python experiments/reproduce.py "
                            f"{fw.get('study')}`, which plans one sweep per knob")
        cfg = SimConfig.from_dict(sim)
        if "machine" in columns:  # another group may set the machine (workload=solo_1cpu)
            columns["machine"] = cfg.machine.name
        if plan is None:
            results_dir = Path(fw["results_dir"]).expanduser().resolve()
            plan = Plan(study=str(fw["study"]), results_dir=results_dir, sweep=fw["sweep"],
                        ray=fw["ray"], code_version=code)
        task = plan.sweep["task"]
        resolved = cfg.to_dict()
        base_seed, n = cfg.sim.seed, cfg.sim.replicates
        for i, seed in enumerate(replicate_seeds(base_seed, n)):
            run_cfg = copy.deepcopy(resolved)
            run_cfg["sim"]["seed"] = seed
            run_cfg["sim"]["replicates"] = 1
            key = run_key(run_cfg, code, task)
            if key in seen:
                plan.duplicates += 1
                continue
            seen.add(key)
            plan.runs.append(RunSpec(key=key, study=plan.study, config=run_cfg, replicate=i,
                                     seed=seed, base_seed=base_seed, columns=dict(columns)))
    assert plan is not None
    return plan
