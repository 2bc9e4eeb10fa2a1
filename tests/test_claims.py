"""Verdict logic on constructed run data: the verdict follows the numbers, whichever way they point."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

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


NOISE8 = [0.004, -0.006, 0.002, 0.007, -0.003, -0.005, 0.001, 0.0]  # per-seed noise, sd ~0.0047


@pytest.mark.parametrize("gap, expected", [(0.07, "supported"), (0.09, "not supported"), (0.08, "inconclusive")])
def test_equivalence_claim_against_its_margin(gap, expected):
    """Margin: 1% of the mean norm (~0.08 here); the interval is ~+-0.004 wide: just inside, just outside, across."""
    c = claim("Under SGD")
    runs = runs_for(c, [lambda s: 8.0 + gap + NOISE8[s], lambda s: 8.0], seeds=8)
    verdict = judge(c, runs, BASE)
    bound = 0.01 * (8.0 + 8.0 + gap) / 2
    assert verdict.note == f"margin +-{bound:.4g}"
    assert verdict.ci[0] < gap < verdict.ci[1] and verdict.ci[1] - verdict.ci[0] < 0.01
    assert verdict.verdict == expected


@pytest.mark.parametrize("text, a_minus_b", [("BN before ReLU", 0.01), ("Dropout regularises", -0.01)])
def test_p_and_interval_are_the_paired_t_test_in_the_claimed_direction(text, a_minus_b):
    c = claim(text)
    runs = runs_for(c, [lambda s: 0.5 + a_minus_b + NOISE8[s], lambda s: 0.5 - NOISE8[(s + 3) % 8]], seeds=8)
    verdict = judge(c, runs, BASE)
    d = np.array([a_minus_b + NOISE8[s] + NOISE8[(s + 3) % 8] for s in range(8)])
    assert verdict.p == pytest.approx(stats.ttest_1samp(d, 0, alternative=c.direction).pvalue, rel=1e-9)
    half = stats.t.ppf(0.975, 7) * d.std(ddof=1) / np.sqrt(8)
    assert verdict.ci == pytest.approx((d.mean() - half, d.mean() + half), rel=1e-9)
    assert verdict.verdict == "supported"


def test_a_less_claim_whose_data_point_the_other_way_is_not_supported():
    c = claim("Dropout regularises")  # claims A's gap < B's
    verdict = judge(c, runs_for(c, [lambda s: 0.08 + NOISE[s], lambda s: 0.03 - NOISE[s]]), BASE)
    assert verdict.diff > 0 and verdict.verdict == "not supported"


@pytest.mark.parametrize("a_minus_b, expected, p", [(2**-5, "supported", 0.0), (-(2**-5), "not supported", 0.0),
                                                     (0.0, "inconclusive", 1.0)])
def test_identical_differences_on_every_seed_decide_by_their_sign(a_minus_b, expected, p):
    c = claim("BN before ReLU")  # binary fractions: every seed's difference is exactly a_minus_b, sd exactly 0
    verdict = judge(c, runs_for(c, [lambda s: 0.5 + a_minus_b + s / 16, lambda s: 0.5 + s / 16]), BASE)
    assert (verdict.verdict, verdict.p, verdict.ci) == (expected, p, (a_minus_b, a_minus_b))


def test_too_few_seeds_is_inconclusive():
    c = claim("L2 shrinks")
    assert judge(c, runs_for(c, [lambda s: 1.0, lambda s: 2.0], seeds=2), BASE).verdict == "inconclusive"


def test_every_claim_key_is_a_config_key():
    from tests.conftest import make_config
    from ablate.config import flatten

    assert set(claim_keys()) <= set(flatten(make_config()))


def test_the_claims_command_end_to_end_gives_seven_verdicts_recorded_in_mlflow(tracking_uri, tmp_path):
    import os
    import subprocess
    import sys

    from mlflow import MlflowClient

    from tests.conftest import REPO

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-m", "ablate.claims", "seeds=3", "epochs=1", "data=digits",
                          "trainer.device=cpu"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    table = out.stdout[out.stdout.index("| claim |"):].split("\n\n")[0].splitlines()
    rows = table[2:]  # after the header and its rule
    assert len(rows) == len(CLAIMS) == 7 and [row.split(" | ")[0][2:] for row in rows] == [c.text for c in CLAIMS]
    assert all(any(v in row for v in ("SUPPORTED", "NOT SUPPORTED", "INCONCLUSIVE")) for row in rows)
    client = MlflowClient(tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    train = client.search_runs(experiments, "tags.`ablate.kind` = 'train' and attributes.status = 'FINISHED'")
    assert len(train) == 13 * 3  # 13 distinct variants over 3 seeds
    [parent] = client.search_runs(experiments, "tags.`ablate.kind` = 'sweep'")
    report = client.download_artifacts(parent.info.run_id, "report/claims.md")
    assert all(row in open(report).read() for row in rows)
