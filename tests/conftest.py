"""Shared fixtures: Hydra's compose API on conf/, and a temporary MLflow SQLite store per test.

A new MLflow SQLite database runs every migration (seconds), so one is migrated per session and copied.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from ablate.config import RunConfig, register_configs, to_run_config

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
register_configs()


def make_config(*overrides: str) -> RunConfig:
    """The composed, validated config for these overrides, exactly as ``python -m ablate`` builds it."""
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return to_run_config(compose(config_name="config", overrides=list(overrides)))


def pg_reachable() -> bool:
    try:
        import psycopg

        psycopg.connect("host=127.0.0.1 port=5432 dbname=test user=postgres connect_timeout=3").close()
        return True
    except Exception:  # noqa: BLE001 - any failure means: no PostgreSQL here
        return False


@pytest.fixture(scope="session")
def migrated_store(tmp_path_factory) -> Path:
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()  # creates the tables, runs the migrations
    return path


@pytest.fixture
def tracking_uri(migrated_store, tmp_path, monkeypatch) -> str:
    """A fresh MLflow store for this test, in its own working directory; the user's store is never touched."""
    shutil.copy(migrated_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("ABLATE_SWEEP_ID", raising=False)
    monkeypatch.delenv("ABLATE_PARENT_RUN_ID", raising=False)
    monkeypatch.chdir(tmp_path)
    return uri


QUICK = ("data=digits", "trainer.epochs=2", "trainer.device=cpu")
