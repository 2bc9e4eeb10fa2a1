"""What starting ablate costs, measured in one sitting against Python's own start-up and torch's import:

    python bench/startup.py [--repeats 5]

Each command runs ``--repeats`` times in a fresh process from an empty folder with a fresh MLflow store; the table
gives the median wall time and its ratio to ``python -c pass`` and to ``import torch`` measured beside it. Then a
default run's time to its first epoch line, and the 15 slowest imports of ``python -X importtime -m ablate ...``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
    "ablate --help": [sys.executable, "-m", "ablate", "--help"],
    "ablate --version": [sys.executable, "-m", "ablate", "--version"],
    "python -c 'import ablate'": [sys.executable, "-c", "import ablate"],
    "python -c 'import ablate; ablate.run'": [sys.executable, "-c", "import ablate; ablate.run"],
}


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def wall(command: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as folder:
            began = time.perf_counter()
            subprocess.run(command, cwd=folder, env=env(), check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            times.append(time.perf_counter() - began)
    return statistics.median(times)


def to_first_epoch(repeats: int) -> tuple[float, float]:
    """(seconds to the first epoch line, seconds to the end) of ``ablate trainer.epochs=2`` in an empty folder."""
    first, whole = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as folder:
            began = time.perf_counter()
            process = subprocess.Popen([sys.executable, "-m", "ablate", "trainer.epochs=2"], cwd=folder,
                                       env={**env(), "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True)
            for line in process.stdout:
                if line.startswith("epoch   1/"):
                    first.append(time.perf_counter() - began)
            process.wait()
            whole.append(time.perf_counter() - began)
    return statistics.median(first), statistics.median(whole)


def slowest_imports(count: int = 15) -> list[tuple[int, str]]:
    """The imports of ``ablate trainer.epochs=1`` taking most time, cumulative microseconds."""
    with tempfile.TemporaryDirectory() as folder:
        out = subprocess.run([sys.executable, "-X", "importtime", "-m", "ablate", "trainer.epochs=1"], cwd=folder,
                             env=env(), capture_output=True, text=True, check=True).stderr
    rows = []
    for line in out.splitlines():
        if line.startswith("import time:") and "|" in line and "cumulative" not in line:
            _, cumulative, name = (part.strip() for part in line.removeprefix("import time:").split("|"))
            rows.append((int(cumulative), name.strip()))
    top_level = [r for r in rows if not r[1].startswith(" ") and "." not in r[1]]
    return sorted(top_level, reverse=True)[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    times = {name: wall(command, args.repeats) for name, command in COMMANDS.items()}
    bare, torch_import = times["python -c pass"], times["python -c 'import torch'"]
    print(f"| command (median of {args.repeats}, fresh processes) | wall s | x python -c pass | x import torch |")
    print("|---|---|---|---|")
    for name, seconds in times.items():
        print(f"| {name} | {seconds:.3f} | {seconds / bare:.1f} | {seconds / torch_import:.2f} |")
    first, whole = to_first_epoch(args.repeats)
    print(f"| ablate trainer.epochs=2: to its first epoch line | {first:.3f} | {first / bare:.1f} | "
          f"{first / torch_import:.2f} |")
    print(f"| ablate trainer.epochs=2: to its end | {whole:.3f} | {whole / bare:.1f} | {whole / torch_import:.2f} |")
    print("\nThe slowest imports of `ablate trainer.epochs=1` (python -X importtime, cumulative):")
    for microseconds, name in slowest_imports():
        print(f"  {microseconds / 1e6:6.3f} s  {name}")


if __name__ == "__main__":
    main()
