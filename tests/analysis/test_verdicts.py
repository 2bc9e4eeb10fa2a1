"""Verdicts on constructed data: the verdict follows the numbers, whichever way they point, after the family's
correction; and the claims command end to end, with the shipped claims, a user's own, and a bad one."""

import math

import numpy as np
import pytest
from scipy import stats

from ablate.analysis.verdicts import (ClaimVariants, Paired, Verdict, compare, firmness, judge, paired_values,
                                      verdict_tables)
from ablate.config.commands import ClaimSpec, Correction, Direction, JudgeSettings, Spread
from ablate.execution.claims import arms

SETTINGS = JudgeSettings(seeds=8, bootstrap=2000, contexts={"here": {}})
NOISE8 = np.array([0.004, -0.006, 0.002, 0.007, -0.003, -0.005, 0.001, 0.0])  # per-seed noise, sd ~0.0047


def claim(direction="greater", **fields):
    return ClaimSpec(text=f"A {direction} B", a={"model.bn": "pre"}, b={"model.bn": "post"},
                     direction=Direction(direction), **fields)


def judged(spec, a, b, settings=SETTINGS):
    """Judge one claim (a family of one) from per-seed values of its two arms."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    [result] = family([(spec, a, b)], settings)
    return result


def family(cases, settings=SETTINGS):
    results = [compare(f"c{i}", spec, "here", a, b) for i, (spec, a, b) in enumerate(cases)]
    judge(results, settings, {(f"c{i}", "here"): a - b for i, (_, a, b) in enumerate(cases)})
    return results


@pytest.mark.parametrize("a_minus_b, expected", [(0.05, Verdict.supported), (-0.05, Verdict.contradicted),
                                                 (0.0, Verdict.inconclusive)])
def test_the_verdict_follows_the_data(a_minus_b, expected):
    result = judged(claim(), 0.8 + a_minus_b + NOISE8, 0.8 - 0.5 * NOISE8[::-1])
    assert result.verdict == expected and result.n == 8
    assert result.diff == pytest.approx(a_minus_b + NOISE8.mean() + 0.5 * NOISE8.mean())


@pytest.mark.parametrize("direction, a_minus_b", [("greater", 0.01), ("less", -0.01)])
def test_p_and_interval_are_the_paired_one_sided_t_test(direction, a_minus_b):
    a, b = 0.5 + a_minus_b + NOISE8, 0.5 - np.roll(NOISE8, 3)
    result = judged(claim(direction), a, b)
    d = a - b
    assert result.p == pytest.approx(stats.ttest_1samp(d, 0, alternative=direction).pvalue, rel=1e-9)
    assert result.p == pytest.approx(stats.ttest_rel(a, b, alternative=direction).pvalue, rel=1e-9)
    half = stats.t.ppf(0.95, 7) * d.std(ddof=1) / math.sqrt(8)  # one claim: level alpha, a 95% one-sided bound
    assert result.bound == pytest.approx((d.mean() - half, math.inf) if direction == "greater" else
                                         (-math.inf, d.mean() + half))
    assert result.verdict == Verdict.supported and result.level == 0.05


def test_a_less_claim_whose_data_point_the_other_way_is_contradicted():
    result = judged(claim("less"), 0.08 + NOISE8, 0.03 - NOISE8)
    assert result.diff > 0 and result.verdict == Verdict.contradicted


def test_raw_p_below_alpha_is_not_enough_when_the_corrected_p_is_not():
    """Seven claims, one with raw p ~0.02: alone it would be supported; Holm over seven tests says no."""
    rng = np.random.default_rng(5)
    noise = rng.normal(0, 0.01, 8)
    effect = 0.01 * noise.std(ddof=1) * 0 + 2.2 * noise.std(ddof=1) / math.sqrt(8)  # t ~ 2.2 -> one-sided p ~0.03
    spec = claim()
    target = (spec, 0.5 + effect + noise - noise.mean(), np.full(8, 0.5))
    others = [(claim(), 0.5 + rng.normal(0, 0.01, 8), np.full(8, 0.5)) for _ in range(6)]
    alone = judged(*target)
    assert alone.p < 0.05 and alone.verdict == Verdict.supported
    in_family = family([target, *others])[0]
    assert in_family.p == pytest.approx(alone.p) and in_family.p_adjusted >= 0.05
    assert in_family.verdict == Verdict.inconclusive and in_family.level < 0.05
    assert not math.isnan(in_family.detectable) and in_family.needed > 8
    bh = family([target, *others], JudgeSettings(seeds=8, bootstrap=2000, contexts={"here": {}},
                                                   correction=Correction.bh))[0]
    assert bh.p_adjusted >= alone.p  # every correction costs something


@pytest.mark.parametrize("gap, expected", [(0.07, Verdict.supported), (0.09, Verdict.contradicted),
                                           (0.08, Verdict.inconclusive)])
def test_equivalence_against_its_margin(gap, expected):
    """Margin: 1% of B's mean norm (0.08 here); the interval is ~+-0.004 wide: just inside, just outside, across."""
    spec = ClaimSpec(text="equal", a={"optim.l2": "penalty"}, b={"optim.l2": "decoupled"}, metric="weight_norm",
                     direction=Direction.equal, minimal_effect=0.01, relative=True)
    result = judged(spec, 8.0 + gap + NOISE8, np.full(8, 8.0))
    assert result.margin == pytest.approx(0.08)
    assert result.bound[0] < gap < result.bound[1] and result.bound[1] - result.bound[0] < 0.01
    assert result.verdict == expected


