"""Verdicts on claims: arm A against arm B seed by seed, a paired one-sided t-test of the per-seed difference in the
claim's metric, the family of tests (claims x contexts) corrected for multiplicity (Holm by default). Verdicts:

- SUPPORTED: the adjusted test rejects "no effect the claimed way" and the one-sided interval at the matching
  level excludes 0 (equivalence: both one-sided tests against the margin reject, the interval lies within it);
- CONTRADICTED: the same holds the other way (equivalence: the difference lies beyond the margin);
- INCONCLUSIVE otherwise, with the effect these seeds could detect and the seeds the minimal effect would need.

Beside each: the effect size d_z, the share of seeds where A beats B, a paired bootstrap bound and a Wilcoxon
signed-rank p as second opinions; the failed runs per arm (a failure is scored, never dropped); and how firm the
verdict is (the share of seed subsamples that reach it). Nothing here knows which way an outcome "should" go, nor
how the runs were trained: it reads their values.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Optional

import numpy as np
import pandas as pd

from ablate.analysis.sequential import MIN_SEEDS, Decision, decide
from ablate.analysis.tables import markdown_table
from ablate.analysis.stats import (adjust, bootstrap_bound, detectable_effect, seeds_needed, t_bound, t_pvalue,
                                   wilcoxon_pvalue)
from ablate.config.commands import WORST, ClaimSpec, Direction, JudgeSettings


class Verdict(str, Enum):
    supported = "SUPPORTED"
    contradicted = "CONTRADICTED"
    inconclusive = "INCONCLUSIVE"


@dataclass
class Judged:
    """One claim in one context: the paired comparison, its verdict and what stands beside it."""

    name: str
    claim: ClaimSpec
    context: str
    n: int
    a_mean: float = math.nan
    b_mean: float = math.nan
    diff: float = math.nan  # mean over seeds of A - B
    sd: float = math.nan
    margin: float = math.nan  # the minimal effect in the metric's units
    p: float = math.nan  # one-sided, the claimed way (equivalence: TOST)
    p_other: float = math.nan  # one-sided, the other way (equivalence: beyond the margin)
    p_adjusted: float = math.nan
    level: float = math.nan  # the test's level after the correction; the interval's confidence is 1 - level
    bound: tuple[float, float] = (math.nan, math.nan)  # t interval (one-sided: the other end infinite)
    bootstrap: tuple[float, float] = (math.nan, math.nan)
    d_z: float = math.nan
    improved: float = math.nan  # share of seeds where A beats B the claimed way (ties count half)
    wilcoxon: float = math.nan
    verdict: Verdict = Verdict.inconclusive
    detectable: float = math.nan  # the effect these seeds detect with the configured power
    needed: Optional[int] = None  # seeds that would detect the minimal effect
    failed: tuple[int, int] = (0, 0)  # seeds with a failed run, per arm (scored as the claim says)
    firmness: float = math.nan  # share of seed subsamples that reach the same verdict
    fragile: bool = False  # firmness below judge.firm
    settle: Optional[int] = None  # seeds that would make a fragile verdict firm (power at the observed effect)
    anytime: Optional[Decision] = None  # where an anytime-valid rule reading the seeds in order would have stopped
    note: str = ""


@dataclass
class ClaimVariants:
    """The runs one claim needs in one context: (arm, spread level, seed) -> config hash."""

    seeds: list[int]
    hashes: dict[tuple[str, Any, int], str] = field(default_factory=dict)


@dataclass
class Paired:
    """A claim's per-seed values in one context, both arms over every seed: a failed run scored as the claim says
    (``failed_as``, else its metric's worst value), so no verdict rests on the survivors alone."""

    a: np.ndarray
    b: np.ndarray
    failed: tuple[int, int] = (0, 0)  # seeds with a failed run, per arm
    unjudgeable: str = ""  # why no verdict can be reached (runs missing, failures without a worst value)


def paired_values(claim: ClaimSpec, runs: dict[str, dict[str, Any]], variants: ClaimVariants) -> Paired:
    """Per seed, A's and B's metric (the spread over levels for a spread claim)."""
    worst = claim.failed_as if claim.failed_as is not None else WORST.get(claim.metric)
    missing = 0

    def metric(config: str) -> tuple[float, bool]:
        nonlocal missing
        run = runs.get(config)
        if run is None:
            missing += 1
            return math.nan, False
        if run["status"] != "FINISHED":
            return (math.nan if worst is None else worst), True
        return run.get(claim.metric, math.nan), False

    levels = claim.spread_over.levels if claim.spread_over else [None]
    values, failed = {}, {}
    for arm in ("a", "b"):
        cells = [[metric(variants.hashes[arm, level, seed]) for level in levels] for seed in variants.seeds]
        v = np.array([[value for value, _ in row] for row in cells], dtype=float)
        values[arm] = v.max(1) - v.min(1) if claim.spread_over else v[:, 0]
        failed[arm] = sum(any(f for _, f in row) for row in cells)
    paired = Paired(values["a"], values["b"], (failed["a"], failed["b"]))
    if missing:
        paired.unjudgeable = f"{missing} run(s) missing (a context or worker that did not finish): run it again"
    elif any(paired.failed) and worst is None:
        paired.unjudgeable = (f"runs failed (A {paired.failed[0]}, B {paired.failed[1]}) and {claim.metric} has no "
                              f"worst value to score them: set failed_as")
    elif not (np.isfinite(paired.a).all() and np.isfinite(paired.b).all()):
        paired.unjudgeable = f"{claim.metric} is not finite on every seed"
    return paired


def compare(name: str, claim: ClaimSpec, context: str, a: np.ndarray, b: np.ndarray, failed: tuple[int, int] = (0, 0),
            unjudgeable: str = "") -> Judged:
    """The tests of one claim in one context (before the family's correction); ``unjudgeable`` (a reason) leaves
    it INCONCLUSIVE."""
    judged = Judged(name, claim, context, len(a), failed=failed)
    if unjudgeable or len(a) < 3:
        judged.note = unjudgeable or "fewer than 3 paired seeds"
        judged.n = 0  # untested: outside the family
        return judged
    d = a - b
    judged.a_mean, judged.b_mean, judged.diff, judged.sd = float(a.mean()), float(b.mean()), float(d.mean()), float(d.std(ddof=1))
    judged.margin = claim.minimal_effect * (abs(judged.b_mean) if claim.relative else 1.0)
    judged.d_z = judged.diff / judged.sd if judged.sd > 0 else math.copysign(math.inf, judged.diff) if judged.diff else 0.0
    if claim.direction == Direction.equal:
        judged.p = max(t_pvalue(d, "greater", -judged.margin), t_pvalue(d, "less", judged.margin))  # TOST
        judged.p_other = min(t_pvalue(d, "greater", judged.margin), t_pvalue(d, "less", -judged.margin))
        judged.improved = float(np.mean(np.abs(d) <= judged.margin))
    else:
        side, other = claim.direction.value, "less" if claim.direction == Direction.greater else "greater"
        judged.p, judged.p_other = t_pvalue(d, side), t_pvalue(d, other)
        judged.improved = float(np.mean(np.sign(d) == (1 if side == "greater" else -1)) + 0.5 * np.mean(d == 0))
        judged.wilcoxon = wilcoxon_pvalue(d, side)
    return judged


def judge(judged: list[Judged], settings: JudgeSettings, differences: dict[tuple[str, str], np.ndarray],
          details: bool = True) -> None:
    """The family's correction and each verdict, in place: the claimed way and the other way each form a family.
    ``details``: also the bootstrap and the effects the seeds could detect (the verdict does not depend on them)."""
    testable = [j for j in judged if j.n >= 3]
    method, alpha = settings.correction.value, settings.alpha
    adjusted, levels = adjust([j.p for j in testable], method, alpha)
    other, _ = adjust([j.p_other for j in testable], method, alpha)
    for j, p_adj, level, p_other in zip(testable, adjusted, levels, other):
        d = differences[j.name, j.context]
        j.p_adjusted, j.level = p_adj, level
        confidence = 1 - level
        j.bound = _interval(j, d, confidence, t_bound)
        j.bootstrap = _interval(j, d, confidence, functools.partial(bootstrap_bound, resamples=settings.bootstrap)) \
            if details else j.bound
        if j.claim.direction == Direction.equal:
            t_holds = -j.margin < j.bound[0] and j.bound[1] < j.margin
            boot_holds = -j.margin < j.bootstrap[0] and j.bootstrap[1] < j.margin
        else:
            sign = 1 if j.claim.direction == Direction.greater else -1
            t_holds = sign * (j.bound[0] if sign > 0 else j.bound[1]) > 0
            boot_holds = sign * (j.bootstrap[0] if sign > 0 else j.bootstrap[1]) > 0
        if p_adj < alpha and t_holds:
            j.verdict = Verdict.supported
        elif p_other < alpha:
            j.verdict = Verdict.contradicted
        else:
            j.verdict = Verdict.inconclusive
            if details:
                j.detectable = detectable_effect(j.sd, j.n, level, settings.power)
                j.needed = seeds_needed(j.margin, j.sd, level, settings.power)
        if t_holds != boot_holds:
            j.note = "the t interval and the bootstrap disagree"


def _interval(j: Judged, d: np.ndarray, confidence: float, bound: Callable[[np.ndarray, float, str], float]):
    """One-sided the claimed way, two one-sided bounds for an equivalence (``bound``: t or bootstrap)."""
    if j.claim.direction == Direction.equal:
        return bound(d, confidence, "greater"), bound(d, confidence, "less")
    if j.claim.direction == Direction.greater:
        return bound(d, confidence, "greater"), math.inf
    return -math.inf, bound(d, confidence, "less")


def firmness(judged: list[Judged], settings: JudgeSettings, pairs: dict[tuple[str, str], Paired]) -> None:
    """How firm each verdict is, in place: the whole family judged again on ``settings.subsamples`` seeded subsamples
    of the seeds (the same seeds for every claim), each keeping ``settings.subsample_share`` of them; the share
    that reaches the verdict of all seeds. A verdict below ``settings.firm`` is fragile: beside it, the seeds whose
    test would detect its observed effect (the minimal one where none was observed) with power 0.9."""
    n_seeds = len(next(iter(pairs.values())).a) if pairs else 0
    keep = max(3, round(settings.subsample_share * n_seeds))
    if not settings.subsamples or keep >= n_seeds:
        return
    rng = np.random.default_rng(0)
    same = np.zeros(len(judged))
    for _ in range(settings.subsamples):
        rows = np.sort(rng.choice(n_seeds, keep, replace=False))
        picked = {key: (pair.a[rows], pair.b[rows]) for key, pair in pairs.items()}
        sub = [compare(j.name, j.claim, j.context, *picked[j.name, j.context], j.failed,
                       pairs[j.name, j.context].unjudgeable) for j in judged]
        judge(sub, settings, {key: a - b for key, (a, b) in picked.items()}, details=False)
        same += [s.verdict == j.verdict for s, j in zip(sub, judged)]
    for j, count in zip(judged, same):
        j.firmness = count / settings.subsamples
        j.fragile = j.firmness < settings.firm
        if j.fragile and j.n >= 3:  # the effect observed (the minimal one where none was)
            j.settle = seeds_needed(abs(j.diff) or j.margin, j.sd, j.level, 0.9)


# -------------------------------------------------------------------------------------------- tables
def _number(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, float) and math.isinf(x):
        return "∞" if x > 0 else "−∞"
    return f"{x:.3g}" if abs(x) < 1e-3 or abs(x) >= 1e3 else f"{x:.4f}".rstrip("0").rstrip(".")


def _interval_text(bound: tuple[float, float]) -> str:
    low, high = bound
    if math.isinf(high):
        return f"≥ {low:+.4f}"
    if math.isinf(low):
        return f"≤ {high:+.4f}"
    return f"[{low:+.4f}, {high:+.4f}]"


def anytime_decisions(judged: list[Judged], settings: JudgeSettings,
                      differences: dict[tuple[str, str], np.ndarray]) -> None:
    """Beside each fixed-n verdict, in place: the anytime-valid sequence over the same seeds in seed order, at the
    family's Bonferroni level (``analysis.sequential``): where it would have stopped, and why."""
    tested = [j for j in judged if j.n >= 3]  # the family, as judge() corrects it
    for j in tested:
        j.anytime = decide(differences[j.name, j.context], j.claim.direction.value, j.margin,
                           settings.alpha / len(tested), max_seeds=settings.max_seeds, min_reach=settings.min_reach)


def sequential_verdicts(judged: list[Judged], settings: JudgeSettings) -> None:
    """``judge.seeds=auto``: each verdict is its anytime-valid sequence's, in place (the fixed-n columns stay beside
    it, computed at the seeds it took: their p-values assume no stopping and are shown for comparison only)."""
    for j in judged:
        if j.anytime is None:
            continue
        j.verdict = {"SUPPORTED": Verdict.supported, "CONTRADICTED": Verdict.contradicted}.get(
            j.anytime.stop.value, Verdict.inconclusive)
        why = {"FUTILE": "stopped as smaller than its minimal effect",
               "OUT_OF_REACH": f"stopped: {settings.out_of_reach_text}",
               "OPEN": f"still open at judge.max_seeds={settings.max_seeds}" if j.n >= settings.max_seeds else
               "still open"}
        j.note = "; ".join(filter(None, [j.note, why.get(j.anytime.stop.value, "")]))


def _anytime_text(decision: Optional[Decision]) -> str:
    if decision is None:
        return "–"
    where = f"at seed {decision.seeds}" if decision.stop.value != "OPEN" else f"after {decision.seeds} seeds"
    return f"{decision.stop.value} {where}, {_interval_text((decision.lower, decision.upper))}"


def verdict_tables(judged: list[Judged], settings: JudgeSettings) -> str:
    """The matrix (one verdict per claim and context, and how many contexts it holds in), then the details."""
    contexts = list(dict.fromkeys(j.context for j in judged))
    rows = []
    for name in dict.fromkeys(j.name for j in judged):
        mine = {j.context: j for j in judged if j.name == name}
        row = {"claim": next(iter(mine.values())).claim.text}
        for context in contexts:
            j = mine.get(context)
            row[context] = "–" if j is None else f"{j.verdict.value} ({j.diff:+.3g})" + (
                f", fragile ({j.firmness:.0%})" if j.fragile else "")
        held = sum(j.verdict == Verdict.supported for j in mine.values())
        row["holds in"] = f"{held} of {len(mine)} contexts"
        row["seeds vary"] = ", ".join(s.value for s in settings.vary)  # the sources its verdicts averaged over
        rows.append(row)
    detail = [{"claim": j.claim.text, "context": j.context, "metric": j.claim.metric, "n": j.n,
               "A": _number(j.a_mean), "B": _number(j.b_mean), "A − B": f"{j.diff:+.4f}" if j.n >= 3 else "–",
               "interval (1 − level)": _interval_text(j.bound) if j.n >= 3 else "–",
               "bootstrap": _interval_text(j.bootstrap) if j.n >= 3 else "–",
               "p": _number(j.p), "p adj": _number(j.p_adjusted), "level": _number(j.level), "d_z": _number(j.d_z),
               "P(A better)": _number(j.improved), "Wilcoxon p": _number(j.wilcoxon), "failed A/B": "%d/%d" % j.failed,
               "verdict": j.verdict.value, "firmness": _number(j.firmness),
               "seeds to settle": j.settle if j.settle else "–",
               "detectable / seeds needed": (f"{_number(j.detectable)} / {j.needed}" if j.needed else "–"),
               "anytime-valid": _anytime_text(j.anytime), "note": j.note} for j in judged]
    tests = "\n".join(f"- {j.claim.text}: {_test_text(j.claim)}" for j in
                      {j.name: j for j in judged}.values())
    return (markdown_table(pd.DataFrame(rows)) + "\n\n" + markdown_table(pd.DataFrame(detail)) +
            f"\n\nSeeds vary: {settings.varied_text}. "
            f"Family: {len(judged)} tests (claims x contexts), {settings.correction.value} correction at alpha "
            f"{settings.alpha}; each interval is one-sided at confidence 1 − level, the level its corrected test "
            f"uses, so it excludes 0 exactly when that test rejects. Detectable: the true effect the claim's "
            f"seeds find with power {settings.power}; seeds needed: for the claim's minimal effect. Firmness: the "
            f"share of {settings.subsamples} seeded subsamples of {settings.subsample_share:.0%} of the seeds whose "
            f"whole family reaches the same verdict; below {settings.firm:.0%} a verdict is fragile (one CPU's "
            f"float32 rounding may flip it), and seeds to settle is what would detect its observed effect with power "
            f"0.9. A failed run scores its metric's worst value (an accuracy's 0) unless the claim sets failed_as; "
            f"where the metric has none, a claim with failures is INCONCLUSIVE. Anytime-valid: Lai's t-confidence "
            f"sequence over the same seeds read in order from seed {MIN_SEEDS}, each at alpha / {sum(j.n >= 3 for j in judged)} "
            f"(Bonferroni): the seed at which it would have stopped (SUPPORTED, CONTRADICTED, FUTILE: inside ± the "
            f"minimal effect, or OUT_OF_REACH: {settings.out_of_reach_text}) and its interval there; OPEN: not "
            f"settled by these seeds.\n\nTests:\n{tests}")


def _test_text(claim: ClaimSpec) -> str:
    what = {Direction.greater: "A > B", Direction.less: "A < B",
            Direction.equal: "|A − B| within the margin (two one-sided tests)"}[claim.direction]
    spread = f", of the per-seed spread (max − min) over {claim.spread_over.key} in {claim.spread_over.levels}" \
        if claim.spread_over else ""
    effect = f"{claim.minimal_effect:g}" + (" of B's mean" if claim.relative else "")
    worst = claim.failed_as if claim.failed_as is not None else WORST.get(claim.metric)
    failed = f"; a failed run scores {worst:g}" if worst is not None else "; failures leave it INCONCLUSIVE"
    return f"paired t-test over seeds of {claim.metric}{spread}, {what}; minimal effect {effect}{failed}"


