"""Reports: a sweep's runs read back from MLflow -> effects with mean, std and 95% CI -> markdown and PNGs.

``python -m ablate.report`` (the latest sweep) or ``python -m ablate.report sweep=<id>``; the report and its
plots are written to ``reports/<sweep id>/`` and logged as artifacts of the sweep's MLflow run.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
from scipy import stats

from ablate import run_interruptible
from ablate.config import TrackingConfig
from ablate.tracking import TAG_HASH, TAG_KIND, TAG_SWEEP, Tracker

METRICS = ["val_acc", "test_acc", "train_loss", "train_eval_acc", "weight_norm", "epochs_to_target"]
LABELS = {"model.bn": "BatchNorm", "model.dropout": "dropout p", "optim.weight_decay": "weight decay λ",
          "optim.lr": "learning rate", "optim.l2": "L2 mode", "model.init_scale": "init scale"}


# ------------------------------------------------------------------------------------------- reading
def load_runs(tracker: Tracker, sweep_id: str, statuses: tuple[str, ...] = ("FINISHED",)) -> pd.DataFrame:
    """One row per variant: its params (dotted names) and final metrics; the latest run per config."""
    runs = [r for s in statuses for r in tracker.search(f"tags.`{TAG_SWEEP}` = '{sweep_id}' and "
                                                        f"tags.`{TAG_KIND}` = 'train' and attributes.status = '{s}'")]
    rows = [{"run_id": r.info.run_id, "status": r.info.status, "start_time": r.info.start_time,
             "config_hash": r.data.tags.get(TAG_HASH),
             **{k: _number(v) for k, v in r.data.params.items()}, **r.data.metrics} for r in runs]
    if not rows:
        return pd.DataFrame(columns=["run_id", "config_hash", *METRICS])
    frame = pd.DataFrame(rows).sort_values("start_time")
    frame = frame.drop_duplicates("config_hash", keep="last").reset_index(drop=True)
    if {"train_eval_acc", "val_acc"} <= set(frame):
        frame["gap"] = frame["train_eval_acc"] - frame["val_acc"]  # overfitting: train (eval mode) minus val
    return frame


def _number(text: str):
    try:
        return float(text)
    except ValueError:
        return text


def latest_sweep(tracker: Tracker) -> str:
    runs = tracker.client.search_runs([tracker.experiment_id], f"tags.`{TAG_KIND}` = 'sweep'",
                                      order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        raise SystemExit("No sweep in this MLflow store yet: run one, e.g. python -m ablate -m model.bn=pre,post,none")
    return runs[0].data.tags[TAG_SWEEP]


# ------------------------------------------------------------------------------------------ statistics
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


def best_variant(runs: pd.DataFrame, factors: list[str]) -> Optional[pd.Series]:
    """The variant with the best mean validation accuracy (chosen on validation; its test accuracy is reported)."""
    if "val_acc" not in runs or runs["val_acc"].isna().all():
        return None
    table = summary_table(runs, factors)
    return table.loc[table["val_acc"].idxmax()]


# ---------------------------------------------------------------------------------------------- output
def _fmt(value: object) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def markdown_table(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    return "\n".join([header, rule] + ["| " + " | ".join(_fmt(v) for v in row) + " |"
                                       for row in frame.itertuples(index=False)])


def _with_ci(table: pd.DataFrame, factor: str, metrics: list[str]) -> pd.DataFrame:
    shown = table[[factor, "runs"]].copy()
    for m in metrics:
        shown[m] = [f"{a:.4f} ± {s:.4f} (± {h:.4f})" if np.isfinite(s) else f"{a:.4f}"
                    for a, s, h in zip(table[m], table[f"{m} std"], table[f"{m} ci95"])]
    return shown


def _plots(runs: pd.DataFrame, factors: list[str], histories: dict[str, pd.DataFrame], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        written.append(out / name)

    if histories:  # learning curves per BN mode: mean validation accuracy per epoch, ± std band
        fig, ax = plt.subplots(figsize=(6, 4))
        for bn, group in runs.groupby("model.bn"):
            curves = pd.concat([histories[r] for r in group["run_id"] if r in histories])
            stats_ = curves.groupby("epoch")["val_acc"].agg(["mean", "std"]).fillna(0)
            ax.plot(stats_.index, stats_["mean"], marker="o", label=f"bn={bn}")
            ax.fill_between(stats_.index, stats_["mean"] - stats_["std"], stats_["mean"] + stats_["std"], alpha=0.2)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set(xlabel="epoch", ylabel="validation accuracy", title="Learning curves per BatchNorm mode (mean ± std)")
        ax.legend()
        save(fig, "learning_curves.png")

    for factor in factors:
        for metrics, ylabel, name in [(["val_acc", "test_acc"], "accuracy", "accuracy"),
                                      (["gap"], "train (eval mode) − validation accuracy", "gap"),
                                      (["weight_norm"], "‖W‖ (weight matrices)", "weight_norm")]:
            if not set(metrics) <= set(runs) or (name == "gap" and factor not in ("model.dropout", "optim.weight_decay")) \
                    or (name == "weight_norm" and factor != "optim.weight_decay"):
                continue
            table = effect_table(runs, factor, metrics)
            fig, ax = plt.subplots(figsize=(6, 4))
            positions = np.arange(len(table))
            numeric = not isinstance(table[factor].iloc[0], str)  # join numeric levels only
            for i, m in enumerate(metrics):
                ax.errorbar(positions + 0.08 * i, table[m], yerr=table[f"{m} ci95"].fillna(0), marker="o",
                            capsize=4, label=m, linestyle="-" if numeric else "none")
            ax.set_xticks(positions, [_fmt(v) for v in table[factor]])
            ax.set(xlabel=LABELS.get(factor, factor), ylabel=ylabel,
                   title=f"{ylabel} vs {LABELS.get(factor, factor)} (mean, 95% CI)")
            ax.legend()
            save(fig, f"{name}_vs_{factor.split('.')[-1]}.png")
    return written


def build_report(tracker: Tracker, sweep_id: str, out_root: Path = Path("reports")) -> Path:
    """Write ``reports/<sweep>/report.md`` and its plots, log them to the sweep's run; returns the markdown."""
    parent = tracker.search(f"tags.`{TAG_SWEEP}` = '{sweep_id}' and tags.`{TAG_KIND}` = 'sweep'", 1)
    runs = load_runs(tracker, sweep_id)
    if runs.empty:
        raise SystemExit(f"Sweep {sweep_id} has no FINISHED runs in {tracker.uri}.")
    factors = [f for f in (parent[0].data.tags.get("ablate.factors", "").split(",") if parent else [])
               if f and f != "seed" and f in runs]
    out = out_root / sweep_id
    out.mkdir(parents=True, exist_ok=True)
    histories = {r: pd.DataFrame([{"epoch": m.step, "val_acc": m.value}
                                  for m in tracker.client.get_metric_history(r, "val_acc")])
                 for r in runs["run_id"]} if "val_acc" in runs else {}
    histories = {k: v for k, v in histories.items() if len(v)}
    plots = _plots(runs, factors, histories, out)

    seeds = sorted(runs["seed"].unique()) if "seed" in runs else []
    lines = [f"# Ablation report: {sweep_id}", "",
             f"{len(runs)} FINISHED runs from `{tracker.uri}`; factors: {', '.join(factors) or '(none)'}; "
             f"seeds: {', '.join(_fmt(s) for s in seeds)}.",
             "Each cell: mean ± std over the runs at that level (± half-width of the 95% t-interval of the mean).",
             "Variants are chosen on validation accuracy; test accuracy is reported, never used to choose.", ""]
    best = best_variant(runs, factors)
    if best is not None:
        lines += ["## Best variant (by mean validation accuracy)", "",
                  ", ".join(f"{f} = {_fmt(best[f])}" for f in factors) +
                  f": val acc {best['val_acc']:.4f}, test acc {best['test_acc']:.4f} over {int(best['runs'])} run(s)", ""]
    for factor in factors:
        metrics = [m for m in ["val_acc", "test_acc", "gap", "weight_norm", "epochs_to_target"] if m in runs]
        lines += [f"## Main effect of {LABELS.get(factor, factor)} (`{factor}`)", "",
                  markdown_table(_with_ci(effect_table(runs, factor, metrics), factor, metrics)), ""]
    lines += ["## All variants (seeds pooled)", "", markdown_table(summary_table(runs, factors)), "", "## Plots", ""]
    lines += [f"![{p.stem}]({p.name})" for p in plots]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    if parent:
        for path in [report, *plots]:
            tracker.client.log_artifact(parent[0].info.run_id, str(path), "report")
    return report


def main(argv: list[str]) -> None:
    """``python -m ablate.report [sweep=<id>] [tracking.uri=<uri>]``."""
    args = dict(a.split("=", 1) for a in argv)
    unknown = set(args) - {"sweep", "tracking.uri", "tracking.experiment"}
    if unknown:
        raise SystemExit(f"unknown argument(s) {sorted(unknown)}; use sweep=<id>, tracking.uri=..., tracking.experiment=...")
    defaults = TrackingConfig()
    import os

    tracker = Tracker(TrackingConfig(uri=args.get("tracking.uri", os.environ.get("MLFLOW_TRACKING_URI", defaults.uri)),
                                     experiment=args.get("tracking.experiment", defaults.experiment)))
    sweep_id = args.get("sweep") or latest_sweep(tracker)
    report = build_report(tracker, sweep_id)
    print(report.read_text())
    print(f"written: {report} and its plots; also logged to the sweep's MLflow run")


if __name__ == "__main__":
    run_interruptible(lambda: main(sys.argv[1:]), "no report was written.")