def test_identical_differences_on_every_seed_decide_by_their_sign():
    """Binary fractions: every seed's difference is exactly 2**-5, the sd exactly 0."""
    seeds = np.arange(8) / 16
    assert judged(claim(), 0.5 + 2**-5 + seeds, 0.5 + seeds).verdict == Verdict.supported
    assert judged(claim(), 0.5 - 2**-5 + seeds, 0.5 + seeds).verdict == Verdict.contradicted
    same = judged(claim(), 0.5 + seeds, 0.5 + seeds)
    assert same.verdict == Verdict.inconclusive and (same.p, same.bound[0]) == (1.0, 0.0)


def test_effect_size_share_of_improvement_and_second_opinions():
    a, b = 0.6 + NOISE8, np.array([0.55, 0.62, 0.58, 0.57, 0.59, 0.61, 0.56, 0.63])
    result = judged(claim(), a, b)
    d = a - b
    assert result.d_z == pytest.approx(d.mean() / d.std(ddof=1))
    assert result.improved == pytest.approx(np.mean(d > 0))
    assert result.wilcoxon == pytest.approx(stats.wilcoxon(d, alternative="greater").pvalue)
    assert result.bootstrap[0] == pytest.approx(result.bound[0], abs=0.01)


def test_too_few_seeds_is_inconclusive():
    result = judged(claim(), [1.0, 1.1], [0.5, 0.6])
    assert result.verdict == Verdict.inconclusive and result.note == "fewer than 3 paired seeds"


def test_runs_are_paired_by_seed_failed_runs_score_as_declared_and_spreads_are_ranges():
    spec = ClaimSpec(text="s", a={"model.bn": "pre"}, b={"model.bn": "none"}, direction=Direction.less,
                     spread_over=Spread("model.init_scale", [0.2, 1.0]), failed_as=0.1)
    assert [name for name, _ in arms(spec)] == ["a", "a", "b", "b"]
    variants = ClaimVariants([0, 1, 2])
    runs = {}
    for arm, values in (("a", (0.80, 0.82)), ("b", (0.5, 0.9))):
        for level, value in zip((0.2, 1.0), values):
            for seed in (0, 1, 2):
                key = f"{arm}{level}{seed}"
                variants.hashes[arm, level, seed] = key
                runs[key] = {"status": "FINISHED", "val_acc": value + seed / 100}
    runs["b0.22"]["status"] = "FAILED"  # seed 2 of arm b diverged at init 0.2: scores 0.1
    paired = paired_values(spec, runs, variants)
    assert paired.a == pytest.approx([0.02] * 3) and paired.b == pytest.approx([0.4, 0.4, 0.92 - 0.1])
    assert paired.failed == (0, 1) and not paired.unjudgeable
    del runs["a1.01"]  # a missing run: no verdict on the seeds that are left
    assert "1 run(s) missing" in paired_values(spec, runs, variants).unjudgeable


def seeds_of(values_a, values_b, failed_a=(), metric="val_acc", **fields):
    """A claim's runs over len(values_a) seeds, arm A's ``failed_a`` seeds FAILED; returns (claim, Paired)."""
    spec = ClaimSpec(text="t", a={"model.bn": "pre"}, b={"model.bn": "none"}, metric=metric, **fields)
    variants, runs = ClaimVariants(list(range(len(values_a)))), {}
    for arm, values in (("a", values_a), ("b", values_b)):
        for seed, value in enumerate(values):
            variants.hashes[arm, None, seed] = key = f"{arm}{seed}"
            runs[key] = {"status": "FAILED" if arm == "a" and seed in failed_a else "FINISHED", metric: value}
    return spec, paired_values(spec, runs, variants)


def test_a_treatment_that_diverges_on_some_seeds_is_not_judged_on_its_survivors():
    """A beats B by 0.05 on the 20 seeds where it trains; it diverges on 10. On survivors alone that is SUPPORTED;
    scored at an accuracy's worst (0), the claim is not."""
    rng = np.random.default_rng(1)
    b = 0.80 + rng.normal(0, 0.01, 30)
    a = b + 0.05 + rng.normal(0, 0.01, 30)
    spec, paired = seeds_of(a, b, failed_a=range(0, 30, 3))
    assert paired.failed == (10, 0) and (paired.a[::3] == 0).all()
    survivors = np.setdiff1d(np.arange(30), np.arange(0, 30, 3))
    assert judged(spec, a[survivors], b[survivors]).verdict == Verdict.supported
    result = family([(spec, paired.a, paired.b)])[0]
    result.failed = paired.failed
    assert result.verdict == Verdict.contradicted and "failed A/B" in verdict_tables([result], SETTINGS)
    assert "| 10/0 |" in verdict_tables([result], SETTINGS)
    spec, paired = seeds_of(a, b, failed_a=range(0, 30, 3), failed_as=0.79)  # the claim's own score for a failure
    assert paired.a[::3] == pytest.approx([0.79] * 10)


