"""The report's plots: what a reader would rather look at than read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ablate.stats import effect_table
from ablate.tables import fmt

LABELS = {"model.bn": "BatchNorm", "model.dropout": "dropout p", "optim.weight_decay": "weight decay λ",
          "optim.lr": "learning rate", "optim.l2": "L2 mode", "model.init_scale": "init scale"}


def report_plots(runs: pd.DataFrame, factors: list[str], histories: dict[str, pd.DataFrame], out: Path) -> list[Path]:
    """Learning curves per level of a factor, an interaction heatmap for each pair of neighbouring factors (mean
    validation accuracy, n per cell), accuracy against every factor, the gap against p and lambda, the weight norm
    against lambda: PNGs in ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        written.append(out / name)

    if histories:  # learning curves per level of the first factor (BatchNorm's if varied): mean val acc, ± std
        by = next((f for f in ["model.bn", *factors] if f in factors), None)
        fig, ax = plt.subplots(figsize=(6, 4))
        for level, group in runs.groupby(by) if by else [("all runs", runs)]:
            curves = pd.concat([histories[r] for r in group["run_id"] if r in histories])
            stats_ = curves.groupby("epoch")["val_acc"].agg(["mean", "std"]).fillna(0)
            ax.plot(stats_.index, stats_["mean"], marker="o", label=f"{LABELS.get(by, by)} = {fmt(level)}" if by else level)
            ax.fill_between(stats_.index, stats_["mean"] - stats_["std"], stats_["mean"] + stats_["std"], alpha=0.2)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set(xlabel="epoch", ylabel="validation accuracy",
               title=f"Learning curves per {LABELS.get(by, by) if by else 'sweep'} (mean ± std)")
        ax.legend()
        save(fig, "learning_curves.png")

    for first, second in list(zip(factors, factors[1:]))[:3]:  # interactions: each factor with the next
        cells = runs.groupby([first, second])["val_acc"].agg(["mean", "count"]).reset_index()
        rows, columns = sorted(cells[first].unique(), key=str), sorted(cells[second].unique(), key=str)
        grid = np.full((len(rows), len(columns)), np.nan)
        counts = np.zeros_like(grid, dtype=int)
        for cell in cells.itertuples(index=False):
            i, j = rows.index(cell[0]), columns.index(cell[1])
            grid[i, j], counts[i, j] = cell[2], cell[3]
        fig, ax = plt.subplots(figsize=(1.4 * len(columns) + 2.5, 0.9 * len(rows) + 1.8))
        image = ax.imshow(grid, cmap="viridis", aspect="auto")
        for i in range(len(rows)):
            for j in range(len(columns)):
                if counts[i, j]:
                    ax.text(j, i, f"{grid[i, j]:.3f}\nn={counts[i, j]}", ha="center", va="center", fontsize=8,
                            color="white" if grid[i, j] < np.nanmean(grid) else "black")
        ax.set_xticks(range(len(columns)), [fmt(c) for c in columns])
        ax.set_yticks(range(len(rows)), [fmt(r) for r in rows])
        ax.set(xlabel=LABELS.get(second, second), ylabel=LABELS.get(first, first),
               title=f"Mean validation accuracy: {LABELS.get(first, first)} x {LABELS.get(second, second)}")
        fig.colorbar(image, ax=ax, label="validation accuracy")
        save(fig, f"interaction_{first.split('.')[-1]}_x_{second.split('.')[-1]}.png")

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
            ax.set_xticks(positions, [fmt(v) for v in table[factor]])
            ax.set(xlabel=LABELS.get(factor, factor), ylabel=ylabel,
                   title=f"{ylabel} vs {LABELS.get(factor, factor)} (mean, 95% CI)")
            ax.legend()
            save(fig, f"{name}_vs_{factor.split('.')[-1]}.png")
    return written
