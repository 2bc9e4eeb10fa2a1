"""ablate from Python, as a notebook uses it: ``run``, ``sweep``, ``runs``, ``judge`` give the command line's results,
show their progress (quietly where asked), and leave the process as they found it."""

import logging
import os
import re
import signal
import warnings

import matplotlib
import numpy as np
import pytest
import sqlalchemy
import torch

import ablate
from tests.conftest import QUICK


def process_state() -> dict:
    """What a notebook owns: torch's random state and TF32 flags, MLflow's tracking URI, logging, warnings, the
    matplotlib backend and its open figures, Hydra's global state, the environment, the signal handlers, the cwd."""
    import mlflow
    from hydra.core.global_hydra import GlobalHydra
    from matplotlib import pyplot

    root = logging.getLogger()
    mine = logging.getLogger("ablate")
    return {"rng": torch.random.get_rng_state().clone(), "tf32": (torch.backends.cuda.matmul.allow_tf32,
                                                                  torch.backends.cudnn.allow_tf32),
            "mlflow uri": mlflow.get_tracking_uri(), "root handlers": list(root.handlers), "root level": root.level,
            "ablate logger": (list(mine.handlers), mine.level, mine.propagate), "warnings": list(warnings.filters),
            "backend": matplotlib.get_backend(), "figures": pyplot.get_fignums(),
            "hydra": GlobalHydra.instance().is_initialized(), "environ": dict(os.environ),
            "signals": {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)},
            "cwd": os.getcwd()}


def same(before: dict, after: dict) -> list[str]:
    return [k for k in before if not (torch.equal(before[k], after[k]) if k == "rng" else before[k] == after[k])]


def test_a_run_a_sweep_its_runs_and_a_report_leave_the_process_as_they_found_it(tracking_uri, tmp_path):
    from ablate.analysis.report import build_report
    from ablate.tracking.tracker import Tracker
    from ablate.config import TrackingConfig

    import sklearn  # noqa: F401 - its import sets KMP_* variables of its own: the library's doing, not ablate's

    torch.manual_seed(1234)
    warnings.simplefilter("default")  # a notebook's own filters
    before = process_state()
    result = ablate.run(*QUICK, quiet=True)
    sweep_id = ablate.sweep([*QUICK, "model.bn=pre,none", "seed=0,1"], quiet=True)
    frame = ablate.runs(sweep_id)
    build_report(Tracker(TrackingConfig(uri=tracking_uri)), sweep_id, tmp_path / "reports")
    assert result.outcome.value == "finished" and len(frame) == 4
    assert same(before, process_state()) == []
    assert torch.rand(1).item() == pytest.approx((torch.manual_seed(1234), torch.rand(1).item())[1])


def test_a_library_call_shows_progress_unless_quiet(tracking_uri, capsys):
    ablate.run(*QUICK, "seed=5")
    shown = capsys.readouterr()
    assert "epoch   2/2" in shown.out and "FINISHED in" in shown.out
    ablate.run(*QUICK, "seed=6", quiet=True)
    quiet = capsys.readouterr()
    assert "epoch" not in quiet.out + quiet.err
    ablate.sweep([*QUICK, "seed=9,10"], quiet=True)
    quiet = capsys.readouterr()
    assert quiet.out + quiet.err == ""
    ablate.sweep([*QUICK, "seed=7,8"])
    swept = capsys.readouterr()
    assert "plan: 2 variants" in swept.out + swept.err and "member-epochs" in swept.err
    assert re.search(r"about \d+ s to train 2 variants here", swept.out + swept.err)  # said before they train


def test_params_come_back_as_their_config_types(tracking_uri):
    frame = ablate.runs(ablate.sweep([*QUICK, "model.bn=pre,none"], quiet=True))
    row = frame.iloc[0]
    assert isinstance(row["data.n_classes"], (int, np.integer)) and row["data.n_classes"] == 10  # not 10.0
    assert isinstance(row["optim.lr"], float) and isinstance(row["trainer.tf32"], (bool, np.bool_))
    assert row["model.bn"] in {"pre", "none"}


def test_the_sqlite_settings_apply_to_ablates_stores_only(tracking_uri, tmp_path):
    from ablate.tracking.tracker import Tracker
    from ablate.config import TrackingConfig

    Tracker(TrackingConfig(uri=tracking_uri))
    other = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'notebooks_own.db'}")
    with other.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "delete"
    ours = sqlalchemy.create_engine(tracking_uri)
    with ours.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_module_caches_are_bounded_so_a_long_session_does_not_grow():
    from ablate.config import DataConfig, DataSource
    from ablate.engine import data, memory
    from ablate.tracking import provenance

    for limit in range(100, 160, 10):  # six data configs: the splits of the last four are kept
        data.cached_splits(DataConfig(name="digits", source=DataSource.digits, limit=limit))
    assert len(data._splits._found) == 4
    assert data._splits.size == 4 and memory._sizes.__class__.__name__ == "OrderedDict"
    for i in range(300):
        path = provenance.PACKAGE / "paths.py"
        os.utime(path, ns=(i * 1000, i * 1000))  # another mtime: another entry
        provenance.file_digest(path)
    assert len(provenance._files) <= 256


def test_judge_returns_the_verdict_tables(tracking_uri, tmp_path):
    (tmp_path / "claims").mkdir()
    (tmp_path / "claims" / "one.yaml").write_text("bn_helps:\n  text: BN helps\n  a: {model.bn: pre}\n"
                                                   "  b: {model.bn: none}\n")
    text = ablate.judge("claims=[one]", f"hydra.searchpath=[file://{tmp_path}]", "judge.seeds=3", "trainer.epochs=1",
                        "judge.bootstrap=200", "~judge.contexts.fmnist_small", "~judge.contexts.fmnist_small_precise",
                        "~judge.contexts.digits_precise", quiet=True)
    assert text.startswith("| claim | digits | holds in | seeds vary |") and "| BN helps |" in text
    assert "| init, order, noise |" in text and "Seeds vary: init, order, noise (held fixed: split)" in text
