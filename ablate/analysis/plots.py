"""The report's plots: what a reader would rather look at than read.

Figures are drawn with matplotlib's object API (``matplotlib.figure.Figure``), never through pyplot: the process's
backend and its open figures stay as they were (a notebook shows nothing it did not ask for).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from ablate.analysis.stats import effect_table
from ablate.analysis.tables import fmt

LABELS = {"model.bn": "BatchNorm", "model.dropout": "dropout p", "optim.weight_decay": "weight decay λ",
          "optim.lr": "learning rate", "optim.l2": "L2 mode", "model.init_scale": "init scale"}
COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf"]  # matplotlib's default cycle, named so that no pyplot state is read


def label(key: str) -> str:
    return LABELS.get(key, key)


def figure(rows: int = 1, columns: int = 1, size: Optional[tuple[float, float]] = None):
    """A figure of its own (no pyplot) and its axes as a [rows, columns] grid."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=size or (3.6 * columns + 0.6, 3.0 * rows + 0.6))
    return fig, fig.subplots(rows, columns, squeeze=False)


def save(fig, path: Path, title: Optional[str] = None) -> Path:
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def first_factor(factors: list[str]) -> Optional[str]:
    """The factor a report colours its curves by: BatchNorm's where it was varied, else the first."""
    return next((f for f in ["model.bn", *factors] if f in factors), None)


# --------------------------------------------------------------------------------------------- the report
def variance_plot(shares: pd.DataFrame, sources: list[str], variant_keys: list[str], metric: str, out: Path) -> Path:
    """Each variant's variance split into its sources' shares (``analysis.variance.shares_table``): one bar each."""
    fig, axes = figure(size=(8.0, 1.6 + 0.45 * len(shares)))
    ax = axes[0][0]
    names = [", ".join(f"{label(k)}={row[k]}" for k in variant_keys) or "all runs" for _, row in shares.iterrows()]
    left = np.zeros(len(shares))
    for colour, source in zip(COLOURS, sources):
        ax.barh(names, shares[source], left=left, color=colour, label=source)
        left += shares[source].to_numpy()
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"share of the variance of {metric}")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small", frameon=False)
    return save(fig, out / "sources_of_variance.png", "Sources of variance")


def report_plots(runs: pd.DataFrame, factors: list[str], histories: dict[str, pd.DataFrame], out: Path) -> list[Path]:
    """Learning curves per level of a factor, an interaction heatmap for each pair of neighbouring factors, each
    metric against every factor: PNGs in ``out``."""
    written = [learning_curves(runs, first_factor(factors), histories, out)] if histories else []
    for first, second in list(zip(factors, factors[1:]))[:3]:
        written.append(interaction(runs, first, second, out))
    for factor in factors:
        written += effect_plots(runs, factor, out)
    return written


def learning_curves(runs: pd.DataFrame, by: Optional[str], histories: dict[str, pd.DataFrame], out: Path) -> Path:
    """Mean validation accuracy per epoch, ± std over seeds, one line per level of ``by``."""
    fig, axes = figure(size=(6, 4))
    ax = axes[0][0]
    for level, group in runs.groupby(by) if by else [("all runs", runs)]:
        curves = pd.concat([histories[r] for r in group["run_id"] if r in histories])
        stats = curves.groupby("epoch")["val_acc"].agg(["mean", "std"]).fillna(0)
        ax.plot(stats.index, stats["mean"], marker="o", label=f"{label(by)} = {fmt(level)}" if by else level)
        ax.fill_between(stats.index, stats["mean"] - stats["std"], stats["mean"] + stats["std"], alpha=0.2)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set(xlabel="epoch", ylabel="validation accuracy",
           title=f"Learning curves per {label(by) if by else 'sweep'} (mean ± std)")
    ax.legend()
    return save(fig, out / "learning_curves.png")


def interaction(runs: pd.DataFrame, first: str, second: str, out: Path) -> Path:
    """Mean validation accuracy of each combination of two factors, with the runs per cell."""
    cells = runs.groupby([first, second])["val_acc"].agg(["mean", "count"]).reset_index()
    rows, columns = sorted(cells[first].unique(), key=str), sorted(cells[second].unique(), key=str)
    grid = np.full((len(rows), len(columns)), np.nan)
    counts = np.zeros_like(grid, dtype=int)
    for cell in cells.itertuples(index=False):
        i, j = rows.index(cell[0]), columns.index(cell[1])
        grid[i, j], counts[i, j] = cell[2], cell[3]
    fig, axes = figure(size=(1.4 * len(columns) + 2.5, 0.9 * len(rows) + 1.8))
    ax = axes[0][0]
    image = ax.imshow(grid, cmap="viridis", aspect="auto")
    for i, j in zip(*np.nonzero(counts)):
        ax.text(j, i, f"{grid[i, j]:.3f}\nn={counts[i, j]}", ha="center", va="center", fontsize=8,
                color="white" if grid[i, j] < np.nanmean(grid) else "black")
    ax.set_xticks(range(len(columns)), [fmt(c) for c in columns])
    ax.set_yticks(range(len(rows)), [fmt(r) for r in rows])
    ax.set(xlabel=label(second), ylabel=label(first),
           title=f"Mean validation accuracy: {label(first)} x {label(second)}")
    fig.colorbar(image, ax=ax, label="validation accuracy")
    return save(fig, out / f"interaction_{first.split('.')[-1]}_x_{second.split('.')[-1]}.png")


