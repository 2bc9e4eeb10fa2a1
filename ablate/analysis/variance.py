"""Sources of variance: how much of a variant's spread each source of randomness makes, from a crossed design.

A sweep that varies the sources' seeds crossed (``ablate -m seeds.init=range(4) seeds.order=range(4)
data.split_seed=range(4)``: one run per combination) gives each variant a balanced, fully crossed table of its
metric. With each source a random effect and their interactions pooled into the rest (the additive model of a
crossed random-effects ANOVA), the method of moments gives each source's variance component from its mean square:
E[MS_source] = σ²_rest + (N / L_source) σ²_source, so σ²_source = (MS_source − MS_rest) / (N / L_source), at 0
where sampling makes it negative. A source's share is its component over their sum (Bouthillier et al. 2021 vary
sources one by one; a crossed design estimates them all from the same runs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import pandas as pd

# The keys that seed a source (``config.run.Source``), as a sweep sets them; ``seed`` moves every source left unset.
SOURCE_KEYS = {"seeds.init": "init", "seeds.order": "order", "seeds.noise": "noise", "data.split_seed": "split",
               "seed": "seed (the sources left to it)"}


@dataclass(frozen=True)
class MeanSquares:
    sources: dict[str, float]  # each source's mean square
    rows_per_level: dict[str, int]  # N / L: the runs each level's mean is over
    rest: float  # the residual mean square: interactions and what no source explains
    rest_df: int


def mean_squares(frame: pd.DataFrame, sources: Sequence[str], metric: str) -> Optional[MeanSquares]:
    """The crossed design's mean squares; None unless the runs are exactly one per combination of the sources'
    levels (at least two sources of at least two levels each, so that something is left to estimate the rest)."""
    levels = {s: sorted(frame[s].unique()) for s in sources}
    cells = math.prod(len(v) for v in levels.values())
    if (len(sources) < 2 or any(len(v) < 2 for v in levels.values()) or len(frame) != cells
            or frame.duplicated(list(sources)).any() or frame[metric].isna().any()):
        return None
    y = frame[metric].astype(float)
    grand = y.mean()
    squares, per_level = {}, {}
    for s in sources:
        per_level[s] = cells // len(levels[s])
        level_means = y.groupby(frame[s]).mean()
        squares[s] = per_level[s] * float(((level_means - grand) ** 2).sum()) / (len(levels[s]) - 1)
    rest_df = cells - 1 - sum(len(v) - 1 for v in levels.values())
    rest_ss = float(((y - grand) ** 2).sum()) - sum(squares[s] * (len(levels[s]) - 1) for s in sources)
    return MeanSquares(squares, per_level, max(rest_ss, 0.0) / rest_df, rest_df)


def components(frame: pd.DataFrame, sources: Sequence[str], metric: str) -> Optional[dict[str, float]]:
    """Each source's variance component and the rest's (key ``rest``), by the method of moments; None as
    ``mean_squares``."""
    ms = mean_squares(frame, sources, metric)
    if ms is None:
        return None
    found = {s: max(0.0, (ms.sources[s] - ms.rest) / ms.rows_per_level[s]) for s in sources}
    return {**found, "rest": ms.rest}


def shares_table(runs: pd.DataFrame, factors: list[str], metric: str = "test_acc") -> Optional[pd.DataFrame]:
    """Per variant (the factors that are not sources), each source's share of its variance in ``metric``; None
    where the sweep crosses fewer than two sources or not every variant's runs form a crossed design."""
    sources = [f for f in factors if f in SOURCE_KEYS]
    if len(sources) < 2 or metric not in runs:
        return None
    others = [f for f in factors if f not in SOURCE_KEYS]
    rows = []
    for key, group in (runs.groupby(others) if others else [((), runs)]):
        found = components(group, sources, metric)
        if found is None:
            return None
        total = sum(found.values())
        row = dict(zip(others, key if isinstance(key, tuple) else (key,)))
        row.update({"runs": len(group), f"{metric} std": math.sqrt(total)})
        row.update({SOURCE_KEYS[s]: found[s] / total if total else 0.0 for s in sources})
        row["interactions and the rest"] = found["rest"] / total if total else 0.0
        rows.append(row)
    return pd.DataFrame(rows)
