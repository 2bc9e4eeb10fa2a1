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


# ----------------------------------------------------------------------------------------- the probes
PROBE_GROUPS = ("activations", "covariate_shift", "landscape", "variance_shift", "norms")


def probe_keys(columns) -> list[str]:
    """The per-step probe metrics among a runs table's columns (``activations/1/p15``, ``landscape/loss_min``)."""
    return [c for c in columns if isinstance(c, str) and c.split("/")[0] in PROBE_GROUPS and "/" in c]


def _layers(keys: list[str], group: str) -> list[int]:
    return sorted({int(k.split("/")[1]) for k in keys if k.startswith(f"{group}/") and k.split("/")[1].isdigit()})


def probe_plots(runs: pd.DataFrame, by: str | None, histories: dict[str, dict[str, pd.DataFrame]],
                out: Path) -> list[Path]:
    """The probes over training, one colour per level of ``by`` (mean over its seeds, the band ± std or the
    probe's own range): activation percentiles per nonlinearity, covariate shift per layer (l2, cos), the landscape
    (loss range, gradient change, beta-smoothness), the variance shift per BatchNorm layer, weight and gradient norms.
    ``histories``: run id -> probe metric -> (step, value) frame."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({k for h in histories.values() for k in h})
    levels = list(runs.groupby(by)) if by else [("all runs", runs)]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    written = []

    def curve(group: pd.DataFrame, key: str) -> pd.DataFrame:
        frames = [histories[r][key] for r in group["run_id"] if r in histories and key in histories[r]]
        if not frames:
            return pd.DataFrame(columns=["mean", "std"])
        return pd.concat(frames).groupby("step")["value"].agg(["mean", "std"]).fillna(0)

    def label(level) -> str:
        return f"{LABELS.get(by, by)} = {fmt(level)}" if by else str(level)

    def band(ax, key: str, log: bool = False) -> None:
        for colour, (level, group) in zip(colours, levels):
            c = curve(group, key)
            if c.empty:  # a level without this probe (no BatchNorm to shift)
                continue
            ax.plot(c.index, c["mean"], color=colour, label=label(level))
            ax.fill_between(c.index, c["mean"] - c["std"], c["mean"] + c["std"], color=colour, alpha=0.2)
        if log:
            ax.set_yscale("log")

    def between(ax, low: str, high: str) -> None:  # a probe's own range, each end a mean over seeds (log: the
        for colour, (level, group) in zip(colours, levels):  # first steps' values are orders of magnitude larger)
            lo, hi = curve(group, low), curve(group, high)
            if lo.empty:
                continue
            ax.fill_between(lo.index, lo["mean"], hi["mean"], color=colour, alpha=0.35, label=label(level))
        ax.set_yscale("log")

    def save(fig, name: str, title: str) -> None:
        fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        written.append(out / name)

    def grid(rows: int, columns: int):
        fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns + 0.6, 3.0 * rows + 0.6), squeeze=False)
        return fig, axes

    if layers := _layers(keys, "activations"):
        fig, axes = grid(1, len(layers))
        for ax, i in zip(axes[0], layers):
            for colour, (level, group) in zip(colours, levels):
                p15, p50, p85 = (curve(group, f"activations/{i}/p{q}") for q in (15, 50, 85))
                ax.plot(p50.index, p50["mean"], color=colour, label=label(level))
                for p in (p15, p85):
                    ax.plot(p.index, p["mean"], color=colour, linestyle="--", linewidth=0.9)
            ax.set(title=f"nonlinearity {i}: its input", xlabel="step")
        axes[0][0].set_ylabel("15th, 50th (solid), 85th percentile")
        axes[0][0].legend(fontsize=8)
        save(fig, "probe_activations.png", "Inputs to each nonlinearity over training (Ioffe & Szegedy 2015, Fig. 1)")
    if layers := _layers(keys, "covariate_shift"):
        fig, axes = grid(2, len(layers))
        for j, i in enumerate(layers):
            band(axes[0][j], f"covariate_shift/{i}/l2")
            band(axes[1][j], f"covariate_shift/{i}/cos")
            axes[0][j].set(title=f"layer {i}", ylabel="‖G − G′‖₂" if j == 0 else None)
            axes[1][j].set(xlabel="step", ylabel="cos(G, G′)" if j == 0 else None)
        axes[0][0].legend(fontsize=8)
        save(fig, "probe_covariate_shift.png", "Internal covariate shift (Santurkar et al. 2018):\na layer's gradient "
                                               "before (G) and after (G′) the layers below it take their step")
    if any(k.startswith("landscape/") for k in keys):
        fig, axes = grid(1, 3)
        between(axes[0][0], "landscape/loss_min", "landscape/loss_max")
        between(axes[0][1], "landscape/grad_change_min", "landscape/grad_change_max")
        band(axes[0][2], "landscape/beta_smoothness", log=True)
        axes[0][0].set(title="loss along the gradient (range)", xlabel="step", ylabel="loss")
        axes[0][1].set(title="gradient predictiveness (range)", xlabel="step", ylabel="‖g(W − ηg) − g(W)‖")
        axes[0][2].set(title="effective β-smoothness", xlabel="step", ylabel="max ‖Δg‖ / ‖ηg‖")
        axes[0][0].legend(fontsize=8)
        save(fig, "probe_landscape.png", "The loss landscape along the gradient, steps of ½ to 4 × the learning rate "
                                         "(Santurkar et al. 2018, Fig. 4)\nnarrower, lower: smoother")
    if layers := _layers(keys, "variance_shift"):
        fig, axes = grid(1, len(layers))
        for ax, i in zip(axes[0], layers):
            band(ax, f"variance_shift/{i}", log=True)
            ax.axhline(1.0, color="grey", linewidth=0.8)
            ax.set(title=f"BatchNorm layer {i}", xlabel="step")
        axes[0][0].set_ylabel("max(v / v_run, v_run / v)")
        axes[0][0].legend(fontsize=8)
        save(fig, "probe_variance_shift.png", "Variance shift: validation variance against the running one "
                                              "(Li et al. 2019; 1 = none)")
    if layers := _layers(keys, "norms"):
        fig, axes = grid(2, len(layers))
        for j, i in enumerate(layers):
            band(axes[0][j], f"norms/{i}/weight")
            band(axes[1][j], f"norms/{i}/grad", log=True)
            axes[0][j].set(title=f"weight matrix {i}", ylabel="‖W‖" if j == 0 else None)
            axes[1][j].set(xlabel="step", ylabel="‖∇W‖ (probe batch)" if j == 0 else None)
        axes[0][0].legend(fontsize=8)
        save(fig, "probe_norms.png", "Weight and gradient norms per layer")
    return written
