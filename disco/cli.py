# PYTHON_ARGCOMPLETE_OK
"""``disco``: one run, or a sweep on Ray, from Hydra-style overrides.

    disco                                        # one run of the default config
    disco machine=origin2000_128 cells=cells_16 workload=mix_shifting
    disco -m policy.periodic_period_ms=50,100 sim.replicates=3   # a sweep, on a local Ray
    disco -m +experiment=cpu_balance             # a named study (conf/experiment/)
    disco -m +experiment=cpu_balance ray.address=auto            # on an existing cluster
    disco --cfg job -p policy policy=gang_off    # print (part of) the config a run gets
    disco --info                                 # every config group and its options
    disco -cd ~/my_conf policy=mine              # add a config folder (its options win)
    disco tune +experiment=tune_borrowing        # tune with Optuna instead of a grid (below)
    disco tune 'policy.borrow_trigger_mb=int(interval(0,64))' objective=vm_runtime_mean_s
    disco ray up                                 # a local cluster; sweeps: ray.address=auto
    disco ray status                             # is it up, where, how many CPUs
    disco ray down                               # stop it (only it)

Exit codes: 0 all runs ok, 1 some run failed, 2 bad command line or config (nothing written).
`disco tune`: 0 when some trial completed, 1 when none did, 2 as above.
`disco ray`: 0 done (status: up), 1 nothing to do or stale (up twice, down or status with no
cluster), 2 bad command line.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
import time
from typing import Any

CFG_CHOICES = ("job", "all")
INFO_CHOICES = ("groups", "searchpath", "all")
SHELLS = ("bash", "zsh", "fish", "tcsh")

# Hydra's own flags that mean nothing here, and what to do instead.
HYDRA_FLAGS = {
    "-cn": "disco always composes conf/config.yaml: choose options with group=option, or add "
           "a config folder with --config-dir DIR",
    "--config-name": "disco always composes conf/config.yaml: choose options with "
                     "group=option, or add a config folder with --config-dir DIR",
    "-cp": "use --config-dir DIR (it adds a folder to the config search path)",
    "--config-path": "use --config-dir DIR (it adds a folder to the config search path)",
    "--resolve": "disco --cfg always prints the resolved config (what the run gets)",
    "-hh": "disco --help lists disco's flags, disco --info its config groups",
    "--hydra-help": "disco --help lists disco's flags, disco --info its config groups",
    "-r": "without -m, disco runs one config",
    "--run": "without -m, disco runs one config",
    "--experimental-rerun": "run the same command again: complete runs are skipped",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, and a hint for flags we do not have
        self.exit(2, f"disco: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="disco", description="Simulate Cellular Disco; sweep configs on Ray.",
        formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False,
        epilog="Overrides use Hydra syntax: group=option, key=value, +key=value, ~key, "
               "key=a,b,c, range(), glob() (with -m). `disco --info` lists the groups; "
               "`disco tune --help` tunes with Optuna; `disco ray up|status|down` keeps a local "
               "cluster for sweeps to attach to (ray.address=auto); see docs/framework.md.")
    p.add_argument("-m", "--multirun", action="store_true",
                   help="expand sweeps (a,b,c; range(); sweep.params) and run them on Ray")
    p.add_argument("-c", "--cfg", choices=(*CFG_CHOICES, "hydra"), metavar="{job,all}",
                   help="print the resolved config and exit: job = the first run's (with the "
                        "framework keys), all = every run's")
    p.add_argument("-p", "--package", metavar="KEY",
                   help="with --cfg: print only this key (policy, sweep, machine.nodes ...)")
    p.add_argument("-i", "--info", choices=INFO_CHOICES, metavar="{groups,searchpath,all}",
                   help="list the config groups and options, or the config search path")
    p.add_argument("-cd", "--config-dir", action="append", default=[], metavar="DIR",
                   help="add a config folder, searched before conf/ (its options win); "
                        "repeatable; $DISCO_CONF_DIR does the same")
    p.add_argument("--dry-run", action="store_true",
                   help="validate and list the runs without running them")
    p.add_argument("--version", action="store_true", help="print the versions and exit")
    p.add_argument("-sc", "--shell-completion", metavar="SHELL",
                   help="print the tab-completion script for SHELL (bash, zsh, fish, tcsh): "
                        'eval "$(disco --shell-completion bash)"')
    ov = p.add_argument("overrides", nargs="*", help="Hydra overrides")
    ov.completer = _complete  # type: ignore[attr-defined]
    return p


def _complete(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> list[str]:
    from disco.framework.completion import candidates

    return candidates(prefix, getattr(parsed_args, "config_dir", None) or [])


def _normalize(argv: list[str]) -> list[str]:
    """Hydra's optional flag values: ``--cfg`` alone is ``--cfg job``, ``--info`` alone
    ``--info groups``, and a following override is not mistaken for the value."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        nxt = argv[i + 1] if i + 1 < len(argv) else None
        for flags, choices, default in ((("-c", "--cfg"), CFG_CHOICES + ("hydra",), "job"),
                                        (("-i", "--info"), INFO_CHOICES, "groups")):
            if a in flags:
                if nxt in choices:
                    a, i = f"{flags[1]}={nxt}", i + 1
                else:
                    a = f"{flags[1]}={default}"
        if a in ("-sc", "--shell-completion") and (nxt is None or nxt.startswith("-")):
            a = "--shell-completion=bash"
        out.append(a)
        i += 1
    return out


