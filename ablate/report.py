"""Reports: a sweep's runs read back from MLflow -> effects with mean, std and 95% CI -> markdown and PNGs.

``python -m ablate.report`` (the latest sweep) or ``python -m ablate.report sweep=<id>``; the report and its
plots (``plots.py``) are written to ``reports/<sweep id>/`` and logged as artifacts of the sweep's MLflow run.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from ablate import UserError
from ablate.cli import hydra_command
from ablate.schemas import ReportConfig
from ablate.plots import LABELS, probe_keys, probe_plots, report_plots
from ablate.stats import best_against_others, effect_table
from ablate.tables import fmt, load_runs, markdown_table, summary_table
from ablate.tracking import TAG_FACTORS, RunKind, Tracker


def best_variant(runs: pd.DataFrame, factors: list[str]) -> Optional[pd.Series]:
    """The variant with the best mean validation accuracy (chosen on validation; its test accuracy is reported)."""
    if "val_acc" not in runs or runs["val_acc"].isna().all():
        return None
    table = summary_table(runs, factors)
    return table.loc[table["val_acc"].idxmax()]


def distinguishable(runs: pd.DataFrame, factors: list[str], alpha: float = 0.05) -> list[str]:
    """Whether the data can tell the best variant from the runner-up (and from the rest), chosen on half the seeds
    and tested on the other half (``stats.best_against_others``): a sentence and a table."""
    if not factors:
        return []
    others = best_against_others(runs, factors, "val_acc", alpha)
    if others.empty:
        return []
    runner_up = others.iloc[0]
    name = ", ".join(f"{f} = {fmt(runner_up[f])}" for f in factors)
    best = ", ".join(f"{f} = {fmt(v)}" for f, v in others.attrs["best"].items())
    halves = (f" (chosen on seeds {', '.join(fmt(s) for s in others.attrs['chosen_on'])}, tested on seeds "
              f"{', '.join(fmt(s) for s in others.attrs['tested_on'])})") if others.attrs["chosen_on"] else \
        " (chosen on half of each variant's runs, tested on the other half)"
    within = int((others["p adj (Holm)"].isna() | (others["p adj (Holm)"] >= alpha)).sum())
    if math.isnan(runner_up["p adj (Holm)"]):
        verdict = (f"cannot be told from the runner-up ({name}): too few runs to choose on half and test on the "
                   f"other (at least 4 seeds; 6 for a paired test); add seeds.")
    elif runner_up["p adj (Holm)"] < alpha:
        verdict = (f"is distinguishable from the runner-up ({name}): +{runner_up['best − it']:.4f} validation accuracy "
                   f"over {runner_up['n']} seeds, {runner_up['test']}, Holm-adjusted p = {runner_up['p adj (Holm)']:.3g}.")
    else:
        verdict = (f"is not distinguishable from the runner-up ({name}): +{runner_up['best − it']:.4f} over "
                   f"{runner_up['n']} seeds, {runner_up['test']}, Holm-adjusted p = {runner_up['p adj (Holm)']:.3g}; "
                   f"{within} of {len(others)} other variants lie within noise of it. More seeds would tell.")
    return [f"The best variant, {best}{halves}, {verdict}", "", markdown_table(others), ""]


# ---------------------------------------------------------------------------------------------- output
def _with_ci(table: pd.DataFrame, factor: str, metrics: list[str]) -> pd.DataFrame:
    shown = table[[factor, "runs"]].copy()
    for m in metrics:
        shown[m] = [f"{a:.4f} ± {s:.4f} (± {h:.4f})" if np.isfinite(s) else f"{a:.4f}"
                    for a, s, h in zip(table[m], table[f"{m} std"], table[f"{m} ci95"])]
    return shown


def build_report(tracker: Tracker, sweep_id: str, out_root: Path = Path("reports")) -> Path:
    """Write ``reports/<sweep>/report.md`` and its plots, log them to the sweep's run; returns the markdown."""
    parent = tracker.runs(sweep_id=sweep_id, kind=RunKind.sweep, max_results=1)
    runs = load_runs(tracker, sweep_id)
    if runs.empty:
        raise UserError(f"sweep {sweep_id} has no FINISHED runs in {tracker.uri}.")
    factors = [f for f in (parent[0].tags.get(TAG_FACTORS, "").split(",") if parent else [])
               if f and f != "seed" and f in runs]
    out = out_root / sweep_id
    out.mkdir(parents=True, exist_ok=True)
    histories = {r: pd.DataFrame(tracker.metric_history(r, "val_acc"), columns=["epoch", "val_acc"])
                 for r in runs["run_id"]} if "val_acc" in runs else {}
    histories = {k: v for k, v in histories.items() if len(v)}
    plots = report_plots(runs, factors, histories, out)
    if probed := probe_keys(runs.columns):  # the probes over training, per level of the first varied factor
        probes = {r: {k: pd.DataFrame(tracker.metric_history(r, k), columns=["step", "value"]) for k in probed}
                  for r in runs["run_id"]}
        plots += probe_plots(runs, next((f for f in ["model.bn", *factors] if f in factors), None), probes, out)

    seeds = sorted(runs["seed"].unique()) if "seed" in runs else []
    lines = [f"# Ablation report: {sweep_id}", "",
             f"{len(runs)} FINISHED runs from `{tracker.uri}`; factors: {', '.join(factors) or '(none)'}; "
             f"seeds: {', '.join(fmt(s) for s in seeds)}.",
             "Each cell: mean ± std over the runs at that level (± half-width of the 95% t-interval of the mean).",
             "Variants are chosen on validation accuracy; test accuracy is reported, never used to choose.", ""]
    versions = runs["code_version"].dropna().value_counts()
    if len(versions) > 1:  # a sweep resumed across an upgrade, not yet rerun to its end: results of two codes mixed
        counts = ", ".join(f"{n} from {v}" for v, n in sorted(versions.items()))
        lines += [f"**These runs come from {len(versions)} versions of ablate's code** ({counts}): run the sweep's "
                  f"command again to retrain the variants of the older code.", ""]
    best = best_variant(runs, factors)
    if best is not None:
        lines += ["## Best variant (by mean validation accuracy)", "",
                  ", ".join(f"{f} = {fmt(best[f])}" for f in factors) +
                  f": val acc {best['val_acc']:.4f}, test acc {best['test_acc']:.4f} over {int(best['runs'])} run(s)",
                  "", *distinguishable(runs, factors), ""]
    for factor in factors:
        metrics = [m for m in ["val_acc", "test_acc", "gap", "weight_norm", "epochs_to_target"] if m in runs]
        lines += [f"## Main effect of {LABELS.get(factor, factor)} (`{factor}`)", "",
                  markdown_table(_with_ci(effect_table(runs, factor, metrics), factor, metrics)), ""]
    lines += ["## All variants (seeds pooled)", "", markdown_table(summary_table(runs, factors)), "", "## Plots", ""]
    lines += [f"![{p.stem}]({p.name})" for p in plots]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    if parent:
        tracker.run(parent[0].run_id).log_files([report, *plots], "report")
    return report


def main(cfg: ReportConfig) -> None:
    tracker = Tracker(cfg.tracking)
    sweep_id = cfg.sweep or tracker.latest_sweep_id()
    if sweep_id is None:
        raise UserError("no sweep in this MLflow store yet: run one, e.g. python -m ablate -m model.bn=pre,post,none")
    report = build_report(tracker, sweep_id, Path(cfg.out))
    print(report.read_text())
    print(f"written: {report} and its plots; also logged to the sweep's MLflow run")


if __name__ == "__main__":
    hydra_command("report", main, "no report was written.")
