"""Reports: a sweep's runs read back from MLflow -> effects with mean, std and 95% CI -> markdown and PNGs.

``ablate report`` (the latest sweep) or ``ablate report sweep=<id>``; the report and its plots (``plots``) are
written to ``reports/<sweep id>/`` and logged as artifacts of the sweep's MLflow run. A report says what it rests
on: how many of the sweep's variants have finished (and which are missing), how many versions of the code made them,
and which one variant is best, chosen on half the seeds and tested on the other half.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from ablate.analysis.plots import first_factor, label, probe_keys, probe_plots, report_plots, variance_plot
from ablate.analysis.stats import best_against_others, effect_table
from ablate.analysis.tables import fmt, load_runs, markdown_table, runs_frame, summary_table
from ablate.analysis.variance import SOURCE_KEYS, shares_table
from ablate.errors import UserError
from ablate.tracking.tracker import TAG_FACTORS, TAG_VARIANTS, RunKind, RunRecord, Tracker

VARIANCE_METRIC = "test_acc"  # whose variance the sources of variance split (never used to choose a variant)


def build_report(tracker: Tracker, sweep_id: str, out_root: Path = Path("reports")) -> Path:
    """Write ``reports/<sweep>/report.md`` and its plots, log them to the sweep's run; returns the markdown."""
    parents = tracker.runs(sweep_id=sweep_id, kind=RunKind.sweep, max_results=1)
    parent = parents[0] if parents else None
    runs = load_runs(tracker, sweep_id)
    if runs.empty:
        raise UserError(f"sweep {sweep_id} has no FINISHED runs in {tracker.uri}: finish it first (the same "
                        f"command resumes it).")
    factors = [f for f in (parent.tags.get(TAG_FACTORS, "").split(",") if parent else [])
               if f and f != "seed" and f in runs]
    out = out_root / sweep_id
    out.mkdir(parents=True, exist_ok=True)
    plots = draw(tracker, runs, factors, out)
    shares = shares_table(runs, factors, VARIANCE_METRIC)
    if shares is not None:
        plots.append(variance_plot(shares, share_columns(shares), [f for f in factors if f not in SOURCE_KEYS],
                                   VARIANCE_METRIC, out))
    lines = [*overview(tracker, sweep_id, parent, runs, factors), *best_lines(runs, factors),
             *effect_lines(runs, factors), *variance_lines(shares, VARIANCE_METRIC),
             "## All variants (seeds pooled)", "",
             markdown_table(summary_table(runs, factors)), "", "## Plots", "", *[f"![{p.stem}]({p.name})" for p in plots]]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    if parent:
        tracker.run(parent.run_id).log_files([report, *plots], "report")
    return report


def draw(tracker: Tracker, runs: pd.DataFrame, factors: list[str], out: Path) -> list[Path]:
    """The report's plots, from each run's history: learning curves, interactions, effects, and the probes."""
    histories = {r: pd.DataFrame(tracker.metric_history(r, "val_acc"), columns=["epoch", "val_acc"])
                 for r in runs["run_id"]} if "val_acc" in runs else {}
    plots = report_plots(runs, factors, {k: v for k, v in histories.items() if len(v)}, out)
    if probed := probe_keys(runs.columns):  # the probes over training, per level of the first varied factor
        probes = {r: {k: pd.DataFrame(tracker.metric_history(r, k), columns=["step", "value"]) for k in probed}
                  for r in runs["run_id"]}
        plots += probe_plots(runs, first_factor(factors), probes, out)
    return plots


def overview(tracker: Tracker, sweep_id: str, parent: Optional[RunRecord], runs: pd.DataFrame,
             factors: list[str]) -> list[str]:
    """What the report rests on: the runs, the factors and seeds, whether the sweep is whole, the code versions."""
    seeds = sorted(runs["seed"].unique()) if "seed" in runs else []
    lines = [f"# Ablation report: {sweep_id}", "",
             f"{len(runs)} FINISHED runs from `{tracker.uri}`; factors: {', '.join(factors) or '(none)'}; "
             f"seeds: {', '.join(fmt(s) for s in seeds)}.",
             "Each cell: mean ± std over the runs at that level (± half-width of the 95% t-interval of the mean).",
             "Variants are chosen on validation accuracy; test accuracy is reported, never used to choose.", ""]
    total = int(parent.tags[TAG_VARIANTS]) if parent and parent.tags.get(TAG_VARIANTS, "").isdigit() else None
    if total is not None and len(runs) < total:
        lines += [partial_sweep(tracker, sweep_id, runs, total, [*factors, *(["seed"] if "seed" in runs else [])]), ""]
    versions = runs["code_version"].dropna().value_counts()
    if len(versions) > 1:  # a sweep resumed across an upgrade, not yet rerun to its end: results of two codes mixed
        counts = ", ".join(f"{n} from {v}" for v, n in sorted(versions.items()))
        lines += [f"**These runs come from {len(versions)} versions of ablate's code** ({counts}): run the sweep's "
                  f"command again to retrain the variants of the older code.", ""]
    return lines


