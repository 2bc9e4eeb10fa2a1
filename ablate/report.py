"""``ablate report [sweep=<id>] [out=reports] [tracking.uri=...]``: a sweep's runs read back from MLflow as a
markdown report with its plots, in reports/<sweep id>/ and on the sweep's MLflow run (the latest sweep unless
``sweep=`` names one)."""

from __future__ import annotations

import sys


def report(cfg) -> None:
    from pathlib import Path

    from ablate.analysis.report import build_report
    from ablate.errors import UserError
    from ablate.paths import command
    from ablate.tracking.tracker import Tracker

    tracker = Tracker(cfg.tracking)
    sweep_id = cfg.sweep or tracker.latest_sweep_id()
    if sweep_id is None:
        raise UserError(f"no sweep in {tracker.uri} yet: run one, e.g. {command('-m', 'model.bn=pre,post,none')}")
    written = build_report(tracker, sweep_id, Path(cfg.out))
    print(written.read_text())
    print(f"written: {written} and its plots; also logged to the sweep's MLflow run")


def main(argv: list[str]) -> None:
    from ablate.cli import compose_command, run_command, settings_help, wants_help

    if wants_help(argv):
        from ablate.config.commands import ReportConfig

        return print(__doc__ + "\nsettings:\n" + "\n".join(settings_help(ReportConfig)))
    run_command(lambda: compose_command("report", argv, report), "no report was written.")


if __name__ == "__main__":
    main(sys.argv[1:])
