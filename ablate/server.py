"""``ablate server`` (``make server``): one MLflow tracking server on PostgreSQL for a team or cluster.

Creates the database if it is missing, then runs ``mlflow server`` with the runs in PostgreSQL and the artifacts
proxied into one shared folder, so workers need nothing but ``MLFLOW_TRACKING_URI=http://HOST:PORT``. It binds
127.0.0.1 unless ``--host`` says otherwise: a server others can reach wants MLflow's authentication (README,
"Scaling"). MLflow and Optuna each keep an ``alembic_version`` table, so give Optuna a database of its own.
Ctrl-C (or SIGTERM) stops it and every process it started.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from sqlalchemy.engine import make_url

from ablate.cli import run_command, serve
from ablate.errors import UserError
from ablate.paths import command
from ablate.tracking.store import connection_failure, mask_url

DEFAULT_DB = "postgresql://postgres@127.0.0.1:5432/mlflow"


def ensure_database(url: str) -> None:
    """CREATE DATABASE for a PostgreSQL URL whose database does not exist yet (connecting to ``postgres``)."""
    import psycopg

    target = make_url(url)
    if not target.drivername.startswith("postgresql"):
        return
    admin = target.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    try:
        conn = psycopg.connect(admin, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as err:
        raise UserError(f"cannot reach PostgreSQL for {mask_url(url)}: {connection_failure(err)}. Start it, or "
                        f"point --db / ABLATE_SERVER_DB elsewhere.") from err
    with conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (target.database,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{target.database}"')
            print(f"created database {target.database}", flush=True)


def server(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog=command("server"), description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default=os.environ.get("ABLATE_SERVER_DB", DEFAULT_DB),
                        help="the runs' database (default %(default)s); with a password, set ABLATE_SERVER_DB "
                             "instead, which `ps` does not show")
    parser.add_argument("--artifacts", default="mlartifacts", help="shared folder for artifacts (default %(default)s)")
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to serve other machines: turn on auth first")
    parser.add_argument("--port", default="5000")
    parser.add_argument("--workers", default="4", help="server worker processes")
    parser.add_argument("--auth", action="store_true",
                        help="MLflow's basic authentication (users in MLFLOW_AUTH_CONFIG_PATH's ini; change the admin "
                             "password first); workers set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD")
    args = parser.parse_args(argv)
    if args.auth and not os.environ.get("MLFLOW_FLASK_SERVER_SECRET_KEY"):
        parser.error("--auth needs MLFLOW_FLASK_SERVER_SECRET_KEY (MLflow's CSRF key, the same on every server): "
                     "export MLFLOW_FLASK_SERVER_SECRET_KEY=$(python -c 'import secrets; print(secrets.token_hex(32))')")
    ensure_database(args.db)
    artifacts = Path(args.artifacts).resolve()
    artifacts.mkdir(parents=True, exist_ok=True)
    print(f"MLflow tracking server on {mask_url(args.db)}, artifacts in {artifacts}\n"
          f"  workers log to it with: MLFLOW_TRACKING_URI=http://{args.host}:{args.port}\n  (Ctrl-C stops it)",
          flush=True)
    # The database URL goes in the environment, not the command line, which `ps` shows to every user.
    env = {**os.environ, "MLFLOW_BACKEND_STORE_URI": args.db}
    serve([sys.executable, "-m", "mlflow", "server", "--artifacts-destination", artifacts.as_uri(), "--serve-artifacts",
           "--host", args.host, "--port", str(args.port), "--workers", str(args.workers),
           *(["--app-name", "basic-auth"] if args.auth else [])], env)


def main(argv: list[str]) -> None:
    run_command(lambda: server(argv), "the server stopped.")


if __name__ == "__main__":
    main(sys.argv[1:])
