"""The search space of ``disco tune``: Hydra overrides -> Optuna distributions, and back.

The grammar is Hydra's, parsed by Hydra's own override parser (the planner's), read the way
Hydra's Optuna sweeper reads it:

============================================  ==============================================
``key=interval(a,b)``                         ``FloatDistribution(a, b)``
``key=int(interval(a,b))``                    ``IntDistribution(a, b)``
``key=tag(log, interval(a,b))``               the same with ``log=True`` (``a > 0``)
``key=choice(x,y,z)`` or ``key=x,y,z``        ``CategoricalDistribution([x, y, z])``
``group=choice(a,b)``, ``group=glob(*)``      categorical over the group's options
``key=range(a,b,s)``                          ``IntDistribution`` (``FloatDistribution`` for
                                              floats) from ``a`` to the last value before
                                              ``b``, step ``s``
============================================  ==============================================

One difference from the sweeper: ``range`` keeps Hydra's meaning (``b`` excluded), so a range
gives a tuner exactly the values ``disco -m`` would sweep. Anything the tuner could not honour
(an empty or inverted interval, a tag other than ``log``, ``shuffle``, an interval on a config
group, a choice of mappings) is a ``PlanError`` naming the override, before anything runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from disco.framework.compose import PlanError

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

    from disco.framework.plan import Planner


@dataclass(frozen=True, slots=True)
class Param:
    """One tuned key: its Optuna distribution and how a value becomes an override again."""

    key: str  # the override's key as typed: "policy.borrow_trigger_mb", "policy", "+x.y"
    name: str  # the key without + / ~: the Optuna parameter's name
    text: str  # the override as given, for messages and for comparing on resume
    distribution: BaseDistribution
    group: bool  # a config group (policy=...): its values are option names

    def override(self, value: Any) -> str:
        return f"{self.key}={format_value(value)}"


def _fail(text: str, why: str) -> PlanError:
    return PlanError(f"{text}: {why}")


def distribution(text: str, override: Any, *, group: bool,
                 options: list[str] | None = None) -> BaseDistribution:
    """The Optuna distribution of one sweep override (``override``: Hydra's parse of ``text``)."""
    from hydra.core.override_parser.types import ChoiceSweep, Glob, IntervalSweep, RangeSweep
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    value = override.value()
    tags = set(getattr(value, "tags", set()) or set())
    if isinstance(value, IntervalSweep):
        if group:
            raise _fail(text, f"{override.key_or_group} is a config group: tune it with "
                              "choice(...) of its options")
        unknown = tags - {"log"}
        if unknown:
            raise _fail(text, f"unknown tag {', '.join(sorted(unknown))} (a search space "
                              "knows only tag(log, interval(...)))")
        log = "log" in tags
        low, high = value.start, value.end
        if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
            raise _fail(text, "an interval needs two finite bounds")
        if high < low:
            raise _fail(text, f"inverted interval: {low} > {high}")
        if high == low:
            raise _fail(text, f"empty interval: low = high = {low} (to fix the key, give "
                              f"{override.get_key_element()}={format_value(low)})")
        if log and low <= 0:
            raise _fail(text, f"a log interval needs low > 0, got {low}")
        if isinstance(low, int) and isinstance(high, int):
            return IntDistribution(low, high, log=log)
        return FloatDistribution(float(low), float(high), log=log)
    if isinstance(value, RangeSweep | ChoiceSweep | Glob):
        if tags:
            raise _fail(text, f"tag({', '.join(sorted(tags))}, ...) applies to interval() "
                              "only")
        if getattr(value, "shuffle", False):
            raise _fail(text, "shuffle() means nothing to a tuner: drop it")
    if isinstance(value, Glob):
        if not group:
            raise _fail(text, "glob() selects options of a config group")
        chosen = value.filter(options or [])
        if not chosen:
            raise _fail(text, f"matches no option of {override.key_or_group}/")
        return CategoricalDistribution(chosen)
    if isinstance(value, RangeSweep):
        if group:
            raise _fail(text, f"{override.key_or_group} is a config group: tune it with "
                              "choice(...) of its options")
        values = list(override.sweep_iterator())
        if not values:
            raise _fail(text, "empty range (no value from start to stop)")
        step = abs(value.step)
        if any(isinstance(v, float) for v in values):
            return FloatDistribution(float(min(values)), float(max(values)), step=float(step))
        return IntDistribution(int(min(values)), int(max(values)), step=int(step))
    if isinstance(value, ChoiceSweep):
        values = list(override.sweep_iterator())
        bad = [v for v in values if not isinstance(v, str | int | float | bool)]
        if bad:
            raise _fail(text, f"a choice's values must be strings, numbers or booleans, got "
                              f"{bad[0]!r}")
        if len(set(map(repr, values))) != len(values):
            raise _fail(text, "a choice lists a value twice")
        return CategoricalDistribution(values)
    raise _fail(text, "not a search space (interval, int(interval), tag(log, interval), "
                      "choice, range)")


def parse(texts: list[str], planner: Planner) -> dict[str, Param]:
    """Sweep overrides -> parameters, by name, in the order given."""
    from disco.framework import compose

    options = compose.group_options(planner.search)
    space: dict[str, Param] = {}
    for text in texts:
        ov = planner.parse([text])[0]
        if ov.is_delete():
            raise _fail(text, "a search-space key cannot be deleted (~)")
        group = planner.is_group(ov)
        dist = distribution(text, ov, group=group, options=options.get(ov.key_or_group))
        name = ov.key_or_group.lstrip("+~")
        if name in space:
            raise _fail(text, f"{name} is in the search space twice")
        space[name] = Param(key=ov.get_key_element(), name=name, text=text, distribution=dist,
                            group=group)
    return space


def format_value(value: Any) -> str:
    """``value`` as the right-hand side of a Hydra override that gives back exactly it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    text = str(value)
    parser = _parser()
    try:
        if parser.parse_override(f"k={text}").value() == text:
            return text
    except Exception:  # noqa: BLE001 - anything Hydra's grammar refuses gets quoted
        pass
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


_PARSER: list[Any] = []


def _parser() -> Any:
    if not _PARSER:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        _PARSER.append(OverridesParser.create())
    return _PARSER[0]


def snap(param: Param, value: Any) -> Any:
    """A float on a stepped grid, rounded to 12 significant digits (``0.30000000000000004`` ->
    ``0.3``): the override reads as typed and every trial at that point has the same key."""
    from optuna.distributions import FloatDistribution

    dist = param.distribution
    if isinstance(dist, FloatDistribution) and dist.step is not None:
        return float(f"{value:.12g}")
    return value


def coerce(dist: BaseDistribution, value: Any) -> Any:
    """``value`` as a point of ``dist`` (``100.0`` of an int interval is ``100``), or None if it
    is not one (for the baseline trial: the config's own value of a tuned key)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    if isinstance(dist, CategoricalDistribution):
        hit = [c for c in dist.choices if type(c) is type(value) and c == value]
        return hit[0] if hit else None
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(dist, FloatDistribution):
        if not dist.low <= value <= dist.high:
            return None
        if dist.step is not None:
            k = (value - dist.low) / dist.step
            if not math.isclose(k, round(k), abs_tol=1e-9):
                return None
        return float(value)
    if isinstance(value, float):  # IntDistribution
        if not value.is_integer():
            return None
        value = int(value)
    if not dist.low <= value <= dist.high or (value - dist.low) % dist.step:
        return None
    return value


def corners(space: dict[str, Param]) -> list[dict[str, Any]]:
    """Points that check the whole space against the schema before anything runs: every key
    at its low end, every key at its high end, and each other option of a choice."""
    from optuna.distributions import CategoricalDistribution

    def end(p: Param, hi: bool) -> Any:
        d = p.distribution
        if isinstance(d, CategoricalDistribution):
            return d.choices[-1 if hi else 0]
        return d.high if hi else d.low  # type: ignore[attr-defined]

    low = {n: end(p, False) for n, p in space.items()}
    points = [low, {n: end(p, True) for n, p in space.items()}]
    for n, p in space.items():
        if isinstance(p.distribution, CategoricalDistribution):
            points += [{**low, n: c} for c in p.distribution.choices[1:-1]]
    unique: list[dict[str, Any]] = []
    for pt in points:
        if pt not in unique:
            unique.append(pt)
    return unique


def describe(dist: BaseDistribution) -> str:
    """``int [0, 64]``, ``float [1, 100] log``, ``float [0.5, 2] step 0.5``, ``one of a, b``."""
    from optuna.distributions import CategoricalDistribution

    if isinstance(dist, CategoricalDistribution):
        return "one of " + ", ".join(format_value(c) for c in dist.choices)
    kind = "int" if type(dist).__name__.startswith("Int") else "float"
    out = f"{kind} [{dist.low:g}, {dist.high:g}]"  # type: ignore[attr-defined]
    if getattr(dist, "log", False):
        out += " log"
    step = getattr(dist, "step", None)
    if step not in (None, 1):
        out += f" step {step:g}"
    return out
