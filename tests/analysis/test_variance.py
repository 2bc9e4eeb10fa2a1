"""Sources of variance: the crossed design's mean squares against a least-squares fit of the additive model (numpy),
the components unbiased over simulated studies with known variances, and the report's table."""

import itertools

import numpy as np
import pandas as pd
import pytest

from ablate.analysis.variance import components, mean_squares, shares_table

LEVELS = {"seeds.init": 5, "seeds.order": 4, "data.split_seed": 3}


def crossed(rng, sd: dict[str, float], rest_sd: float) -> pd.DataFrame:
    """One value per combination of the sources' levels: the sum of each source's effect at its level and noise."""
    effects = {s: rng.normal(0, sd[s], n) for s, n in LEVELS.items()}
    rows = [dict(zip(LEVELS, combo)) for combo in itertools.product(*(range(n) for n in LEVELS.values()))]
    frame = pd.DataFrame(rows)
    frame["test_acc"] = sum(effects[s][frame[s]] for s in LEVELS) + rng.normal(0, rest_sd, len(frame)) + 0.8
    return frame


def dummies(frame: pd.DataFrame, sources) -> np.ndarray:
    return np.column_stack([np.ones(len(frame))] + [(frame[s] == level).to_numpy(float)
                                                    for s in sources for level in sorted(frame[s].unique())[1:]])


def rss(frame: pd.DataFrame, sources) -> float:
    x, y = dummies(frame, sources), frame["test_acc"].to_numpy()
    fitted = x @ np.linalg.lstsq(x, y, rcond=None)[0]
    return float(((y - fitted) ** 2).sum())


def test_mean_squares_are_the_additive_fits_reductions_in_squared_error():
    """Each source's sum of squares: what dropping it from the additive least-squares fit adds to the residual."""
    frame = crossed(np.random.default_rng(0), {"seeds.init": 0.02, "seeds.order": 0.01, "data.split_seed": 0.03}, 0.01)
    ms = mean_squares(frame, list(LEVELS), "test_acc")
    full = rss(frame, list(LEVELS))
    for source, n in LEVELS.items():
        dropped = rss(frame, [s for s in LEVELS if s != source])
        assert ms.sources[source] == pytest.approx((dropped - full) / (n - 1), rel=1e-9)
    assert ms.rest_df == len(frame) - 1 - sum(n - 1 for n in LEVELS.values())
    assert ms.rest == pytest.approx(full / ms.rest_df, rel=1e-9)


def test_the_components_recover_known_variances_on_average():
    rng = np.random.default_rng(1)
    sd = {"seeds.init": 0.03, "seeds.order": 0.01, "data.split_seed": 0.02}
    found = pd.DataFrame([components(crossed(rng, sd, 0.015), list(LEVELS), "test_acc") for _ in range(600)])
    for source, s in sd.items():
        assert found[source].mean() == pytest.approx(s ** 2, rel=0.15), source  # truncation at 0 biases a little
    assert found["rest"].mean() == pytest.approx(0.015 ** 2, rel=0.05)


def test_a_design_that_is_not_crossed_gives_no_shares():
    frame = crossed(np.random.default_rng(2), dict.fromkeys(LEVELS, 0.01), 0.01)
    assert mean_squares(frame.iloc[1:], list(LEVELS), "test_acc") is None  # a combination missing
    assert mean_squares(pd.concat([frame, frame.iloc[:1]]), list(LEVELS), "test_acc") is None  # one twice
    assert mean_squares(frame, ["seeds.init"], "test_acc") is None  # one source: nothing left for the rest


def test_the_table_gives_each_variant_its_shares_summing_to_one():
    rng = np.random.default_rng(3)
    loud = crossed(rng, {"seeds.init": 0.05, "seeds.order": 0.001, "data.split_seed": 0.001}, 0.001)
    quiet = crossed(rng, {"seeds.init": 0.001, "seeds.order": 0.001, "data.split_seed": 0.05}, 0.001)
    runs = pd.concat([loud.assign(**{"model.bn": "pre"}), quiet.assign(**{"model.bn": "none"})])
    table = shares_table(runs, ["model.bn", *LEVELS]).set_index("model.bn")
    shares = ["init", "order", "split", "interactions and the rest"]
    assert np.allclose(table[shares].sum(axis=1), 1.0)
    assert table.loc["pre", "init"] > 0.8 and table.loc["none", "split"] > 0.8
    assert shares_table(runs, ["model.bn", "seeds.init"]) is None  # fewer than two sources crossed