def partial_sweep(tracker: Tracker, sweep_id: str, runs: pd.DataFrame, total: int, keys: list[str]) -> str:
    """A sentence for a sweep not yet finished: n of N variants, and the missing ones among the levels seen."""
    started = runs_frame(tracker.runs(sweep_id=sweep_id, kind=RunKind.train), keys)
    levels = [sorted(started[k].dropna().unique(), key=str) for k in keys if k in started]
    done = set(map(tuple, runs[keys].astype(str).to_numpy())) if keys else set()
    missing = [combo for combo in itertools.product(*levels) if tuple(map(str, combo)) not in done]
    shown = "; ".join(", ".join(f"{k} = {fmt(v)}" for k, v in zip(keys, combo)) for combo in missing[:5])
    more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
    return (f"**A partial sweep: {len(runs)} of its {total} variants have a FINISHED run.** Everything below rests on "
            f"those alone" + (f"; missing: {shown}{more}" if missing else "") + ". The sweep's own command finishes it.")


def best_lines(runs: pd.DataFrame, factors: list[str], alpha: float = 0.05) -> list[str]:
    """One best variant: chosen by mean validation accuracy on half the seeds and tested against every other on the
    other half (``stats.best_against_others``), where there are seeds to halve; else by its mean over all runs."""
    if not factors or "val_acc" not in runs or runs["val_acc"].isna().all():
        return []
    others = best_against_others(runs, factors, "val_acc", alpha)
    table = summary_table(runs, factors)
    if others.empty:
        chosen = table.loc[table["val_acc"].idxmax()]
    else:
        best = others.attrs["best"]
        chosen = table.loc[np.logical_and.reduce([table[f] == best[f] for f in factors])].iloc[0]
    name = ", ".join(f"{f} = {fmt(chosen[f])}" for f in factors)
    lines = ["## Best variant (by mean validation accuracy)", "",
             f"{name}: val acc {chosen['val_acc']:.4f}, test acc {chosen['test_acc']:.4f} over {int(chosen['runs'])} "
             f"run(s).", ""]
    return lines + ([distinguishable(others, factors, alpha), "", markdown_table(others), ""] if not others.empty else [])


def distinguishable(others: pd.DataFrame, factors: list[str], alpha: float) -> str:
    """Whether the data can tell the best variant from the runner-up (and from the rest): one sentence."""
    runner_up = others.iloc[0]
    name = ", ".join(f"{f} = {fmt(runner_up[f])}" for f in factors)
    halves = (f"chosen on seeds {', '.join(fmt(s) for s in others.attrs['chosen_on'])} and tested on seeds "
              f"{', '.join(fmt(s) for s in others.attrs['tested_on'])}") if others.attrs["chosen_on"] else \
        "chosen on half of each variant's runs and tested on the other half"
    p, diff = runner_up["p adj (Holm)"], runner_up["best − it"]
    within = int((others["p adj (Holm)"].isna() | (others["p adj (Holm)"] >= alpha)).sum())
    if math.isnan(p):
        return (f"It was {halves}; it cannot be told from the runner-up ({name}): too few runs to choose on half "
                f"and test on the other (at least 4 seeds; 6 for a paired test); add seeds.")
    evidence = f"{diff:+.4f} validation accuracy over {runner_up['n']} seeds, {runner_up['test']}, Holm-adjusted p = {p:.3g}"
    if p < alpha:
        return f"It was {halves}, and is distinguishable from the runner-up ({name}): {evidence}."
    return (f"It was {halves}, and is not distinguishable from the runner-up ({name}): {evidence}; {within} of "
            f"{len(others)} other variants lie within noise of it. More seeds would tell.")


def effect_lines(runs: pd.DataFrame, factors: list[str]) -> list[str]:
    """Per factor, its main effect: each level's mean ± std (± the 95% interval's half-width) of each metric."""
    lines = []
    metrics = [m for m in ["val_acc", "test_acc", "gap", "weight_norm", "epochs_to_target"] if m in runs]
    for factor in factors:
        table = effect_table(runs, factor, metrics)
        shown = table[[factor, "runs"]].copy()
        for m in metrics:
            shown[m] = [f"{a:.4f} ± {s:.4f} (± {h:.4f})" if np.isfinite(s) else f"{a:.4f}"
                        for a, s, h in zip(table[m], table[f"{m} std"], table[f"{m} ci95"])]
        lines += [f"## Main effect of {label(factor)} (`{factor}`)", "", markdown_table(shown), ""]
    return lines


def share_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if c in SOURCE_KEYS.values() or c == "interactions and the rest"]


def variance_lines(table: Optional[pd.DataFrame], metric: str) -> list[str]:
    """Where the sweep crosses sources of randomness (seeds.init, seeds.order, seeds.noise, data.split_seed,
    seed), each variant's variance split into theirs (``analysis.variance.shares_table``)."""
    if table is None:
        return []
    shown = table.copy()
    for column in share_columns(table):
        shown[column] = [f"{v:.0%}" for v in table[column]]
    shown[f"{metric} std"] = [f"{v:.4f}" for v in table[f"{metric} std"]]
    return [f"## Sources of variance ({metric})", "",
            "Each variant's runs cross the sources' seeds (one run per combination); each share is the source's "
            "variance component (crossed random-effects ANOVA, method of moments, interactions pooled into the "
            "rest) over their sum; the std is the one those components add up to.", "", markdown_table(shown), ""]
