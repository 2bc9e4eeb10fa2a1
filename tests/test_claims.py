"""Verdict logic on constructed run data: the verdict follows the numbers, whichever way they point."""

import numpy as np
import pandas as pd
import pytest

from ablate.claims import CLAIMS, claim_arms, claim_keys, judge

BASE = {"model.bn": "pre", "model.dropout": "0.3", "model.init_scale": "1.0", "optim.l2": "penalty",
        "optim.lr": "0.1", "optim.weight_decay": "0.0"}


def claim(text_start):
    return next(c for c in CLAIMS if c.text.startswith(text_start))


def runs_for(c, values_by_arm, status_by_arm=None, seeds=5):
    """One row per (arm, seed) with the claim's metric set from values_by_arm[arm index](seed)."""
    rows = []
    for i, arm in enumerate(claim_arms(c)):
        for seed in range(seeds):
            row = {**BASE, **arm, "seed": seed, "status": (status_by_arm or {}).get(i, "FINISHED")}
            row[c.metric] = values_by_arm[i](seed)
            rows.append(row)
    return pd.DataFrame(rows)


NOISE = [0.003, -0.002, 0.001, -0.004, 0.002]


@pytest.mark.parametrize("a_minus_b, expected", [(0.05, "supported"), (-0.05, "not supported"), (0.0, "inconclusive")])
def test_paired_comparison_follows_the_data(a_minus_b, expected):
    c = claim("BN before ReLU")
    runs = runs_for(c, [lambda s: 0.8 + a_minus_b + NOISE[s], lambda s: 0.8 - NOISE[s] * 0.5])
    verdict = judge(c, runs, BASE)
    assert verdict.verdict == expected and verdict.seeds == 5
    assert verdict.diff == pytest.approx(a_minus_b + np.mean(NOISE) * 1.5)


def test_noise_larger_than_the_effect_is_inconclusive():
    c = claim("BN before ReLU")
    big = [0.1, -0.1, 0.08, -0.09, 0.02]
    assert judge(c, runs_for(c, [lambda s: 0.8 + 0.01 + big[s], lambda s: 0.8]), BASE).verdict == "inconclusive"


def test_diverged_runs_score_chance():
    c = claim("BN tolerates")
    runs = runs_for(c, [lambda s: 0.8 + NOISE[s], lambda s: np.nan], status_by_arm={1: "FAILED"})
    verdict = judge(c, runs, BASE)
    assert verdict.b_mean == pytest.approx(0.1) and verdict.verdict == "supported"


def test_runs_of_other_variants_are_not_mixed_in():
    c = claim("BN before ReLU")
    runs = runs_for(c, [lambda s: 0.9, lambda s: 0.7])
    other = runs.assign(**{"optim.lr": "1.0", c.metric: 0.0})  # same bn, other lr: must be ignored
    assert judge(c, pd.concat([runs, other]), BASE).a_mean == pytest.approx(0.9)


def test_spread_claim_compares_ranges_over_init_scales():
    c = claim("BN makes initialisation")
    levels = len(c.spread_over[1])
    # arms: A at each init level, then B at each level; A varies by 0.01 over inits, B by 0.3
    values = [lambda s, k=k: 0.85 + 0.005 * k + NOISE[s] * 0.1 for k in range(levels)] + \
             [lambda s, k=k: 0.5 + 0.15 * k + NOISE[s] for k in range(levels)]
    verdict = judge(c, runs_for(c, values), BASE)
    assert verdict.verdict == "supported" and verdict.a_mean == pytest.approx(0.01, abs=1e-3)


@pytest.mark.parametrize("relative_gap, expected", [(0.0, "supported"), (0.2, "not supported")])
def test_equivalence_claim(relative_gap, expected):
    c = claim("Under SGD")
    runs = runs_for(c, [lambda s: 8.0 + NOISE[s] * 0.01, lambda s: 8.0 * (1 + relative_gap) + NOISE[s] * 0.01])
    assert judge(c, runs, BASE).verdict == expected


def test_too_few_seeds_is_inconclusive():
    c = claim("L2 shrinks")
    assert judge(c, runs_for(c, [lambda s: 1.0, lambda s: 2.0], seeds=2), BASE).verdict == "inconclusive"


def test_every_claim_key_is_a_config_key():
    from tests.conftest import make_config
    from ablate.config import flatten

    assert set(claim_keys()) <= set(flatten(make_config()))
