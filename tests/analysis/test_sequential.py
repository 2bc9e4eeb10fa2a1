"""The anytime-valid sequence: its closed form against the Bayes factor integrated numerically, its error rate under
nulls of several shapes when looked at after every seed up to 200 (a fixed-n t-test looked at the same way fails
the same check), and the seeds it spends under the effects the claims' table measured."""

import math

import numpy as np
import pytest
from scipy import integrate, stats

from ablate.analysis.sequential import (MIN_SEEDS, PRIOR_PRECISION, Stop, confidence_sequence, decide, half_width,
                                       reach)

ALPHA, SIMULATIONS, LOOKS = 0.05, 2000, 200
LIMIT = ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / SIMULATIONS)  # alpha plus three Monte-Carlo standard errors


def bayes_factor_by_quadrature(x, m, c=PRIOR_PRECISION):
    """The mixture's Bayes factor at mean ``m``, integrated numerically (Simpson's rule on a fine grid) over the
    effect θ ~ N(0, 1/c) and the scale (prior dσ/σ), each marginal likelihood divided by the same constant so that
    it stays in floating range."""
    y = np.asarray(x) - m
    n, scale = len(y), math.sqrt(np.mean(y * y))
    total, squares = y.sum(), np.sum(y * y)

    def likelihood(log_sigma, theta):  # the Gaussian likelihood of y given σ and μ − m = σθ, times a constant
        sigma = np.exp(log_sigma) * scale
        return np.exp(-n * np.log(sigma / scale) - (squares - 2 * sigma * theta * total + n * (sigma * theta) ** 2)
                      / (2 * sigma**2) + n / 2)

    log_sigma, theta = np.linspace(-12, 12, 6001), np.linspace(-6, 6, 3001)
    grid = likelihood(log_sigma[:, None], theta[None, :]) * stats.norm(0, 1 / math.sqrt(c)).pdf(theta)[None, :]
    alt = integrate.simpson(integrate.simpson(grid, x=theta, axis=1), x=log_sigma)
    null = integrate.simpson(likelihood(log_sigma, 0.0), x=log_sigma)
    return alt / null


def test_the_closed_form_bound_is_where_the_integrated_bayes_factor_reaches_one_over_alpha():
    x = np.random.default_rng(0).normal(0.4, 1.3, 12)
    width = half_width(len(x), np.sum((x - x.mean()) ** 2), ALPHA)
    for m in (x.mean() - width, x.mean() + width):
        assert bayes_factor_by_quadrature(x, m) == pytest.approx(1 / ALPHA, rel=1e-4)
    assert bayes_factor_by_quadrature(x, x.mean()) < 1 / ALPHA  # the mean itself stays in the sequence


NULLS = {  # paired differences of mean 0
    "normal": lambda rng, size: rng.normal(0, 1, size),
    "heavy-tailed (t, 3 df)": lambda rng, size: rng.standard_t(3, size),
    "bounded (±1)": lambda rng, size: rng.choice([-1.0, 1.0], size),
    "skewed (Beta(2, 8), centred)": lambda rng, size: rng.beta(2, 8, size) - 0.2,
}


def first_rejections(x, lower_upper):
    lower, upper = lower_upper
    return ((lower > 0) | (upper < 0)).any(axis=1).mean()


@pytest.mark.parametrize("shape", NULLS)
def test_looking_after_every_seed_keeps_the_false_positive_rate_at_alpha_where_a_t_test_does_not(shape):
    x = NULLS[shape](np.random.default_rng(sorted(NULLS).index(shape)), (SIMULATIONS, LOOKS))
    n = np.arange(1, LOOKS + 1)
    total = np.cumsum(x, axis=1)
    mean, sum_squares = total / n, np.cumsum(x * x, axis=1) - total**2 / n
    width = np.where(n >= MIN_SEEDS, half_width(n, sum_squares, ALPHA), np.inf)
    sequence = first_rejections(x, (np.maximum.accumulate(mean - width, axis=1),
                                    np.minimum.accumulate(mean + width, axis=1)))
    with np.errstate(divide="ignore", invalid="ignore"):  # a spread of 0 (equal values): t is infinite or undefined
        t = mean / np.sqrt(sum_squares / np.maximum(n - 1, 1) / n)
    peeking = (np.abs(t) > stats.t.ppf(1 - ALPHA / 2, np.maximum(n - 1, 1)))[:, MIN_SEEDS - 1:].any(axis=1).mean()
    assert sequence <= LIMIT, (shape, sequence)
    assert peeking > LIMIT, (shape, peeking)  # the check can fail: a t-test looked at after every seed does