def _unknown_flag_hint(flag: str) -> str:
    name = flag.split("=", 1)[0]
    if name in HYDRA_FLAGS:
        return f"{name}: not a disco flag ({HYDRA_FLAGS[name]})"
    known = [o for a in _parser()._actions for o in a.option_strings]
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]}?" if close else "see disco --help"
    return f"unrecognized argument {name}: {hint} (overrides are key=value, no leading -)"


def format_error(exc: BaseException) -> str:
    """The message and its causes: Hydra wraps OmegaConf's error, which names the full key."""
    import yaml

    if isinstance(exc, yaml.MarkedYAMLError):  # malformed YAML in the conf tree: where, what
        mark = exc.problem_mark or exc.context_mark
        where = f"{mark.name}:{mark.line + 1}:{mark.column + 1}" if mark else "a config file"
        what = " ".join(str(x) for x in (exc.context, exc.problem) if x)
        return f"{where}: malformed YAML: {what}"
    # One line: OmegaConf's own lines (full_key, reference_type, object_type) folded in.
    parts: list[str] = []
    cause: BaseException | None = exc
    depth = 0
    while cause is not None and depth < 4:
        for line in str(cause).splitlines():
            text = line.strip()
            if text and text not in parts and not text.startswith(("reference_type=",
                                                                    "object_type=")):
                parts.append(text)
        cause, depth = cause.__cause__, depth + 1
    groups: list[list[str]] = []  # "Available options in 'policy':" and the lines it lists
    for part in parts:
        if groups and groups[-1][0].endswith(":") and not part.endswith(":"):
            groups[-1].append(part)
        else:
            groups.append([part])
    return "; ".join(g[0] if len(g) == 1 else f"{g[0]} {', '.join(g[1:])}" for g in groups)


def _config_errors() -> tuple[type[BaseException], ...]:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException
    from yaml import YAMLError

    from disco.config import ConfigError
    from disco.framework.plan import PlanError

    return ConfigError, PlanError, HydraException, OmegaConfBaseException, YAMLError


