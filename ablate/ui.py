"""``ablate ui [port=5000] [workers=1] [tracking.uri=...]``: the MLflow UI on the project's tracking store, with the
address of its runs. Ctrl-C (or SIGTERM) stops it and every process it started."""

from __future__ import annotations

import sys


def ui(cfg) -> None:
    from ablate.cli import serve
    from ablate.tracking.tracker import Tracker

    tracker = Tracker(cfg.tracking)
    print(f"MLflow UI for {tracker.uri}\n  training runs: {tracker.runs_url(host=f'http://127.0.0.1:{cfg.port}')}\n"
          f"  (Ctrl-C stops it)", flush=True)
    serve([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", cfg.tracking.uri, "--host", "127.0.0.1",
           "--port", str(cfg.port), "--workers", str(cfg.workers)])


def main(argv: list[str]) -> None:
    from ablate.cli import compose_command, run_command, settings_help, wants_help

    if wants_help(argv):
        from ablate.config.commands import UIConfig

        return print(__doc__ + "\nsettings:\n" + "\n".join(settings_help(UIConfig)))
    run_command(lambda: compose_command("ui", argv, ui), "the UI stopped.")


if __name__ == "__main__":
    main(sys.argv[1:])
