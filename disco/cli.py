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

Exit codes: 0 all runs ok, 1 some run failed, 2 bad command line or config (nothing written).
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
               "key=a,b,c, range(), glob() (with -m). `disco --info` lists the groups; see "
               "docs/framework.md.")
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
    parts = [str(exc).strip()]
    cause = exc.__cause__
    while cause is not None and len(parts) < 4:
        text = str(cause).strip()
        if text and text not in parts:
            parts.append(text)
        cause = cause.__cause__
    return "\n".join(parts)


def _config_errors() -> tuple[type[BaseException], ...]:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from disco.config import ConfigError
    from disco.framework.plan import PlanError

    return ConfigError, PlanError, HydraException, OmegaConfBaseException


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


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``disco``; returns the exit code."""
    if "_ARGCOMPLETE" in os.environ:  # a <TAB> in the shell: answer and exit
        import argcomplete

        argcomplete.autocomplete(_parser())
    try:
        return _main(argv)
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
    from disco.framework.sweep import run_sweep

    ray_backend.cli_signals = True
    try:  # without -m: in this process, no Ray (one run does not pay for starting a cluster)
        outcome = run_sweep(plan, argv=cmd, serial=None if args.multirun else True)
    except RayStartError as exc:
        print(f"disco: error: {exc}", file=sys.stderr)
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
