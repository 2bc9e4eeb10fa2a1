"""Claims (conf/claims/: the seed notes' and a user's own), each judged by an experiment stated in advance.

``python -m ablate.claims [overrides]`` (``make claims``) trains both arms of every claim over ``judge.seeds`` seeds
in every context (a resumable sweep, trained as populations), then compares arm A with arm B seed by seed: a paired
one-sided t-test of the per-seed difference in the claim's metric, the family of tests (claims x contexts)
corrected for multiplicity (Holm by default). Verdicts:

- SUPPORTED: the adjusted test rejects "no effect the claimed way" and the one-sided interval at the matching
  level excludes 0 (equivalence: both one-sided tests against the margin reject, the interval lies within it);
- CONTRADICTED: the same holds the other way (equivalence: the difference lies beyond the margin);
- INCONCLUSIVE otherwise, with the effect these seeds could detect and the seeds the minimal effect would need.

Beside each: the effect size d_z, the share of seeds where A beats B, a paired bootstrap bound and a Wilcoxon
signed-rank p as second opinions. Nothing here knows which way an outcome "should" go.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from ablate.config import RunConfig, config_hash, typed_object
from ablate.schemas import ClaimSpec, Direction, JudgeConfig, JudgeSettings
from ablate.stats import (adjust, bootstrap_bound, detectable_effect, seeds_needed, t_bound, t_pvalue,
                          wilcoxon_pvalue)


class Verdict(str, Enum):
    supported = "SUPPORTED"
    contradicted = "CONTRADICTED"
    inconclusive = "INCONCLUSIVE"


def arms(claim: ClaimSpec) -> list[tuple[str, dict[str, Any]]]:
    """The variants a claim needs: (arm name, its overrides), each arm times each spread level."""
    named = [("a", claim.a), ("b", claim.b)]
    if claim.spread_over is None:
        return named
    key = claim.spread_over.key
    return [(name, {**arm, key: level}) for name, arm in named for level in claim.spread_over.levels]


def overrides(values: dict[str, Any]) -> list[str]:
    """An arm as command-line overrides (``model.bn=pre``, ``optim=adam``)."""
    return [f"{key}={value}" for key, value in values.items()]


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
    note: str = ""


@dataclass
class ClaimVariants:
    """The runs one claim needs in one context: (arm, spread level, seed) -> config hash."""

    seeds: list[int]
    hashes: dict[tuple[str, Any, int], str] = field(default_factory=dict)


def paired_values(claim: ClaimSpec, runs: dict[str, dict[str, Any]],
                  variants: ClaimVariants) -> tuple[np.ndarray, np.ndarray]:
    """Per seed, A's and B's metric (the spread over levels for a spread claim), seeds present in both arms."""
    def metric(config: str) -> float:
        run = runs.get(config)
        if run is None:
            return math.nan
        if run["status"] != "FINISHED":
            return math.nan if claim.failed_as is None else claim.failed_as
        return run.get(claim.metric, math.nan)

    levels = claim.spread_over.levels if claim.spread_over else [None]
    a, b = (np.array([[metric(variants.hashes[arm, level, seed]) for level in levels] for seed in variants.seeds],
                     dtype=float) for arm in ("a", "b"))
    a, b = (a.max(1) - a.min(1), b.max(1) - b.min(1)) if claim.spread_over else (a[:, 0], b[:, 0])
    both = np.isfinite(a) & np.isfinite(b)
    return a[both], b[both]


def compare(name: str, claim: ClaimSpec, context: str, a: np.ndarray, b: np.ndarray) -> Judged:
    """The tests of one claim in one context (before the family's correction)."""
    judged = Judged(name, claim, context, len(a))
    if len(a) < 3:
        judged.note = "fewer than 3 paired seeds"
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


def judge(judged: list[Judged], settings: JudgeSettings, differences: dict[tuple[str, str], np.ndarray]) -> None:
    """The family's correction and each verdict, in place: the claimed way and the other way each form a family."""
    testable = [j for j in judged if j.n >= 3]
    method, alpha = settings.correction.value, settings.alpha
    adjusted, levels = adjust([j.p for j in testable], method, alpha)
    other, _ = adjust([j.p_other for j in testable], method, alpha)
    for j, p_adj, level, p_other in zip(testable, adjusted, levels, other):
        d = differences[j.name, j.context]
        j.p_adjusted, j.level = p_adj, level
        confidence = 1 - level
        j.bound, j.bootstrap = _interval(j, d, confidence, settings.bootstrap)
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
            j.detectable = detectable_effect(j.sd, j.n, level, settings.power)
            j.needed = seeds_needed(j.margin, j.sd, level, settings.power)
        if t_holds != boot_holds:
            j.note = "the t interval and the bootstrap disagree"


def _interval(j: Judged, d: np.ndarray, confidence: float, resamples: int):
    """The t interval and the bootstrap's: one-sided the claimed way, two one-sided bounds for an equivalence."""
    if j.claim.direction == Direction.equal:
        return ((t_bound(d, confidence, "greater"), t_bound(d, confidence, "less")),
                (bootstrap_bound(d, confidence, "greater", resamples), bootstrap_bound(d, confidence, "less", resamples)))
    if j.claim.direction == Direction.greater:
        return (t_bound(d, confidence, "greater"), math.inf), (bootstrap_bound(d, confidence, "greater", resamples), math.inf)
    return (-math.inf, t_bound(d, confidence, "less")), (-math.inf, bootstrap_bound(d, confidence, "less", resamples))


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


def verdict_tables(judged: list[Judged], settings: JudgeSettings) -> str:
    """The matrix (one verdict per claim and context, and how many contexts it holds in), then the details."""
    from ablate.tables import markdown_table

    contexts = list(dict.fromkeys(j.context for j in judged))
    rows = []
    for name in dict.fromkeys(j.name for j in judged):
        mine = {j.context: j for j in judged if j.name == name}
        row = {"claim": next(iter(mine.values())).claim.text}
        for context in contexts:
            j = mine.get(context)
            row[context] = "–" if j is None else f"{j.verdict.value} ({j.diff:+.3g})"
        held = sum(j.verdict == Verdict.supported for j in mine.values())
        row["holds in"] = f"{held} of {len(mine)} contexts"
        rows.append(row)
    detail = [{"claim": j.claim.text, "context": j.context, "metric": j.claim.metric, "n": j.n,
               "A": _number(j.a_mean), "B": _number(j.b_mean), "A − B": f"{j.diff:+.4f}" if j.n >= 3 else "–",
               "interval (1 − level)": _interval_text(j.bound) if j.n >= 3 else "–",
               "bootstrap": _interval_text(j.bootstrap) if j.n >= 3 else "–",
               "p": _number(j.p), "p adj": _number(j.p_adjusted), "level": _number(j.level), "d_z": _number(j.d_z),
               "P(A better)": _number(j.improved), "Wilcoxon p": _number(j.wilcoxon), "verdict": j.verdict.value,
               "detectable / seeds needed": (f"{_number(j.detectable)} / {j.needed}" if j.needed else "–"),
               "note": j.note} for j in judged]
    tests = "\n".join(f"- {j.claim.text}: {_test_text(j.claim)}" for j in
                      {j.name: j for j in judged}.values())
    return (markdown_table(pd.DataFrame(rows)) + "\n\n" + markdown_table(pd.DataFrame(detail)) +
            f"\n\nFamily: {len(judged)} tests (claims x contexts), {settings.correction.value} correction at alpha "
            f"{settings.alpha}; each interval is one-sided at confidence 1 − level, the level its corrected test "
            f"uses, so it excludes 0 exactly when that test rejects. Detectable: the true effect {settings.seeds} "
            f"seeds find with power {settings.power}; seeds needed: for the claim's minimal effect.\n\nTests:\n{tests}")


def _test_text(claim: ClaimSpec) -> str:
    what = {Direction.greater: "A > B", Direction.less: "A < B",
            Direction.equal: "|A − B| within the margin (two one-sided tests)"}[claim.direction]
    spread = f", of the per-seed spread (max − min) over {claim.spread_over.key} in {claim.spread_over.levels}" \
        if claim.spread_over else ""
    effect = f"{claim.minimal_effect:g}" + (" of B's mean" if claim.relative else "")
    failed = f"; a diverged run scores {claim.failed_as:g}" if claim.failed_as is not None else ""
    return f"paired t-test over seeds of {claim.metric}{spread}, {what}; minimal effect {effect}{failed}"


# ---------------------------------------------------------------------------------------- the command
def main(cfg: JudgeConfig, command_overrides: list[str]) -> None:
    """Train every arm of every claim in every context over the seeds (resumable), judge, print and record.
    Runs inside Hydra's compose API (``command``), which composes each variant through one ``ComposeCache``."""
    from hydra import compose
    from hydra.core.global_hydra import GlobalHydra

    from ablate.compose import ComposeCache
    from ablate.config import PopulationSettings
    from ablate.data import DataError, cached_splits
    from ablate.runner import train_and_log_all
    from ablate.sweep import Sweep, announce
    from ablate.tracking import RunKind, RunStatus, Tracker

    began = time.perf_counter()
    settings = cfg.judge
    run_overrides = [o for o in command_overrides if not o.lstrip("+~").startswith(("judge.", "claims", "hydra."))]
    loader = GlobalHydra.instance().config_loader()
    cache = ComposeCache(lambda groups: compose("config", overrides=list(groups)), loader)
    variants: dict[str, RunConfig] = {}
    needed: dict[tuple[str, str], ClaimVariants] = {}
    skipped: list[str] = []
    for context, values in settings.contexts.items():
        context_overrides = overrides(values)
        base = cache.run_config([*run_overrides, *context_overrides])
        try:
            cached_splits(base.data)
        except DataError as err:
            skipped.append(f"context {context} skipped: {err}")
            continue
        for name, claim in cfg.claims.items():
            table = needed[name, context] = ClaimVariants(list(range(settings.seeds)))
            levels = claim.spread_over.levels if claim.spread_over else [None]
            for (arm, values), level in zip(arms(claim), [level for _ in "ab" for level in levels]):
                for seed in table.seeds:
                    run = cache.run_config([*run_overrides, *context_overrides, *overrides(values), f"seed={seed}",
                                            "experiment_name=claims"])
                    table.hashes[arm, level, seed] = key = config_hash(run)
                    variants[key] = run
    announce(f"{len(variants)} variants composed in {time.perf_counter() - began:.1f} s")
    for line in skipped:
        announce(line)
    tracker = Tracker(cfg.tracking)
    sweep = Sweep(tracker, ["claims", *sorted(command_overrides)], len(variants), ["claims", "seed"])
    train_and_log_all(list(variants.values()), PopulationSettings(), sweep=sweep.ref,
                      on_result=lambda c, r: sweep.job_done())
    sweep.close("(the verdicts: reports/claims.md)")
    runs = {r.config_hash: {"status": r.status.value, **r.metrics,
                            "gap": r.metrics.get("train_eval_acc", math.nan) - r.metrics.get("val_acc", math.nan)}
            for status in (RunStatus.finished, RunStatus.failed)
            for r in tracker.runs(sweep_id=sweep.sweep_id, kind=RunKind.train, status=status)}
    judged, differences = [], {}
    for (name, context), table in needed.items():
        a, b = paired_values(cfg.claims[name], runs, table)
        differences[name, context] = a - b
        judged.append(compare(name, cfg.claims[name], context, a, b))
    judge(judged, settings, differences)
    text = verdict_tables(judged, settings)
    seconds = time.perf_counter() - began
    contexts = ", ".join(dict.fromkeys(context for _, context in needed))
    out = Path("reports") / "claims.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(f"# Claims, tested\n\n{len(variants)} variants, {settings.seeds} seeds, {cfg.trainer.epochs} "
                   f"epochs, contexts: {contexts}; {seconds:.0f} s.\n\n{text}\n" + "".join(f"\n{s}\n" for s in skipped))
    tracker.run(sweep.parent.run_id).log_files([out], "report")
    print(f"\n{text}\n" + "".join(f"\n{line}" for line in skipped) +
          f"\n\njudged in {seconds:.0f} s; written: {out} (also logged to the sweep's MLflow run {sweep.parent.run_id})")


def command(argv: list[str]) -> None:
    """``python -m ablate.claims [overrides]``: conf/judge.yaml composed with the overrides, as Hydra would."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import ConfigCompositionException

    from ablate import UserError
    from ablate.schemas import register_configs
    from ablate.provenance import REPO

    if {"-h", "--help"} & set(argv):
        print(__doc__ + "\nUsage: python -m ablate.claims [key=value ...]   e.g. judge.seeds=10 'claims=[notes]' "
              "model=cnn\nSettings: conf/judge.yaml (JudgeSettings); claims: conf/claims/ (ClaimSpec).")
        return
    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        try:
            config = compose("judge", overrides=argv)
        except ConfigCompositionException as err:  # a bad override: say which and why, as python -m ablate does
            raise UserError(f"{err}: {err.__cause__}") from err
        main(typed_object(config), argv)


if __name__ == "__main__":
    import sys

    from ablate.cli import run_interruptible

    run_interruptible(lambda: command(sys.argv[1:]), "finished runs stay recorded and the interrupted ones are "
                                                     "marked KILLED; the same command resumes.")