EFFECTS = [(["val_acc", "test_acc"], "accuracy", "accuracy", None),
           (["gap"], "train (eval mode) − validation accuracy", "gap", ("model.dropout", "optim.weight_decay")),
           (["weight_norm"], "‖W‖ (weight matrices)", "weight_norm", ("optim.weight_decay",))]  # what, for which


def effect_plots(runs: pd.DataFrame, factor: str, out: Path) -> list[Path]:
    """Accuracy against the factor; the gap against p and lambda; the weight norm against lambda (mean, 95% CI)."""
    written = []
    for metrics, ylabel, name, only in EFFECTS:
        if not set(metrics) <= set(runs) or (only and factor not in only):
            continue
        table = effect_table(runs, factor, metrics)
        fig, axes = figure(size=(6, 4))
        ax = axes[0][0]
        positions = np.arange(len(table))
        numeric = not isinstance(table[factor].iloc[0], str)  # join numeric levels only
        for i, m in enumerate(metrics):
            ax.errorbar(positions + 0.08 * i, table[m], yerr=table[f"{m} ci95"].fillna(0), marker="o",
                        capsize=4, label=m, linestyle="-" if numeric else "none")
        ax.set_xticks(positions, [fmt(v) for v in table[factor]])
        ax.set(xlabel=label(factor), ylabel=ylabel, title=f"{ylabel} vs {label(factor)} (mean, 95% CI)")
        ax.legend()
        written.append(save(fig, out / f"{name}_vs_{factor.split('.')[-1]}.png"))
    return written


# ----------------------------------------------------------------------------------------- the probes
PROBE_GROUPS = ("activations", "covariate_shift", "landscape", "variance_shift", "norms")


def probe_keys(columns) -> list[str]:
    """The per-step probe metrics among a runs table's columns (``activations/1/p15``, ``landscape/loss_min``)."""
    return [c for c in columns if isinstance(c, str) and c.split("/")[0] in PROBE_GROUPS and "/" in c]


def _layers(keys: list[str], group: str) -> list[int]:
    return sorted({int(k.split("/")[1]) for k in keys if k.startswith(f"{group}/") and k.split("/")[1].isdigit()})


class ProbeCurves:
    """The probes of a sweep's runs over training, one colour per level of ``by`` (a mean over its seeds).
    ``histories``: run id -> probe metric -> (step, value) frame."""

    def __init__(self, runs: pd.DataFrame, by: Optional[str], histories: dict[str, dict[str, pd.DataFrame]]) -> None:
        self.by, self.histories = by, histories
        self.levels = list(runs.groupby(by)) if by else [("all runs", runs)]
        self.keys = sorted({k for h in histories.values() for k in h})

    def curve(self, group: pd.DataFrame, key: str) -> pd.DataFrame:
        frames = [self.histories[r][key] for r in group["run_id"] if r in self.histories and key in self.histories[r]]
        if not frames:
            return pd.DataFrame(columns=["mean", "std"])
        return pd.concat(frames).groupby("step")["value"].agg(["mean", "std"]).fillna(0)

    def label(self, level) -> str:
        return f"{label(self.by)} = {fmt(level)}" if self.by else str(level)

    def band(self, ax, key: str, log: bool = False) -> None:
        """Each level's mean ± std over its seeds."""
        for colour, (level, group) in zip(COLOURS, self.levels):
            c = self.curve(group, key)
            if c.empty:  # a level without this probe (no BatchNorm to shift)
                continue
            ax.plot(c.index, c["mean"], color=colour, label=self.label(level))
            ax.fill_between(c.index, c["mean"] - c["std"], c["mean"] + c["std"], color=colour, alpha=0.2)
        if log:
            ax.set_yscale("log")

    def between(self, ax, low: str, high: str) -> None:
        """A probe's own range, each end a mean over seeds (log: the first steps are orders of magnitude larger)."""
        for colour, (level, group) in zip(COLOURS, self.levels):
            lo, hi = self.curve(group, low), self.curve(group, high)
            if not lo.empty:
                ax.fill_between(lo.index, lo["mean"], hi["mean"], color=colour, alpha=0.35, label=self.label(level))
        ax.set_yscale("log")


