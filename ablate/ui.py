"""``python -m ablate.ui``: the MLflow UI on the project's tracking store, with the address of its runs table."""

from __future__ import annotations

import os
import subprocess
import sys

from ablate import run_interruptible
from ablate.config import TrackingConfig
from ablate.tracking import Tracker, mask_url


def main() -> None:
    uri = os.environ.get("MLFLOW_TRACKING_URI", TrackingConfig.uri)
    port = os.environ.get("PORT", "5000")
    tracker = Tracker(TrackingConfig(uri=uri))
    print(f"MLflow UI for {mask_url(uri)}\n  training runs: {tracker.runs_url(f'http://127.0.0.1:{port}')}\n"
          f"  (Ctrl-C stops it)", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1",
                        "--port", port], check=True)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    run_interruptible(main, "the UI stopped.")
