"""Statistics over runs: means with confidence intervals, and the tests the claims and reports stand on."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats


def mean_ci(values: pd.Series | np.ndarray) -> tuple[float, float, float, int]:
    """Mean, sample std and the half-width of the 95% t-interval of the mean."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    std = float(x.std(ddof=1)) if n > 1 else math.nan
    half = float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n)) if n > 1 else math.nan
    return float(x.mean()), std, half, n


def effect_table(runs: pd.DataFrame, factor: str, metrics: list[str]) -> pd.DataFrame:
    """Main effect of one factor: per level, mean ± std and 95% CI of each metric over all runs at that level."""
    rows = []
    for level, group in runs.groupby(factor, sort=True):
        row: dict[str, object] = {factor: level, "runs": len(group)}
        for metric in metrics:
            mean, std, half, _ = mean_ci(group[metric])
            row[metric] = mean
            row[f"{metric} std"] = std
            row[f"{metric} ci95"] = half
        rows.append(row)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------- paired comparisons over seeds
def t_pvalue(d: np.ndarray, alternative: str, shift: float = 0.0) -> float:
    """One-sided one-sample t-test of mean(d) against ``shift`` (``greater``: mean > shift). With every difference
    equal (sd 0) the sign decides: 0 if the mean lies beyond the shift in the alternative's direction, else 1."""
    d = np.asarray(d, dtype=float) - shift
    if np.ptp(d) == 0:
        beyond = d[0] > 0 if alternative == "greater" else d[0] < 0
        return 0.0 if beyond else 1.0
    t = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))  # scipy's ttest_1samp, without its wrapper's cost
    return float(stats.t.sf(t, len(d) - 1) if alternative == "greater" else stats.t.cdf(t, len(d) - 1))


def t_bound(d: np.ndarray, level: float, side: str) -> float:
    """The one-sided confidence bound of the mean at ``level``: a lower bound for ``greater``, an upper one for
    ``less``. It excludes 0 exactly when ``t_pvalue(d, side)`` < 1 - level."""
    d = np.asarray(d, dtype=float)
    half = stats.t.ppf(level, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d)) if np.ptp(d) > 0 else 0.0
    return float(d.mean() - half if side == "greater" else d.mean() + half)


def bootstrap_bound(d: np.ndarray, level: float, side: str, resamples: int, seed: int = 0) -> float:
    """The same bound from the paired bootstrap (seeds resampled with replacement; percentile of the means)."""
    d = np.asarray(d, dtype=float)
    means = d[np.random.default_rng(seed).integers(0, len(d), (resamples, len(d)))].mean(1)
    return float(np.quantile(means, 1 - level if side == "greater" else level))


def wilcoxon_pvalue(d: np.ndarray, alternative: str) -> float:
    """The signed-rank test as a check that does not assume normal differences (NaN where every d is 0)."""
    d = np.asarray(d, dtype=float)
    if not np.any(d):
        return math.nan
    return float(stats.wilcoxon(d, alternative=alternative).pvalue)


def adjust(pvalues: list[float], method: str, alpha: float) -> tuple[list[float], list[float]]:
    """Adjusted p-values across a family of tests, and each test's level: the one-sided interval at confidence
    1 - level matches its adjusted test. Holm: level alpha / (m - rank + 1) (rank 1 = smallest p); Benjamini-
    Hochberg: R * alpha / m for R rejections (false-coverage-rate intervals); none: alpha."""
    p = np.asarray(pvalues, dtype=float)
    m = len(p)
    if m == 0:
        return [], []
    order = np.argsort(p, kind="stable")
    adjusted, levels = np.empty(m), np.full(m, alpha)
    if method == "holm":
        running = 0.0
        for rank, i in enumerate(order):
            running = max(running, min(1.0, (m - rank) * p[i]))
            adjusted[i], levels[i] = running, alpha / (m - rank)
    elif method == "bh":
        running = 1.0
        for rank in range(m - 1, -1, -1):
            i = order[rank]
            running = min(running, min(1.0, m / (rank + 1) * p[i]))
            adjusted[i] = running
        levels[:] = max(1, int((adjusted < alpha).sum())) * alpha / m
    else:
        adjusted = p.copy()
    return adjusted.tolist(), levels.tolist()