def probe_plots(runs: pd.DataFrame, by: Optional[str], histories: dict[str, dict[str, pd.DataFrame]],
                out: Path) -> list[Path]:
    """Activation percentiles per nonlinearity, covariate shift per layer (l2, cos), the landscape (loss range,
    gradient change, beta-smoothness), the variance shift per BatchNorm layer, weight and gradient norms."""
    curves = ProbeCurves(runs, by, histories)
    drawn = [activation_plot(curves, out), covariate_shift_plot(curves, out), landscape_plot(curves, out),
             variance_shift_plot(curves, out), norms_plot(curves, out)]
    return [path for path in drawn if path is not None]


def activation_plot(curves: ProbeCurves, out: Path) -> Optional[Path]:
    if not (layers := _layers(curves.keys, "activations")):
        return None
    fig, axes = figure(1, len(layers))
    for ax, i in zip(axes[0], layers):
        for colour, (level, group) in zip(COLOURS, curves.levels):
            p15, p50, p85 = (curves.curve(group, f"activations/{i}/p{q}") for q in (15, 50, 85))
            ax.plot(p50.index, p50["mean"], color=colour, label=curves.label(level))
            for p in (p15, p85):
                ax.plot(p.index, p["mean"], color=colour, linestyle="--", linewidth=0.9)
        ax.set(title=f"nonlinearity {i}: its input", xlabel="step")
    axes[0][0].set_ylabel("15th, 50th (solid), 85th percentile")
    axes[0][0].legend(fontsize=8)
    return save(fig, out / "probe_activations.png", "Inputs to each nonlinearity over training (Ioffe & Szegedy 2015, "
                                                    "Fig. 1)")


def covariate_shift_plot(curves: ProbeCurves, out: Path) -> Optional[Path]:
    if not (layers := _layers(curves.keys, "covariate_shift")):
        return None
    fig, axes = figure(2, len(layers))
    for j, i in enumerate(layers):
        curves.band(axes[0][j], f"covariate_shift/{i}/l2")
        curves.band(axes[1][j], f"covariate_shift/{i}/cos")
        axes[0][j].set(title=f"layer {i}", ylabel="‖G − G′‖₂" if j == 0 else None)
        axes[1][j].set(xlabel="step", ylabel="cos(G, G′)" if j == 0 else None)
    axes[0][0].legend(fontsize=8)
    return save(fig, out / "probe_covariate_shift.png", "Internal covariate shift (Santurkar et al. 2018):\na layer's "
                                                        "gradient before (G) and after (G′) the layers below it take "
                                                        "their step")


def landscape_plot(curves: ProbeCurves, out: Path) -> Optional[Path]:
    if not any(k.startswith("landscape/") for k in curves.keys):
        return None
    fig, axes = figure(1, 3)
    curves.between(axes[0][0], "landscape/loss_min", "landscape/loss_max")
    curves.between(axes[0][1], "landscape/grad_change_min", "landscape/grad_change_max")
    curves.band(axes[0][2], "landscape/beta_smoothness", log=True)
    axes[0][0].set(title="loss along the gradient (range)", xlabel="step", ylabel="loss")
    axes[0][1].set(title="gradient predictiveness (range)", xlabel="step", ylabel="‖g(W − ηg) − g(W)‖")
    axes[0][2].set(title="effective β-smoothness", xlabel="step", ylabel="max ‖Δg‖ / ‖ηg‖")
    axes[0][0].legend(fontsize=8)
    return save(fig, out / "probe_landscape.png", "The loss landscape along the gradient, steps of ½ to 4 × the "
                                                  "learning rate (Santurkar et al. 2018, Fig. 4)\nnarrower, lower: "
                                                  "smoother")


def variance_shift_plot(curves: ProbeCurves, out: Path) -> Optional[Path]:
    if not (layers := _layers(curves.keys, "variance_shift")):
        return None
    fig, axes = figure(1, len(layers))
    for ax, i in zip(axes[0], layers):
        curves.band(ax, f"variance_shift/{i}", log=True)
        ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.set(title=f"BatchNorm layer {i}", xlabel="step")
    axes[0][0].set_ylabel("max(v / v_run, v_run / v)")
    axes[0][0].legend(fontsize=8)
    return save(fig, out / "probe_variance_shift.png", "Variance shift: validation variance against the running one "
                                                       "(Li et al. 2019; 1 = none)")


def norms_plot(curves: ProbeCurves, out: Path) -> Optional[Path]:
    if not (layers := _layers(curves.keys, "norms")):
        return None
    fig, axes = figure(2, len(layers))
    for j, i in enumerate(layers):
        curves.band(axes[0][j], f"norms/{i}/weight")
        curves.band(axes[1][j], f"norms/{i}/grad", log=True)
        axes[0][j].set(title=f"weight matrix {i}", ylabel="‖W‖" if j == 0 else None)
        axes[1][j].set(xlabel="step", ylabel="‖∇W‖ (probe batch)" if j == 0 else None)
    axes[0][0].legend(fontsize=8)
    return save(fig, out / "probe_norms.png", "Weight and gradient norms per layer")