def test_the_vectorised_sequence_is_the_one_confidence_sequence_computes():
    x = np.random.default_rng(5).normal(0.2, 1, 40)
    n, lower, upper = confidence_sequence(x, ALPHA)
    assert np.all(np.isinf(lower[: MIN_SEEDS - 1])) and np.all(np.isinf(upper[: MIN_SEEDS - 1]))
    looked = slice(MIN_SEEDS - 1, None)
    assert np.all(np.diff(lower[looked]) >= 0) and np.all(np.diff(upper[looked]) <= 0)  # a running intersection
    i = 30
    width = half_width(i + 1, np.sum((x[: i + 1] - x[: i + 1].mean()) ** 2), ALPHA)
    assert lower[i] >= x[: i + 1].mean() - width - 1e-12 and upper[i] <= x[: i + 1].mean() + width + 1e-12


@pytest.mark.parametrize("d_z, most_seeds", [(12.6, 10), (1.66, 25), (0.93, 50)])
def test_large_effects_settle_in_a_few_seeds_and_say_how_many(d_z, most_seeds):
    """The effects of the claims' 30-seed table (d_z 12.6: BN at lr 1.0; 1.66: BN trains faster; 0.93: BN before
    ReLU with precise statistics), at the family's corrected level (56 tests)."""
    rng = np.random.default_rng(7)
    spent = [decide(rng.normal(d_z, 1, 200), "greater", 0.1, ALPHA / 56) for _ in range(200)]
    assert all(d.stop == Stop.supported for d in spent)
    assert np.median([d.seeds for d in spent]) <= most_seeds


def test_a_claim_smaller_than_its_minimal_effect_stops_as_futile_and_an_equivalence_as_supported():
    rng = np.random.default_rng(8)
    futile = decide(rng.normal(0.0, 0.01, 200), "greater", 0.05, ALPHA)
    assert futile.stop == Stop.futile and -0.05 < futile.lower and futile.upper < 0.05 and futile.seeds < 200
    assert decide(np.zeros(30), "equal", 1e-6, ALPHA) == decide(np.zeros(30), "equal", 1e-6, ALPHA)
    assert decide(np.zeros(30), "equal", 1e-6, ALPHA).stop == Stop.supported
    assert decide(rng.normal(-1, 0.1, 50), "greater", 0.05, ALPHA).stop == Stop.contradicted


def test_the_chance_to_settle_is_what_the_sequence_does_on_simulated_seeds_to_come():
    """``reach`` against the sequence itself: seeds to come drawn from the predictive (the effect from its posterior
    under a flat prior, the spread seen so far), the real rule (running intersection, its own spread) run on them."""
    rng = np.random.default_rng(11)
    for d_z, n in [(0.25, 24), (0.45, 24), (0.6, 16), (0.1, 40)]:
        seen = rng.normal(d_z, 1, n)
        mean, spread = seen.mean(), seen.std(ddof=1)
        effects = rng.normal(mean, spread / math.sqrt(n), 400)
        settled = np.mean([decide(np.concatenate([seen, rng.normal(effect, spread, 100 - n)]), "greater", 0.01,
                                  ALPHA / 56).stop != Stop.open for effect in effects])
        assert reach(seen, "greater", 0.01, ALPHA / 56, 100) == pytest.approx(settled, abs=0.08), (d_z, n)


def test_stopping_out_of_reach_rejects_nothing_the_sequence_would_not_and_saves_the_hopeless_seeds():
    """Pathwise: a claim the curtailed rule settles, the plain one settles the same way at the same seed (so the
    error rate is the sequence's); hopeless claims (d_z 0 and 0.1) stop near a third of the way to 100, and of the
    claims the sequence settles by 100 (d_z 0.45, 0.6) the curtailed rule loses at most 3 in 100."""
    rng = np.random.default_rng(12)
    for d_z, most_seeds, most_lost in [(0.0, 40, 0.0), (0.1, 40, 0.0), (0.45, 100, 0.03), (0.6, 100, 0.03)]:
        plain, curtailed = [], []
        for x in rng.normal(d_z, 1, (200, 100)):
            plain.append(decide(x, "greater", 0.01, ALPHA / 56))
            curtailed.append(decide(x, "greater", 0.01, ALPHA / 56, max_seeds=100, min_reach=0.02))
        for p, c in zip(plain, curtailed):
            assert c.stop == Stop.out_of_reach or c == p
        settled = [d.stop in (Stop.supported, Stop.contradicted) for d in plain]
        kept = [d.stop in (Stop.supported, Stop.contradicted) for d in curtailed]
        assert np.mean(settled) - np.mean(kept) <= most_lost, d_z
        assert np.mean([d.seeds for d in curtailed]) <= most_seeds, d_z
    assert decide(rng.normal(0, 1, 100), "greater", 0.01, ALPHA / 56).stop == Stop.open  # min_reach 0: never stops