def _metrics_table(rows: list[dict[str, Any]]) -> str:
    names: list[str] = []
    for r in rows:
        names += [k for k, v in r.items() if k not in names and isinstance(v, int | float)
                  and not isinstance(v, bool) and "." not in k  # override values, config.*
                  and k not in ("replicate", "seed", "base_seed", "pid")]
    head = ["metric"] + [f"replicate {r.get('replicate')}" for r in rows]
    lines = [[n] + [_fmt(r.get(n)) for r in rows] for n in names]
    widths = [max(len(x[i]) for x in [head, *lines]) for i in range(len(head))]
    out = ["  ".join(c.ljust(w) for c, w in zip(head, widths, strict=True))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    return "\n".join(out)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return "" if v is None else str(v)


# main() of the console script (no argv given): this process ends when it returns.
_whole_process = False


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``disco``; returns the exit code."""
    if "_ARGCOMPLETE" in os.environ:  # a <TAB> in the shell: answer and exit
        import argcomplete

        argcomplete.autocomplete(_parser())
    global _whole_process
    _whole_process = argv is None
    try:
        code = _main(argv)
        ray_backend = sys.modules.get("disco.framework.ray_backend")
        if _whole_process and ray_backend is not None and ray_backend.left:
            # A private Ray left to its reaper (``ray_backend.leave_to_reaper``): end now,
            # without Ray's exit handler (ray.shutdown); the reaper stops that Ray.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        return code
    except KeyboardInterrupt:
        print("\ndisco: interrupted; finished runs are kept, run the same command to resume",
              file=sys.stderr)
        ray_backend = sys.modules.get("disco.framework.ray_backend")
        return 128 + int(getattr(ray_backend, "stopped_by", None) or 2)
    except BrokenPipeError:  # `disco --dry-run ... | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _version() -> str:
    from importlib import metadata

    def v(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "?"

    libs = ", ".join(f"{n} {v(n)}" for n in ("hydra-core", "omegaconf", "ray", "polars"))
    return f"disco {v('disco')} (Python {sys.version.split()[0]}; {libs})"


def _main(argv: list[str] | None) -> int:
    raw = list(argv if argv is not None else sys.argv[1:])
    if raw[:1] == ["tune"]:
        return _tune(raw[1:])
    if raw[:1] == ["ray"]:
        from disco.framework import ray_cluster

        return ray_cluster.main(raw[1:])
    hydra_flags = [a for a in raw if a.split("=", 1)[0] in HYDRA_FLAGS]
    if hydra_flags:  # before argparse, which would read -cn as -c n
        print(f"disco: error: {_unknown_flag_hint(hydra_flags[0])}", file=sys.stderr)
        return 2
    args, unknown = _parser().parse_known_intermixed_args(_normalize(raw))
    flags = [u for u in unknown if u.startswith("-")]
    if flags:
        print(f"disco: error: {_unknown_flag_hint(flags[0])}", file=sys.stderr)
        return 2
    args.overrides += unknown
    if args.version:
        print(_version())
        return 0
    if args.shell_completion is not None:
        import argcomplete

        shell = args.shell_completion.removeprefix("install=")
        if shell not in SHELLS:
            print(f"disco: error: --shell-completion {shell}: expected one of "
                  f"{', '.join(SHELLS)}", file=sys.stderr)
            return 2
        print(argcomplete.shellcode(["disco"], shell=shell))
        return 0
    if args.cfg == "hydra":
        print("disco: error: --cfg hydra: disco is not a @hydra.main app and has no Hydra job "
              "config; --cfg job (the first run's config) or --cfg all (every run's)",
              file=sys.stderr)
        return 2
    if args.package and not args.cfg:
        print("disco: error: --package goes with --cfg (disco --cfg job -p policy)",
              file=sys.stderr)
        return 2
    if args.info:
        return _info(args.info, args.config_dir)
    from disco.framework.schema import TUNE_KEYS

    tune_keys = [o for o in args.overrides
                 if o.lstrip("+~").split("=", 1)[0].split(".")[0] in TUNE_KEYS]
    if tune_keys:
        print(f"disco: error: {tune_keys[0]}: objective, direction and tune.* are read by "
              "`disco tune` only (disco tune <search space> objective=...)", file=sys.stderr)
        return 2
    cmd = ["disco", *raw]
    if args.multirun and not (args.cfg or args.dry_run):
        t0 = time.perf_counter()
        from disco.framework import fastpath

        hit = fastpath.lookup(args.overrides, args.config_dir)
        if hit is not None:
            n = len(hit["keys"])
            print(f"{hit['label']}: {n} runs: 0 done, {n} skipped (already complete), 0 failed "
                  f"in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
            for path in hit["runs_paths"]:
                print(path)
            return 0
    from disco.framework.plan import make_plan

    try:
        plan = make_plan(args.overrides, multirun=args.multirun, config_dirs=args.config_dir)
        if args.cfg:
            return _print_cfg(plan, args.cfg, args.package)
    except _config_errors() as exc:
        print(f"disco: error: {format_error(exc)}", file=sys.stderr)
        return 2
    if args.dry_run:
        where = ", ".join(str(plan.results_dir / s) for s in plan.studies)
        print(f"{len(plan.runs)} runs in {where}"
              + (f" ({plan.duplicates} duplicate configs dropped)" if plan.duplicates else ""))
        for spec in plan.runs:
            cols = " ".join(f"{k}={v}" for k, v in spec.columns.items())
            study = f"  study={spec.study}" if len(plan.studies) > 1 else ""
            print(f"  {spec.key}  replicate={spec.replicate} seed={spec.seed}{study}  {cols}")
        return 0
    return _run(plan, args, cmd)


def _run(plan: Any, args: argparse.Namespace, cmd: list[str]) -> int:
    from disco.framework import ray_backend
    from disco.framework.ray_backend import RayStartError
    from disco.framework.results import WriteError
    from disco.framework.sweep import run_sweep

    ray_backend.cli_signals = True
    ray_backend.leave_to_reaper = _whole_process
    try:  # without -m: in this process, no Ray (one run does not pay for starting a cluster)
        outcome = run_sweep(plan, argv=cmd, serial=None if args.multirun else True)
    except RayStartError as exc:
        print(f"disco: error: {exc}", file=sys.stderr)
        return 2
    except WriteError as exc:  # results_dir not writable, a full disk: finished runs are kept
        print(f"disco: error: {exc.strerror}; finished runs are kept, run the same command "
              "to resume", file=sys.stderr)
        return 2
    if not args.multirun and plan.runs:
        cols = " ".join(f"{k}={v}" for k, v in plan.runs[0].columns.items())
        print(f"config: {cols}")
        print(_metrics_table(outcome.rows))
        for r in outcome.rows:
            print(f"run {r['key']}: {r['status']} -> "
                  f"{plan.results_dir / r['study'] / 'runs' / r['key']}")
            if r.get("trace_path"):
                print(f"trace: {r['trace_path']} (open it in ui.perfetto.dev or "
                      "chrome://tracing)")
    label = outcome.study if len(plan.studies) == 1 else ", ".join(plan.studies)
    if outcome.stopped:
        print(f"disco: stopped at the first failure (sweep.fail_fast=true): {outcome.not_run} "
              "runs not run; finished runs are kept", file=sys.stderr)
    print(f"{label}: {outcome.total} runs: {outcome.done} done, {outcome.skipped} "
          f"skipped (already complete), {outcome.failed} failed in {outcome.wall_s:.1f} s",
          file=sys.stderr)
    for path in outcome.runs_paths.values():
        print(path)
    if (outcome.runs_paths and args.multirun and outcome.ok
            and not plan.sweep.get("force")):
        from disco.framework import fastpath

        fastpath.remember(args.overrides, args.config_dir, label, plan.results_dir,
                          list(outcome.runs_paths.values()),
                          [(s.study, s.key) for s in plan.runs])
    return 1 if outcome.failed or outcome.stopped else 0


def _tune(raw: list[str]) -> int:
    """``disco tune``: the search space and fixed overrides -> an Optuna study (tune.py)."""
    p = _Parser(prog="disco tune", allow_abbrev=False,
                formatter_class=argparse.RawDescriptionHelpFormatter,
                description="Tune a config with Optuna: the sweep overrides are the search "
                            "space, the others are fixed; trials run like any disco run.",
                epilog="Search space (Hydra's grammar, as its Optuna sweeper reads it): "
                       "key=interval(a,b), key=int(interval(a,b)), key=tag(log,interval(a,b)), "
                       "key=choice(x,y) or x,y, key=range(a,b,step), group=choice(a,b). "
                       "objective=<metric> or [m1,m2], direction=minimize|maximize or a list, "
                       "tune.trials=N, tune.sampler=auto|tpe|nsga2|random, tune.seed=S. "
                       "See docs/framework.md (Tuning).")
    p.add_argument("-cd", "--config-dir", action="append", default=[], metavar="DIR",
                   help="add a config folder, searched before conf/")
    p.add_argument("--dry-run", action="store_true",
                   help="check the command and print the search space; nothing runs")
    p.add_argument("overrides", nargs="*", help="Hydra overrides and the search space")
    args, unknown = p.parse_known_intermixed_args(raw)
    flags = [u for u in unknown if u.startswith("-")]
    if flags:
        print(f"disco tune: error: unrecognized argument {flags[0]} (see disco tune --help)",
              file=sys.stderr)
        return 2
    from disco.framework import ray_backend, tune, tune_report, tune_study
    from disco.framework.ray_backend import RayStartError
    from disco.framework.tune_space import describe

    try:
        tuning, planner = tune.prepare([*args.overrides, *unknown], args.config_dir)
        if args.dry_run:
            print(f"study {tuning.study}: {tuning.trials} trials, sampler {tuning.sampler} "
                  f"(seed {tuning.seed}), {tuning.replicates} run(s) per trial -> {tuning.db}")
            for name, param in tuning.space.items():
                print(f"  {name}: {describe(param.distribution)}")
            goal = zip(tuning.objectives, tuning.directions, strict=True)
            print("  objective: " + ", ".join(f"{o} ({d})" for o, d in goal))
            return 0
        ray_backend.cli_signals = True
        study = tune_study.run(tuning, planner, argv=["disco", "tune", *raw])
    except RayStartError as exc:
        print(f"disco tune: error: {exc}", file=sys.stderr)
        return 2
    except _config_errors() as exc:
        print(f"disco tune: error: {format_error(exc)}", file=sys.stderr)
        return 2
    text, paths = tune_report.write(study, tuning)
    print(text)
    print("files: " + ", ".join(str(p) for p in paths))
    return 0 if tune_report.front(study) else 1


def _print_cfg(plan: Any, which: str, package: str | None) -> int:
    """``--cfg job``: the first run's config with the framework keys; ``all``: every run's."""
    import yaml

    from disco.framework.plan import PlanError

    runs = plan.runs if which == "all" else plan.runs[:1]
    docs = []
    for spec in runs:
        data = {**spec.config, "study": spec.study, "results_dir": str(plan.results_dir),
                "sweep": plan.sweep, "ray": plan.ray}
        if package:
            node: Any = data
            for part in package.split("."):
                if isinstance(node, dict) and part in node:
                    node = node[part]
                elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                    node = node[int(part)]
                else:
                    raise PlanError(f"--package {package}: no such key in the config")
            data = node
        head = f"# run {spec.key}: replicate {spec.replicate}, seed {spec.seed}\n" \
            if which == "all" else ""
        pkg = f"# @package {package}\n" if package else ""
        body = yaml.safe_dump(data, sort_keys=False) if isinstance(data, dict | list) \
            else f"{yaml.safe_dump(data).removesuffix(chr(10) + '...' + chr(10)).strip()}\n"
        docs.append(head + pkg + body)
    print("---\n".join(docs), end="")
    return 0


def _info(which: str, config_dirs: list[str]) -> int:
    from disco.framework.compose import PlanError, group_options, search_path

    try:
        search = search_path(config_dirs)
    except PlanError as exc:
        print(f"disco: error: {exc}", file=sys.stderr)
        return 2
    if which in ("groups", "all"):
        from disco.framework.completion import default_groups
        from disco.framework.compose import choices_of, compose_dictconfig

        defaults = choices_of(compose_dictconfig([], search))
        chosen = default_groups()
        print("Config groups (group=option; * the default; groups without one: +group=option)")
        groups = group_options(search)
        width = max(len(g) for g in groups) + 1
        for group, options in groups.items():
            marked = [f"{o}*" if defaults.get(group) == o else o for o in options]
            plus = "" if group in chosen else "  (add with +)"
            print(f"  {group + ':':<{width}} {' '.join(marked)}{plus}")
    if which in ("searchpath", "all"):
        print("Config search path (first match wins):")
        for c in search:
            print(f"  {c.provider:<15} {c.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