def test_failures_in_a_metric_without_a_worst_value_leave_the_claim_inconclusive_with_the_reason():
    spec, paired = seeds_of(np.full(8, 0.1) + NOISE8, np.full(8, 0.3), failed_a=[2], metric="gap", direction="less")
    result = compare("c", spec, "here", paired.a, paired.b, paired.failed, paired.unjudgeable)
    judge([result], SETTINGS, {("c", "here"): paired.a - paired.b})
    assert result.verdict == Verdict.inconclusive and "gap has no worst value to score them: set failed_as" in result.note


def test_a_clear_verdict_is_firm_and_one_at_its_margin_is_fragile_with_the_seeds_that_would_settle_it():
    rng = np.random.default_rng(3)
    b, z = 0.80 + rng.normal(0, 0.01, 30), rng.normal(0, 0.01, 30)
    z -= z.mean()
    at_margin = stats.t.ppf(1 - 0.05, 29) * z.std(ddof=1) / np.sqrt(30) * 1.02  # Holm: alpha for the larger p of 2
    cases = [(claim(), b + 0.05 + z, b),  # +0.05 with sd 0.01: every subsample agrees
             (claim(), b + at_margin + z, b)]  # t just past its critical value (p adj 0.047): subsamples split
    settings = JudgeSettings(seeds=30, bootstrap=200, contexts={"here": {}})
    results = family(cases, settings)
    firmness(results, settings, {(r.name, "here"): Paired(a, b) for r, (_, a, b) in zip(results, cases)})
    clear, marginal = results
    assert clear.firmness == 1.0 and not clear.fragile and clear.settle is None
    assert marginal.fragile and 0.1 < marginal.firmness < 0.9 and marginal.settle > 30
    assert "fragile (" in verdict_tables(results, settings)


def test_the_same_data_gives_the_same_table_every_time():
    cases = [(claim(), 0.8 + NOISE8, 0.79 - NOISE8[::-1]), (claim("less"), 0.5 + NOISE8, 0.52 + NOISE8 * 2)]
    first, second = (verdict_tables(family(cases), SETTINGS) for _ in range(2))
    assert first == second and "bootstrap" in first  # the bootstrap is seeded


def test_the_table_says_where_an_anytime_valid_rule_would_have_stopped_on_the_same_seeds():
    from ablate.analysis.verdicts import anytime_decisions

    rng = np.random.default_rng(3)
    cases = [(claim(minimal_effect=0.01), 0.8 + 0.1 + rng.normal(0, 0.01, 30), np.full(30, 0.8)),  # d_z ~10
             (claim(minimal_effect=0.01), 0.8 + rng.normal(0, 0.02, 30), np.full(30, 0.8))]  # no effect
    results = family(cases, JudgeSettings(seeds=30, bootstrap=200, contexts={"here": {}}))
    anytime_decisions(results, SETTINGS, {(f"c{i}", "here"): a - b for i, (_, a, b) in enumerate(cases)})
    big, none = results
    assert big.anytime.stop.value == "SUPPORTED" and big.anytime.seeds <= 10 and big.anytime.lower > 0
    assert none.anytime.stop.value in ("OPEN", "FUTILE") and none.anytime.lower < 0 < none.anytime.upper
    table = verdict_tables(results, SETTINGS)
    assert f"SUPPORTED at seed {big.anytime.seeds}, " in table and "alpha / 2 (Bonferroni)" in table


def test_a_claim_that_cannot_settle_by_max_seeds_stops_out_of_reach_and_the_table_says_so():
    from ablate.analysis.verdicts import anytime_decisions, sequential_verdicts

    rng = np.random.default_rng(4)
    cases = [(claim(minimal_effect=0.001), 0.802 + rng.normal(0, 0.05, 60), np.full(60, 0.8))]  # d_z ~0.04
    for min_reach, stop in [(0.02, "OUT_OF_REACH"), (0.0, "OPEN")]:
        settings = JudgeSettings(seeds="auto", min_reach=min_reach, bootstrap=200, contexts={"here": {}})
        results = family(cases, settings)
        anytime_decisions(results, settings, {("c0", "here"): cases[0][1] - cases[0][2]})
        sequential_verdicts(results, settings)
        [result] = results
        assert result.anytime.stop.value == stop and result.verdict == Verdict.inconclusive
        table = verdict_tables(results, settings)
        assert ("less than 2% chance to settle by judge.max_seeds=100" in table) == (stop == "OUT_OF_REACH")