def power(effect: float, sd: float, n: int, alpha: float) -> float:
    """Power of the one-sided paired t-test at level ``alpha`` to detect a true mean difference ``effect`` with
    differences of standard deviation ``sd`` over ``n`` seeds (noncentral t)."""
    if sd == 0:
        return 1.0 if effect > 0 else alpha
    critical = stats.t.ppf(1 - alpha, n - 1)
    return float(stats.nct.sf(critical, n - 1, effect * math.sqrt(n) / sd))


def detectable_effect(sd: float, n: int, alpha: float, target: float) -> float:
    """The smallest true effect this many seeds detect with probability ``target`` (the minimal detectable
    effect): what an inconclusive claim can still rule in or out."""
    if sd == 0:
        return 0.0
    from scipy.optimize import brentq

    return float(brentq(lambda effect: power(effect, sd, n, alpha) - target, 1e-12 * sd, 100 * sd))


def seeds_needed(effect: float, sd: float, alpha: float, target: float, cap: int = 100_000) -> int:
    """The fewest seeds whose test detects ``effect`` with probability ``target`` (``cap`` if none below it)."""
    if sd == 0:
        return 3
    low, high = 3, 3
    while power(effect, sd, high, alpha) < target:
        if high >= cap:
            return cap
        low, high = high, min(cap, high * 2)
    while low < high:  # power grows with n: bisect for the first n that reaches the target
        mid = (low + high) // 2
        low, high = (mid + 1, high) if power(effect, sd, mid, alpha) < target else (low, mid)
    return high


def best_against_others(runs: pd.DataFrame, variant_keys: list[str], metric: str = "val_acc",
                        alpha: float = 0.05) -> pd.DataFrame:
    """The best variant against every other, paid for having picked it: the best is chosen by its mean ``metric``
    on half the seeds (every other seed, in order) and tested on the other half, one-sided, paired over the seeds
    both have there (Welch's where they share fewer than 3), Holm-corrected over the comparisons. A test on the
    seeds that chose the winner would favour it (the winner's curse); on fresh seeds the chance that a variant no
    better than the others is called best stays at ``alpha`` (a test simulates 1,000 studies of equal variants).

    One row per other variant, best mean on the test seeds first; ``attrs``: the best, the seeds each half holds.
    """
    variants = runs.assign(variant=list(zip(*(runs[k] for k in variant_keys))))
    if variants["variant"].nunique() < 2:
        return pd.DataFrame()
    if "seed" in variants:
        codes, names = pd.factorize(variants["variant"])  # tuples as column labels would become a MultiIndex
        table = variants.assign(code=codes).groupby(["seed", "code"])[metric].mean().unstack()  # seeds x variants
        chosen_on, tested_on = list(table.index[0::2]), list(table.index[1::2])
        halves = [{names[c]: half[c].dropna() for c in half.columns} for half in (table.iloc[0::2], table.iloc[1::2])]
    else:  # no seeds to match: each variant's runs split by their order
        chosen_on = tested_on = []
        values = {v: g[metric].reset_index(drop=True) for v, g in variants.groupby("variant", sort=False)}
        halves = [{v: x.iloc[0::2] for v, x in values.items()}, {v: x.iloc[1::2].reset_index(drop=True)
                                                               for v, x in values.items()}]
    choose, test = halves
    best = max((v for v in choose if len(choose[v])), key=lambda v: choose[v].mean())
    rows = []
    for variant, other in test.items():
        if variant == best:
            continue
        mine = test[best]
        shared = mine.index.intersection(other.index) if "seed" in variants else []
        if len(shared) >= 3:
            kind, n, p = "paired t", len(shared), t_pvalue((mine.loc[shared] - other.loc[shared]).to_numpy(float), "greater")
        elif len(mine) >= 2 and len(other) >= 2:
            kind, n = "Welch t", min(len(mine), len(other))
            p = float(stats.ttest_ind(mine, other, equal_var=False, alternative="greater").pvalue)
        else:
            kind, n, p = "none (too few runs)", min(len(mine), len(other)), math.nan
        rows.append({**dict(zip(variant_keys, variant)), "mean": other.mean(), "best − it": mine.mean() - other.mean(),
                     "n": n, "test": kind, "p": p})
    table = pd.DataFrame(rows).sort_values("mean", ascending=False, kind="stable").reset_index(drop=True)
    tested = table["p"].notna()
    table["p adj (Holm)"] = math.nan
    if tested.any():
        table.loc[tested, "p adj (Holm)"] = adjust(table.loc[tested, "p"].tolist(), "holm", alpha)[0]
    table.attrs.update(best=dict(zip(variant_keys, best)), chosen_on=list(chosen_on), tested_on=list(tested_on))
    return table
