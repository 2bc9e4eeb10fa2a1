"""The statistics on known inputs: textbook corrections, scipy's tests, closed forms, simulated coverage."""

import math

import numpy as np
import pytest
from scipy import stats

from ablate.analysis.stats import (adjust, bootstrap_bound, detectable_effect, mean_ci, power, seeds_needed, t_bound, t_pvalue, wilcoxon_pvalue)


def test_holm_on_the_textbook_example():
    # p = (0.01, 0.04, 0.03, 0.005): sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04
    # -> monotone 0.02, 0.03, 0.06, 0.06; step levels alpha/4, alpha/3, alpha/2, alpha/1.
    adjusted, levels = adjust([0.01, 0.04, 0.03, 0.005], "holm", 0.05)
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert levels == pytest.approx([0.05 / 3, 0.05, 0.05 / 2, 0.05 / 4])


def test_benjamini_hochberg_is_scipys_and_its_level_follows_the_rejections():
    p = [0.01, 0.035, 0.03, 0.005, 0.2]
    adjusted, levels = adjust(p, "bh", 0.05)
    assert adjusted == pytest.approx(list(stats.false_discovery_control(p)))
    rejected = sum(a < 0.05 for a in adjusted)
    assert rejected == 4 and levels == pytest.approx([rejected * 0.05 / 5] * 5)


def test_one_sided_p_and_bound_are_scipys_t_test_and_agree():
    d = np.random.default_rng(3).normal(0.2, 1.0, 25)
    for side in ("greater", "less"):
        p = t_pvalue(d, side)
        assert p == pytest.approx(stats.ttest_1samp(d, 0, alternative=side).pvalue, rel=1e-12)
        # the bound at confidence 1 - p sits exactly at 0: the interval excludes 0 exactly when p < level
        assert t_bound(d, 1 - p, side) == pytest.approx(0, abs=1e-12)
    assert t_pvalue(d, "greater", shift=0.5) == pytest.approx(stats.ttest_1samp(d - 0.5, 0, alternative="greater").pvalue)


def test_identical_differences_decide_by_their_sign():
    d = np.full(5, 0.25)
    assert (t_pvalue(d, "greater"), t_pvalue(d, "less"), t_pvalue(d, "greater", 0.25)) == (0.0, 1.0, 1.0)
    assert t_bound(d, 0.99, "greater") == 0.25


def test_bootstrap_bounds_cover_the_true_effect_at_their_level():
    """Over simulated experiments (true effect 0.3, 30 seeds), the 95% lower bound lies below 0.3 about 95% of
    the time; a percentile bootstrap runs a little short with few seeds, so 0.90-0.99 is accepted."""
    rng = np.random.default_rng(0)
    covered = [bootstrap_bound(rng.normal(0.3, 1.0, 30), 0.95, "greater", 2000, seed=i) < 0.3 for i in range(400)]
    assert 0.90 <= np.mean(covered) <= 0.99
    d = rng.normal(0.3, 1.0, 30)
    assert bootstrap_bound(d, 0.95, "greater", 5000) == pytest.approx(t_bound(d, 0.95, "greater"), abs=0.05)


def test_power_against_the_normal_closed_form_and_its_inverses():
    # large n: the noncentral t approaches the normal closed form Phi(delta sqrt(n) / sd - z_{1-alpha})
    closed = stats.norm.cdf(0.2 * math.sqrt(400) - stats.norm.ppf(0.95))
    assert power(0.2, 1.0, 400, 0.05) == pytest.approx(closed, abs=0.003)
    assert power(0.5, 1.0, 27, 0.05) == pytest.approx(0.8118, abs=1e-3)  # n = 27 for d = 0.5: the standard table
    assert seeds_needed(0.5, 1.0, 0.05, 0.8) == 27
    mde = detectable_effect(2.0, 27, 0.05, 0.8)
    assert power(mde, 2.0, 27, 0.05) == pytest.approx(0.8, abs=1e-6) and mde == pytest.approx(1.0, abs=0.02)


def test_wilcoxon_is_scipys_signed_rank_test():
    d = np.array([0.3, -0.1, 0.5, 0.2, 0.4, -0.05, 0.25])
    assert wilcoxon_pvalue(d, "greater") == pytest.approx(stats.wilcoxon(d, alternative="greater").pvalue)
    assert math.isnan(wilcoxon_pvalue(np.zeros(4), "greater"))


def test_mean_ci_on_known_values():
    mean, std, half, n = mean_ci([1.0, 2.0, 3.0])
    assert (mean, std, n) == (2.0, 1.0, 3)
    assert half == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)  # t(0.975, df=2) = 4.302653
    assert math.isnan(mean_ci([5.0])[2]) and mean_ci([])[3] == 0
