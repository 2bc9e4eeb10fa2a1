"""Anytime-valid inference on a claim's paired differences: a confidence sequence that may be looked at after every
seed, and stopped on, without inflating its error rate.

The sequence is Lai's (1976) t-confidence sequence for a Gaussian mean of unknown variance, in the form of Wang &
Ramdas (2023, "Anytime-valid t-tests and confidence sequences for Gaussian means with unknown variance"): for a
candidate mean ``m``, the Bayes factor of a N(0, σ²/c) prior on ``μ − m`` against ``μ = m``, each with the
scale-invariant prior dσ/σ,

    BF_n(m) = sqrt(c / (n + c)) · [Q / (Q − S² / (n + c))]^(n/2),   Q = Σ (x_i − m)²,  S = Σ (x_i − m),

is a nonnegative martingale under ``μ = m`` (for the scale-invariant filtration), so by Ville's inequality
P(∃n: BF_n(m) ≥ 1/α) ≤ α. The set {m : BF_n(m) < 1/α} has the closed form of ``half_width``. It is exact for
Gaussian differences; the tests measure it under heavy-tailed, bounded and skewed ones (``tests/analysis/
test_sequential.py``), looking from ``MIN_SEEDS`` on, where too few seeds would let a lucky run of equal
differences (a tiny spread) settle a claim. A family of claims is corrected by Bonferroni (each sequence at α/m):
a union bound needs neither independence nor a fixed stopping rule, which Holm's and Benjamini-Hochberg's
step-downs, computed on p-values at a fixed n, do not give.

A claim that cannot settle in the seeds left stops early, OUT_OF_REACH (stochastic curtailment, Lan, Simon & Wittes
1982, with the predictive chance of Spiegelhalter et al. 1986): ``reach`` is the chance, under a flat prior on the
effect and the spread seen so far, that the sequence settles it by ``max_seeds``. Such a stop rejects nothing, so the
error rate above is untouched; what it costs is the few claims that would have settled late, measured in the tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from statistics import NormalDist
from typing import Optional, Sequence

import numpy as np

PRIOR_PRECISION = 1.0  # c: the prior N(0, σ²/c) on the effect in units of σ; c = 1 tunes it for effects near d = 1
MIN_SEEDS = 8  # the first look


def half_width(n: np.ndarray, sum_squares: np.ndarray, alpha: float, c: float = PRIOR_PRECISION) -> np.ndarray:
    """The sequence's half-width around the mean after ``n`` values whose sum of squared deviations from their
    mean is ``sum_squares`` (arrays broadcast; infinite where no mean is excluded yet)."""
    n = np.asarray(n, dtype=float)
    k = (np.sqrt((n + c) / c) / alpha) ** (2 / n)  # BF >= 1/alpha  <=>  Q / (Q - S^2/(n+c)) >= k
    room = 1 - k * c / (n + c)
    with np.errstate(divide="ignore", invalid="ignore"):
        width = np.sqrt((k - 1) * np.asarray(sum_squares, dtype=float) / (n * room))
    return np.where(room > 0, width, np.inf)


def confidence_sequence(values: Sequence[float], alpha: float, min_seeds: int = MIN_SEEDS) -> tuple[np.ndarray, ...]:
    """(n, lower, upper) after each value from ``min_seeds`` on, as the running intersection (each bound the
    tightest so far: the intersection of valid sequences is one)."""
    x = np.asarray(values, dtype=float)
    n = np.arange(1, len(x) + 1)
    total = np.cumsum(x)
    mean = total / n
    sum_squares = np.maximum(np.cumsum(x * x) - total * total / n, 0.0)
    width = half_width(n, sum_squares, alpha)
    lower = np.maximum.accumulate(np.where(n >= min_seeds, mean - width, -np.inf))
    upper = np.minimum.accumulate(np.where(n >= min_seeds, mean + width, np.inf))
    return n, lower, upper


class Stop(str, Enum):
    supported = "SUPPORTED"  # the sequence lies on the claim's side of 0 (inside the margin, for an equivalence)
    contradicted = "CONTRADICTED"  # on the other side (outside the margin)
    futile = "FUTILE"  # inside ± the minimal effect: settled as smaller than what matters
    out_of_reach = "OUT_OF_REACH"  # unlikely to settle by max_seeds: stopped unsettled (``reach``)
    open = "OPEN"  # not settled: more seeds


@dataclass(frozen=True)
class Decision:
    stop: Stop
    seeds: int  # at which look it stopped (all of them where it is open)
    lower: float
    upper: float


def reach(differences: Sequence[float], direction: str, minimal_effect: float, alpha: float, max_seeds: int) -> float:
    """The predictive chance that the sequence settles the claim (any stop but OUT_OF_REACH) at ``max_seeds``: the
    mean there is normal around today's, with the spread of today's estimate and of the seeds to come; the
    sequence's half-width there is the one today's spread gives. The running intersection settles a little sooner
    than the last look alone, so this reads a few points low (the tests measure it): it errs towards stopping."""
    x = np.asarray(differences, dtype=float)
    n = len(x)
    if n < 2 or n >= max_seeds:
        return 1.0
    mean, spread = float(x.mean()), float(x.std(ddof=1))
    if spread == 0:
        return 1.0
    width = float(half_width(max_seeds, spread**2 * (max_seeds - 1), alpha))
    left = (max_seeds - n) / max_seeds
    final = NormalDist(abs(mean), spread * math.sqrt(left**2 / n + left / max_seeds))  # |mean| at max_seeds

    def beyond(t: float) -> float:  # P(|M| > t)
        return 1.0 if t <= 0 else 1 - final.cdf(t) + final.cdf(-t)

    inside_margin = 1 - beyond(minimal_effect - width) if minimal_effect > width else 0.0
    if direction == "equal":  # SUPPORTED inside the margin, CONTRADICTED outside it
        return inside_margin + beyond(minimal_effect + width)
    return beyond(width) + inside_margin  # 0 excluded (SUPPORTED or CONTRADICTED), or FUTILE


def decide(differences: Sequence[float], direction: str, minimal_effect: float, alpha: float,
           min_seeds: int = MIN_SEEDS, max_seeds: Optional[int] = None, min_reach: float = 0.0) -> Decision:
    """The first look at which the claim's sequence settles, read in seed order: ``direction`` is the claim's
    (greater: A − B > 0, less: A − B < 0, equal: |A − B| < minimal_effect). Given ``max_seeds``, a look at which
    the chance to settle by then (``reach``) is below ``min_reach`` stops it OUT_OF_REACH."""
    x = np.asarray(differences, dtype=float)
    n, lower, upper = confidence_sequence(x, alpha, min_seeds)
    sign = {"greater": 1.0, "less": -1.0, "equal": 0.0}[direction]
    for i in range(len(n)):
        lo, hi = lower[i], upper[i]
        if sign == 0.0:
            stop = Stop.supported if -minimal_effect < lo and hi < minimal_effect else \
                Stop.contradicted if lo > minimal_effect or hi < -minimal_effect else Stop.open
        else:
            toward, away = (lo, hi) if sign > 0 else (-hi, -lo)  # the claim's side, as if it said "greater"
            stop = Stop.supported if toward > 0 else Stop.contradicted if away < 0 else \
                Stop.futile if -minimal_effect < lo and hi < minimal_effect else Stop.open
        if stop == Stop.open and max_seeds and min_reach > 0 and n[i] >= min_seeds and \
                reach(x[:i + 1], direction, minimal_effect, alpha, max_seeds) < min_reach:
            stop = Stop.out_of_reach
        if stop != Stop.open:
            return Decision(stop, int(n[i]), float(lo), float(hi))
    return Decision(Stop.open, len(n), float(lower[-1]) if len(n) else -math.inf,
                    float(upper[-1]) if len(n) else math.inf)
