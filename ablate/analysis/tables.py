"""A sweep's runs as tables: read back from the store into one DataFrame, summarised per variant, as markdown.

What the end of every sweep prints, and what reports and claims start from; pandas only (no statistics, no plots).
"""

from __future__ import annotations

import math
from typing import Sequence

import pandas as pd

from ablate.tracking.tracker import TAG_CODE, TAG_FACTORS, RunKind, RunRecord, RunStatus, Tracker

METRICS = ["val_acc", "test_acc", "train_loss", "train_eval_acc", "weight_norm", "epochs_to_target"]


def load_runs(tracker: Tracker, sweep_id: str, statuses: tuple[RunStatus, ...] = (RunStatus.finished,)) -> pd.DataFrame:
    """One row per variant of the sweep: its params (dotted names), final metrics and code version, from its latest
    run (``runs_frame``, by the factors the sweep's parent run records)."""
    parent = tracker.runs(sweep_id=sweep_id, kind=RunKind.sweep, max_results=1)
    factors = [f for f in parent[0].tags.get(TAG_FACTORS, "").split(",") if f] if parent else []
    return runs_frame([r for status in statuses for r in tracker.runs(sweep_id=sweep_id, kind=RunKind.train,
                                                                      status=status)], factors)


def runs_frame(runs: list[RunRecord], factors: Sequence[str] = ()) -> pd.DataFrame:
    """Training runs as one row per variant, the latest run of each. A variant is a combination of the sweep's
    ``factors`` (seed included) where each is a param: a run recorded before the config gained a key has another
    config hash but is the same variant, and its successor replaces it. Otherwise (a group such as ``model=`` was
    swept, or no factors are given) a variant is a config hash."""
    rows = [{"run_id": r.run_id, "status": r.status.value, "start_time": r.start_time, "config_hash": r.config_hash,
             "code_version": r.tags.get(TAG_CODE), **{k: param_value(v) for k, v in r.params.items()}, **r.metrics}
            for r in runs]
    if not rows:
        return pd.DataFrame(columns=["run_id", "config_hash", *METRICS])
    frame = pd.DataFrame(rows).sort_values("start_time")
    variant = list(factors) if factors and all(f in frame for f in factors) else ["config_hash"]
    frame = frame.drop_duplicates(variant, keep="last").reset_index(drop=True)
    if {"train_eval_acc", "val_acc"} <= set(frame):
        frame["gap"] = frame["train_eval_acc"] - frame["val_acc"]  # overfitting: train (eval mode) minus val
    return frame


def param_value(text: str):
    """A param as its config typed it (MLflow keeps them as text): ``10`` an int, ``0.1`` a float, ``True`` a bool,
    ``None`` None, anything else the text."""
    special = {"True": True, "False": False, "None": None}
    if text in special:
        return special[text]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


# ------------------------------------------------------------------------------------------ statistics
def summary_table(runs: pd.DataFrame, factors: list[str]) -> pd.DataFrame:
    """Per variant (seeds pooled): runs, mean val/test accuracy, final train loss, epochs to the target."""
    if runs.empty:
        return pd.DataFrame()
    keys = [f for f in factors if f in runs] or ["data.name"]
    agg = {"runs": ("run_id", "count")}
    for name, (metric, how) in {"val_acc": ("val_acc", "mean"), "test_acc": ("test_acc", "mean"),
                                "test_acc std": ("test_acc", "std"), "train_loss": ("train_loss", "mean"),
                                "epochs_to_target": ("epochs_to_target", "mean")}.items():
        agg[name] = (metric, how) if metric in runs else ("run_id", lambda _: math.nan)
    return runs.groupby(keys, sort=True).agg(**agg).reset_index()


def fmt(value: object) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def markdown_table(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    return "\n".join([header, rule] + ["| " + " | ".join(fmt(v) for v in row) + " |"
                                       for row in frame.itertuples(index=False)])
