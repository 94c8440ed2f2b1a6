"""The shared tracking server: `mlflow server` on a private PostgreSQL cluster (Debian's packages,
loopback only) with a proxied artifact store; a parallel 4-trial sweep with `tracking=server`
lands in it whole: every run in PostgreSQL, every artifact in the artifact store; parallel
runs racing to log the same new datasets each get them."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pytest
from mlflow import MlflowClient

from conftest import copy_project, subprocess_env
from mlflow_helpers import free_port, race_dataset_logging, serving

pytestmark = pytest.mark.slow

DB, USER, PASSWORD = "mlflow", "mlflow", "mlflow-test-secret"
# The artifacts a trial's run holds (README, "MLflow"); the model is a logged model of its own.
RUN_ARTIFACTS = {
    "checkpoints/best.ckpt",
    "config/config.yaml",
    "figures/roc.png",
    "figures/precision_recall.png",
    "figures/confusion_matrix.png",
    "figures/calibration.png",
    "plots/roc.json",
    "reports/metrics.json",
}


def postgres_bin() -> Path:
    """The newest /usr/lib/postgresql/<version>/bin with initdb (Debian's layout)."""
    found = sorted(
        (Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")),
        key=lambda d: [int(n) for n in re.findall(r"\d+", d.parent.name)],
    )
    if not found:
        pytest.fail(
            "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb): install "
            "Debian's postgresql package (apt-get install postgresql), as .ci/run does"
        )
    return found[-1]


def psycopg():
    """SQLAlchemy 2.1's driver for postgresql:// URIs (psycopg 3), for the server and the test."""
    try:
        import psycopg
    except ImportError:
        pytest.fail('psycopg is missing: pip install -e ".[dev]" (it has psycopg[binary])')
    return psycopg


@dataclass(frozen=True)
class Postgres:
    port: int

    def connect(self, database: str = DB, user: str = USER, password: str = PASSWORD):
        return psycopg().connect(
            host="127.0.0.1", port=self.port, dbname=database, user=user, password=password
        )

    @property
    def uri(self) -> str:
        return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{DB}"


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    """A throwaway cluster on 127.0.0.1:<free port>; its socket stays in its own directory.

    initdb refuses root: as root (CI) the server runs as the `postgres` OS user, in a directory
    under /tmp that user owns (pytest's tmp dirs are private to root).
    """
    binaries = postgres_bin()
    root = Path(tempfile.mkdtemp(prefix="mlpflow-pg-"))
    data, log, port = root / "data", root / "server.log", free_port()
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    superuser_password = root / "pwfile"
    superuser_password.write_text("postgres-test-secret\n")
    if as_postgres:
        shutil.chown(superuser_password, "postgres", "postgres")

    def pg(tool: str, *args: str, check: bool = True) -> None:
        result = subprocess.run(
            [*as_postgres, str(binaries / tool), *args],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and result.returncode != 0:
            logged = log.read_text()[-3000:] if log.exists() else ""
            pytest.fail(f"{tool} {' '.join(args)} failed:\n{result.stdout}{result.stderr}{logged}")

    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1"
    try:
        pg(
            "initdb",
            *("-D", str(data), "-U", "postgres", "--pwfile", str(superuser_password)),
            *("--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-locale"),
        )
        pg("pg_ctl", "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start")
        server = Postgres(port)
        # A login role and a database of its own, as a production setup has them.
        with server.connect("postgres", "postgres", "postgres-test-secret") as admin:
            admin.autocommit = True
            admin.execute(f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'")
            admin.execute(f"CREATE DATABASE {DB} OWNER {USER}")
        yield server
    finally:
        if (data / "postmaster.pid").exists():
            pg("pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop", check=False)
        shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class Server:
    url: str
    artifacts: Path  # --artifacts-destination


@pytest.fixture(scope="module")
def server(postgres: Postgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("mlflow-server")
    artifacts = tmp / "artifacts"
    command = [
        *("mlflow", "server", "--backend-store-uri", postgres.uri),
        *("--artifacts-destination", str(artifacts)),
        *("--host", "127.0.0.1", "--port", str(free_port()), "--workers", "1"),
    ]
    # The first start creates MLflow's schema in PostgreSQL (alembic migrations).
    log = tmp / "server.log"
    with serving(command, log, timeout=180, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false") as url:
        yield Server(url, artifacts)


@pytest.fixture(scope="module")
def swept(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A parallel 4-trial grid run as a user runs it, with MLFLOW_TRACKING_URI at the server."""
    project = copy_project(tmp_path_factory.mktemp("pg-sweep") / "project")
    result = subprocess.run(
        [
            *("python", "-m", "mlpflow.train", "-m", "tracking=server"),
            *("hydra/launcher=joblib", "hydra.launcher.n_jobs=2"),
            *("optimizer.lr=1e-3,3e-3", "model.hidden_dims=[16],[32]"),
            *("trainer.max_epochs=3", "callbacks.progress_bar=null"),
        ],
        cwd=project,
        env=subprocess_env(MLFLOW_TRACKING_URI=server.url),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return project


def listed(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    """Every artifact file of a run, as the server lists them."""
    files: set[str] = set()
    for entry in client.list_artifacts(run_id, path):
        files |= listed(client, run_id, entry.path) if entry.is_dir else {entry.path}
    return files


def stored_at(destination: Path, artifact_uri: str) -> Path:
    """Where the server keeps `mlflow-artifacts:/<path>`: <artifacts-destination>/<path>."""
    parsed = urlparse(artifact_uri)
    assert parsed.scheme == "mlflow-artifacts", artifact_uri  # proxied, not a client-side path
    return destination / parsed.path.lstrip("/")


def test_a_parallel_sweep_lands_whole_in_the_postgres_server(
    swept: Path, server: Server, postgres: Postgres
):
    client = MlflowClient(server.url)
    experiment = client.get_experiment_by_name("mlpflow")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    (parent,) = parents
    assert parent.info.status == "FINISHED"
    assert len(children) == 4
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert all(c.info.status == "FINISHED" for c in children)
    grid = {(c.data.params["optimizer.lr"], c.data.params["model.hidden_dims"]) for c in children}
    assert grid == {(lr, dims) for lr in ("0.001", "0.003") for dims in ("[16]", "[32]")}
    assert all(c.data.params["tracking.uri"] == server.url for c in children)
    for child in children:
        assert {"train/loss", "val/roc_auc", "val/best_loss", "test/roc_auc"} <= set(
            child.data.metrics
        )
    assert parent.data.tags["best.run_id"] in {c.info.run_id for c in children}
    assert {"trials.json", "optimization_history.png"} <= listed(client, parent.info.run_id)

    # Artifacts: listed through the server, and files in --artifacts-destination.
    for child in children:
        run_id = child.info.run_id
        files = listed(client, run_id)
        assert files >= RUN_ARTIFACTS, files
        on_disk = stored_at(server.artifacts, child.info.artifact_uri)
        for name in files:
            assert (on_disk / name).is_file() and (on_disk / name).stat().st_size > 0, name
        fetched = Path(client.download_artifacts(run_id, "reports/metrics.json", str(swept)))
        assert fetched.read_bytes() == (on_disk / "reports/metrics.json").read_bytes()
    models = client.search_logged_models([experiment.experiment_id])
    assert sorted(m.source_run_id for m in models) == sorted(c.info.run_id for c in children)
    for model in models:
        assert "MLmodel" in {a.path for a in client.list_logged_model_artifacts(model.model_id)}
        assert (stored_at(server.artifacts, model.artifact_location) / "MLmodel").is_file()

    # The runs live in PostgreSQL.
    with postgres.connect() as connection:
        in_db = dict(
            connection.execute(
                "SELECT run_uuid, status FROM runs WHERE experiment_id = %s",
                (int(experiment.experiment_id),),
            ).fetchall()
        )
        (with_test_metrics,) = connection.execute(
            "SELECT count(DISTINCT run_uuid) FROM metrics WHERE key = 'test/roc_auc'"
        ).fetchone()
    assert in_db == {r.info.run_id: "FINISHED" for r in runs}
    assert with_test_metrics == 4


def test_parallel_runs_logging_the_same_new_splits_through_the_server_each_get_all_three(
    swept: Path, server: Server
):
    """PostgreSQL words the dataset race of MLflow's SQL store its own way (a unique violation
    of `dataset_pk`), and the server hands it on as an HTTP error: each run still gets its
    three inputs."""
    (prepared,) = (swept / "data" / "cache").iterdir()  # the sweep's data, prepared once
    runs = race_dataset_logging(server.url, prepared)
    client = MlflowClient(server.url)
    assert all(len(client.get_run(run_id).inputs.dataset_inputs) == 3 for run_id in runs)
