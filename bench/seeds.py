"""Seeds on demand against a fixed count: the same claims judged with ``judge.seeds=<N>`` and with
``judge.seeds=auto judge.max_seeds=<M>``, each in a fresh store, in one sitting.

    python bench/seeds.py [--fixed 30] [--max-seeds 30] [--claims notes] [--contexts fmnist_small digits]

Prints, for each, the wall time and the training runs it made, and claim by claim the two verdicts (the fixed
table's firmness beside it) and the seeds the automatic one spent; the notebook loop's own time is printed first,
from the same sitting, since times move with the host.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ablate.config.commands import JudgeSettings
from ablate.config.run import TrackingConfig
from ablate.tracking.tracker import RunKind, Tracker

CONTEXTS = ("fmnist_small", "fmnist_small_precise", "digits", "digits_precise")


def judged(folder: Path, args: list[str]) -> tuple[float, int, dict[tuple[str, str], list[str]]]:
    """Run ``ablate claims`` in ``folder``; its wall time, its training runs, and its detail rows by (claim, context)."""
    folder.mkdir()
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}"}
    began = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ablate", "claims", *args], cwd=folder, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - began
    runs = Tracker(TrackingConfig(uri=env["MLFLOW_TRACKING_URI"])).runs(kind=RunKind.train)  # every page
    lines = (folder / "reports" / "claims.md").read_text().splitlines()
    header = next(i for i, line in enumerate(lines) if "anytime-valid" in line)
    names = [c.strip() for c in lines[header].split("|")[1:-1]]
    rows = {}
    for line in lines[header + 2:]:
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if len(cells) != len(names):
            break
        row = dict(zip(names, cells))
        rows[row["claim"], row["context"]] = row
    return wall, len(runs), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixed", type=int, default=30)
    parser.add_argument("--max-seeds", type=int, default=30)
    parser.add_argument("--claims", default="notes")
    parser.add_argument("--contexts", nargs="+", default=["fmnist_small", "digits"])
    args = parser.parse_args()
    dropped = [f"~judge.contexts.{c}" for c in CONTEXTS if c not in args.contexts]
    common = [f"claims=[{args.claims}]", *dropped]
    sys.path.insert(0, str(Path(__file__).parent))
    import torch
    from trainer import reference, seed_configs

    from ablate.engine.data import cached_splits

    splits = cached_splits(seed_configs(1, 10, "cpu")[0].data)
    print(f"reference: the notebook loop, 10 epochs: {reference(splits, 10, torch.device('cpu')):.2f} s")
    with tempfile.TemporaryDirectory() as tmp:
        fixed = judged(Path(tmp) / "fixed", [*common, f"judge.seeds={args.fixed}"])
        auto = judged(Path(tmp) / "auto", [*common, "judge.seeds=auto", f"judge.max_seeds={args.max_seeds}"])
    print(f"\n| judge.seeds | wall s | training runs |\n|---|---|---|\n| {args.fixed} | {fixed[0]:.0f} | {fixed[1]} |\n"
          f"| auto (max {args.max_seeds}) | {auto[0]:.0f} | {auto[1]} ({auto[1] / fixed[1]:.0%}) |\n")
    print("| claim | context | fixed verdict (firmness) | auto verdict | auto seeds | auto stopped |\n"
          "|---|---|---|---|---|---|")
    firm = same = fixed_seeds = auto_seeds = 0
    for key, row in fixed[2].items():
        other = auto[2][key]
        stopped = re.sub(r", [\[≥≤].*", "", other["anytime-valid"])
        print(f"| {key[0]} | {key[1]} | {row['verdict']} ({row['firmness']}) | {other['verdict']} | {other['n']} | "
              f"{stopped} |")
        if re.fullmatch(r"[0-9.]+", row["firmness"]) and float(row["firmness"]) >= JudgeSettings().firm:
            firm, same = firm + 1, same + (row["verdict"] == other["verdict"])
            fixed_seeds, auto_seeds = fixed_seeds + int(row["n"]), auto_seeds + int(other["n"])
    print(f"\nfirm verdicts of the fixed table: {same} of {firm} the same under auto; their seeds per arm: "
          f"{auto_seeds} under auto against {fixed_seeds} ({auto_seeds / max(fixed_seeds, 1):.0%})")


if __name__ == "__main__":
    main()
