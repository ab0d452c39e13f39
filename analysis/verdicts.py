"""The report's verdicts: each paper claim stated as a test with a tolerance that can fail.

Every function here is small and pure: polars frames (or plain numbers) in, a ``Check`` out,
and the verdict is computed from the data, never typed in. A ``Check`` says what kind of test it
is:

- ``measured``: an outcome of the model (nothing was tuned to produce it);
- ``calibrated``: the defaults were set to reproduce it, so it holding is no evidence; a
  calibrated check that holds reads ``calibrated``, one that no longer holds ``disagrees``;
- ``analytic``: a formula the model applies (e.g. the recovery cost model); it checks that the
  formula is wired in, not that the paper's mechanism behaves so.

The decision rules, one per shape of claim (stated once in the report):

- *A below B* (a comparison): the runs are paired by replicate (the same seed, so the same
  arrivals and fault times: common random numbers) and the claim holds when the 95 % t interval
  of the paired difference lies entirely on the claimed side of 0 (``paired_below``);
- *X within a bound* (e.g. "not higher than 2 %"): holds when the mean is within the bound; the
  interval is shown beside it (``mean_within``).

Intervals are Student-t intervals from ``scipy.stats`` (``t_interval``), the same ones the
figures draw and the tables print. ``knob_verdict`` classifies a knob of the sensitivity study
(responds / dead / inverted / unclear) by the same paired interval.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import polars as pl
from scipy import stats

CONFIDENCE = 0.95
KINDS = ("measured", "calibrated", "analytic")
VERDICTS = ("agrees", "disagrees", "calibrated", "n/a")
KNOB_VERDICTS = ("responds", "dead", "inverted", "unclear")
CI_METHOD = ("mean and 95 % Student-t confidence interval over replicates "
             "(scipy.stats.t; paired by replicate where two settings are compared)")


@dataclass(frozen=True, slots=True)
class Interval:
    """Mean and 95 % t interval of a sample; ``lo``/``hi`` are NaN with fewer than 2 values."""

    mean: float
    lo: float
    hi: float
    n: int

    @property
    def valid(self) -> bool:
        return self.n >= 2 and not math.isnan(self.lo)

    def below(self, x: float = 0.0) -> bool:
        """The whole interval is below ``x``."""
        return self.valid and self.hi < x

    def above(self, x: float = 0.0) -> bool:
        return self.valid and self.lo > x

    def scaled(self, k: float) -> Interval:
        lo, hi = sorted((self.lo * k, self.hi * k))
        return Interval(self.mean * k, lo, hi, self.n)

    def text(self, spec: str = ".3g", unit: str = "", scale: float = 1.0) -> str:
        """``1.23 [0.98, 1.48] s (n = 4)``; the interval is left out when it is undefined."""
        if self.n == 0 or math.isnan(self.mean):
            return "none completed"
        m = format(self.mean * scale, spec)
        if not self.valid:
            return f"{m}{unit} (n = {self.n}, no interval)"
        lo, hi = sorted((self.lo * scale, self.hi * scale))
        return f"{m}{unit} [{format(lo, spec)}, {format(hi, spec)}] (n = {self.n})"


def t_interval(values: Iterable[float | None], confidence: float = CONFIDENCE) -> Interval:
    """Mean and Student-t interval of the finite values (NaN and None are dropped)."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(xs)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = math.fsum(xs) / n
    if n < 2:
        return Interval(mean, math.nan, math.nan, 1)
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    half = t_quantile(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


@functools.lru_cache(maxsize=256)
def t_quantile(q: float, dof: int) -> float:
    """Student-t quantile ``stats.t.ppf(q, dof)``: a report asks for the same few thousands of
    times (one per interval), and scipy's call costs far more than the arithmetic around it."""
    return stats.t.ppf(q, dof)


def t_errorbar(values: Sequence[float]) -> tuple[float, float]:
    """seaborn ``errorbar=`` callable: the same t interval as the tables and verdicts (none
    drawn for a single value, rather than a bar of zero width that would look exact)."""
    iv = t_interval(values)
    return iv.lo, iv.hi


def paired(df: pl.DataFrame, column: str, a: str, b: str, metric: str,
           on: Sequence[str] = ("replicate",)) -> pl.DataFrame:
    """Rows ``on`` + ``a`` + ``b`` + ``diff`` (= b - a): ``metric`` of the runs with
    ``column == a`` and ``column == b`` joined on ``on`` (the replicate: the same seed)."""
    on = list(on)
    pick = [c for c in on if c in df.columns]
    side = {v: (df.filter(pl.col(column).cast(pl.Utf8) == str(v))
                .select(*pick, pl.col(metric).cast(pl.Float64).alias(k)))
            for v, k in ((a, "a"), (b, "b"))}
    out = side[a].join(side[b], on=pick, how="inner")
    return out.with_columns((pl.col("b") - pl.col("a")).alias("diff")).filter(
        pl.col("diff").is_finite())


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the report: a claim stated as a test, what we measured, the verdict."""

    claim: str  # the paper's claim as a test, with its tolerance
    kind: str  # measured | calibrated | analytic
    source: str  # where the claim comes from (PAPER.md tags: [P], [S], [B09] ...)
    measured: str
    verdict: str  # agrees | disagrees | calibrated | n/a
    n: int | None = None  # the smallest sample behind the verdict (warned about below 3)

    def __post_init__(self) -> None:
        assert self.kind in KINDS, self.kind
        assert self.verdict in VERDICTS, self.verdict


def decide(holds: bool | None, kind: str) -> str:
    """The verdict of a test that held (True), failed (False) or had no data (None)."""
    if holds is None:
        return "n/a"
    if not holds:
        return "disagrees"
    return "calibrated" if kind == "calibrated" else "agrees"


def check(claim: str, kind: str, source: str, measured: str, holds: bool | None,
          n: int | None = None) -> Check:
    return Check(claim, kind, source, measured, decide(holds, kind), n)


def paired_below(diff: Interval) -> bool | None:
    """"b below a": the interval of b - a lies below 0; None without two pairs."""
    if diff.n < 2:
        return None
    return diff.below(0.0)


def mean_within(iv: Interval, low: float = -math.inf, high: float = math.inf) -> bool | None:
    """"within [low, high]": the mean is; None without data."""
    if iv.n == 0 or math.isnan(iv.mean):
        return None
    return low <= iv.mean <= high


# ---------------------------------------------------------------- claims, one function each


def lower_is_better(df: pl.DataFrame, column: str, base: str, better: str, metric: str, *,
                    claim: str, source: str, unit: str = " s",
                    on: Sequence[str] = ("replicate",)) -> Check:
    """``better``'s ``metric`` is below ``base``'s, paired by replicate (a measured claim)."""
    d = paired(df, column, base, better, metric, on)
    iv = t_interval(d["diff"])
    a, b = t_interval(d["a"]), t_interval(d["b"])
    measured = (f"{better} {b.text('.3g', unit)} vs {base} {a.text('.3g', unit)}; "
                f"difference {iv.text('+.3g', unit)}")
    return check(claim, "measured", source, measured, paired_below(iv), iv.n)


def containment_vs_partitions(faults: pl.DataFrame, margin: float = 0.5) -> Check:
    """VMs lost per fault, Cellular Disco vs fixed partitions on the same faults.

    ``faults``: one row per injected fault of both policies, with ``policy``, ``replicate``,
    ``time_s``, ``place``, ``type``, ``ignored`` and ``vms_lost``. The same seed gives the same
    fault times and places under both policies (common random numbers), so each hardware fault
    that hit a live part of both machines (and finished recovering, when the table says:
    ``censored``) is a pair; the claim holds when Cellular Disco loses
    on average at most ``margin`` VMs per fault more than fixed partitions.
    """
    keys = ["replicate", "time_s", "place"]
    hw = faults.filter((pl.col("type") != "software") & ~pl.col("ignored"))
    if "censored" in hw.columns:  # recovery unfinished at the end: its losses are pending
        hw = hw.filter(~pl.col("censored"))
    cd = hw.filter(pl.col("policy") == "cellular_disco").select(*keys, pl.col("vms_lost")
                                                                .alias("cd"))
    fp = hw.filter(pl.col("policy") == "fixed_partition").select(*keys, pl.col("vms_lost")
                                                                 .alias("fp"))
    pairs = cd.join(fp, on=keys, how="inner")
    diff = t_interval((pairs["cd"] - pairs["fp"]).to_list())
    c, f = t_interval(pairs["cd"]), t_interval(pairs["fp"])
    measured = (f"over {pairs.height} shared hardware faults: Cellular Disco "
                f"{c.text('.2f')} VMs lost per fault, fixed partitions {f.text('.2f')}; "
                f"difference {diff.text('+.2f')}")
    return check(f"a hardware fault costs Cellular Disco at most {margin:g} VMs more than the "
                 "same fault costs fixed partitions (mean, paired by fault)", "measured",
                 "[P] a fault takes out one cell and only the VMs that used it",
                 measured, mean_within(diff, high=margin), diff.n)


def lost_share_vs_cells(shares: pl.DataFrame, cells: int, factor: float = 1.5) -> Check:
    """Share of the running VMs a hardware fault kills, against 1 / cells.

    ``shares``: one row per effective hardware fault with ``share`` = VMs lost / VMs running.
    A VM that stays in its cell dies with it and with no other, so a fault should kill about
    1 / cells of the running VMs; the claim holds when the mean share is at most ``factor`` /
    cells (each VM depending on at most ``factor`` cells on average).
    """
    iv = t_interval(shares["share"]) if shares.height else t_interval([])
    bound = factor / cells
    measured = (f"{iv.text('.1%')} of the running VMs lost per hardware fault vs 1 / {cells} "
                f"= {1 / cells:.1%}")
    return check(f"a hardware fault kills at most {factor:g} / cells = {bound:.1%} of the "
                 "running VMs (mean over faults)", "measured",
                 "[P] fail-stop cells; only the VMs that depended on the failed cell die",
                 measured, mean_within(iv, high=bound), iv.n)


def slowdown_below(slowdown_pct: Iterable[float | None], bound_pct: float, *, claim: str,
                   source: str, kind: str = "measured", what: str = "slowdown") -> Check:
    """A mean slowdown (in %) within ``bound_pct``."""
    iv = t_interval(slowdown_pct)
    return check(claim, kind, source, f"{what} {iv.text('+.2f', ' %')}",
                 mean_within(iv, high=bound_pct), iv.n)


def ratio_within(ratios: pl.DataFrame, group: str, bound: float, *, claim: str, source: str,
                 kind: str = "measured") -> Check:
    """Every ``group``'s mean ``ratio`` (e.g. 8 cells / 1 cell) at most ``1 + bound``."""
    parts, holds, n = [], [], []
    for name, sub in ratios.group_by(group, maintain_order=True):
        iv = t_interval(sub["ratio"])
        parts.append(f"{name[0]} {iv.text('.3f')}")
        holds.append(mean_within(iv, high=1 + bound))
        n.append(iv.n)
    ok = None if not holds or None in holds else all(holds)
    return check(claim, kind, source, "; ".join(parts) or "no comparable runs", ok,
                 min(n) if n else 0)


def beats_at_every_size(df: pl.DataFrame, size: str, metric: str, *, claim: str,
                        source: str, unit: str = " s") -> Check:
    """Cellular Disco's ``metric`` (lower is better) below fixed partitions' at every value of
    ``size`` (the partition size), paired by replicate; ``df`` holds both policies."""
    parts, holds, n = [], [], []
    for (value,), sub in df.sort(size).group_by(size, maintain_order=True):
        d = paired(sub, "policy", "fixed_partition", "cellular_disco", metric)
        iv = t_interval(d["diff"])
        a, b = t_interval(d["a"]), t_interval(d["b"])
        parts.append(f"{value} CPUs: {b.mean:.3g} vs {a.mean:.3g}{unit}, difference "
                     f"{iv.text('+.3g', unit)}")
        holds.append(paired_below(iv))
        n.append(iv.n)
    ok = None if not holds or None in holds else all(holds)
    return check(claim, "measured", source,
                 "Cellular Disco vs fixed partitions, " + "; ".join(parts) if parts
                 else "no comparable runs", ok, min(n) if n else 0)


def within_at_every_size(df: pl.DataFrame, size: str, metric: str, bound: float, *,
                         claim: str, source: str) -> Check:
    """Cellular Disco's ``metric`` at most ``1 + bound`` times fixed partitions' at every value
    of ``size``: the mean of the per-replicate ratios (paired by seed) within the bound."""
    rows = []
    for (value,), sub in df.sort(size).group_by(size, maintain_order=True):
        d = paired(sub, "policy", "fixed_partition", "cellular_disco", metric)
        rows += [{"size": f"{value} CPUs", "ratio": b / a} for a, b in
                 zip(d["a"].to_list(), d["b"].to_list(), strict=True) if a]
    ratios = pl.DataFrame(rows, schema={"size": pl.Utf8, "ratio": pl.Float64})
    return ratio_within(ratios, "size", bound, claim=claim, source=source)


# ------------------------------------------------------------------------ knob sensitivity


@dataclass(frozen=True, slots=True)
class KnobEffect:
    """A knob's effect on its metric: the paired difference ``to - from`` relative to the
    baseline's mean, its interval, and the verdict."""

    effect: Interval  # relative: (to - from) / |mean at from|
    absolute: Interval
    verdict: str


EXPECT = {"up": 1, "down": -1, "change": 0}


def knob_verdict(base: Sequence[float], alt: Sequence[float], expect: str,
                 dead_below: float = 0.01) -> KnobEffect:
    """Classify a knob from its metric at ``from`` (``base``) and ``to`` (``alt``), paired by
    replicate (``base[i]`` and ``alt[i]`` share a seed).

    - ``responds``: the interval of the paired difference excludes 0 on the expected side
      (``expect`` = up / down; ``change``: on either side);
    - ``inverted``: it excludes 0 on the other side and the effect is at least ``dead_below``
      of the baseline;
    - ``dead``: the effect is below ``dead_below`` of the baseline and the interval includes 0
      (or excludes it on the wrong side by less than ``dead_below``: a negligible effect);
    - ``unclear``: the interval includes 0 but the effect is not negligible (more replicates).
    """
    if expect not in EXPECT:
        raise ValueError(f"expect must be one of {', '.join(EXPECT)}, got {expect!r}")
    pairs = [(float(a), float(b)) for a, b in zip(base, alt, strict=True)
             if a is not None and b is not None and math.isfinite(a) and math.isfinite(b)]
    absolute = t_interval(b - a for a, b in pairs)
    ref = abs(t_interval(a for a, _ in pairs).mean) if pairs else math.nan
    if not ref:  # a baseline of 0: relative to the other side, or 0 when both are 0
        ref = abs(t_interval(b for _, b in pairs).mean) if pairs else math.nan
    effect = absolute.scaled(1.0 / ref) if ref else Interval(0.0, 0.0, 0.0, absolute.n)
    if absolute.n < 2:
        return KnobEffect(effect, absolute, "unclear")
    big = abs(effect.mean) >= dead_below
    sign = EXPECT[expect]
    up, down = effect.above(0.0), effect.below(0.0)
    if (sign >= 0 and up) or (sign <= 0 and down):
        verdict = "responds"
    elif up or down:
        verdict = "inverted" if big else "dead"
    else:
        verdict = "unclear" if big else "dead"
    return KnobEffect(effect, absolute, verdict)
