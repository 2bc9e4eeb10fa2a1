"""``python -m ablate.ui [port=5000]``: the MLflow UI on the project's tracking store, with the address of its runs."""

from __future__ import annotations

import subprocess
import sys

from ablate.cli import hydra_command
from ablate.schemas import UIConfig
from ablate.tracking import Tracker


def main(cfg: UIConfig) -> None:
    tracker = Tracker(cfg.tracking)
    print(f"MLflow UI for {tracker.uri}\n  training runs: {tracker.runs_url(host=f'http://127.0.0.1:{cfg.port}')}\n"
          f"  (Ctrl-C stops it)", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", cfg.tracking.uri, "--host",
                        "127.0.0.1", "--port", str(cfg.port)], check=True)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    hydra_command("ui", main, "the UI stopped.")
