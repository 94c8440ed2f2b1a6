"""Shared by the MLflow tests: two trained runs in a tmp store, servers on free loopback ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import DictConfig

from conftest import make_cfg, subprocess_env

EPOCHS = 5


@dataclass(frozen=True)
class Trained:
    """Two evaluated breast_cancer runs (lr 0.001 and 0.01) in one tmp SQLite store."""

    cfg: DictConfig  # the first run's config
    run_id: str
    other_run_id: str

    @property
    def uri(self) -> str:
        return str(self.cfg.tracking.uri)

    @property
    def checkpoint(self) -> Path:
        return Path(self.cfg.paths.models) / "best.ckpt"

    @property
    def prepared(self) -> Path:
        return Path(self.cfg.paths.prepared)


_cache: dict[str, Trained] = {}


def train_and_evaluate(cfg: DictConfig) -> str:
    from mlpflow.stages import evaluate, prepare, train

    prepare.run(cfg)
    run_id = train.run(cfg)["run_id"]
    evaluate.run(cfg)
    return run_id


def trained_runs(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """Trained once per test process (each xdist worker trains its own)."""
    if "runs" not in _cache:
        root = tmp_path_factory.mktemp("trained")
        first = make_cfg(root / "a", f"trainer.max_epochs={EPOCHS}")
        second = make_cfg(root / "b", f"trainer.max_epochs={EPOCHS}", "optimizer.lr=0.01")
        second.tracking.uri = first.tracking.uri
        _cache["runs"] = Trained(first, train_and_evaluate(first), train_and_evaluate(second))
    return _cache["runs"]


def raw_rows(prepared: Path, split: str = "test") -> pd.DataFrame:
    """A prepared split of continuous columns mapped back to raw values (the fitted transform,
    inverted), as a user's CSV would hold them."""
    from mlpflow.data.prepared import load_meta, load_split

    meta = load_meta(prepared)
    x, _ = load_split(prepared, split)
    numeric = meta.numeric
    assert numeric.n_continuous == x.shape[1], "raw_rows inverts continuous columns only"
    z = x.astype(np.float64)
    if numeric.clip:  # z / sqrt(1 + (z/c)^2), inverted
        z = z / np.sqrt(1 - (z / numeric.clip) ** 2)
    raw = numeric.estimator().inverse_transform(z)
    return pd.DataFrame(raw, columns=numeric.names)


class Exploit:
    """Unpickling this creates `marker`: what a crafted checkpoint could do on torch.load."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serving(command: list[str], log: Path, timeout: float = 60.0, **env: str) -> Iterator[str]:
    """Start `command` (which must listen on 127.0.0.1:<--port>), wait for /health, yield its
    base URL; always stop it and its workers (own process group) afterwards."""
    port = command[command.index("--port") + 1]
    url = f"http://127.0.0.1:{port}"
    with log.open("w") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=subprocess_env(**env),
            cwd=log.parent,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"{command[0]} did not answer /health:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
        yield url
    finally:
        _stop(process)


def _stop(process: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


RACE = """
import sys, time
from types import SimpleNamespace
from mlflow import MlflowClient
from mlpflow.config.compose import compose
from mlpflow.data.prepared import load_meta
from mlpflow.tracking.datasets import log_datasets, split_datasets

uri, experiment, prepared, start, rounds = sys.argv[1:6]
cfg = compose([])
cfg.paths.prepared = prepared
splits = split_datasets(cfg, load_meta(prepared), None)
client = MlflowClient(uri)


def renamed(split, i):
    return SimpleNamespace(to_dict=lambda: {**split.to_dict(), "digest": f"{i}{split.digest}"[:32]})


for i in range(int(rounds)):
    # Splits new to the store in each round, the same in both processes (as parallel trials)
    fresh = {key: renamed(split, i) for key, split in splits.items()}
    run_id = client.create_run(experiment).info.run_id
    while time.time() < float(start) + 0.25 * i:
        time.sleep(0.001)
    log_datasets(client, run_id, fresh)
"""


def race_dataset_logging(uri: str, prepared: Path, rounds: int = 12) -> list[str]:
    """Two processes log the same new splits into a new experiment at the same instants, as
    parallel trials do, `rounds` times; both must exit 0. The runs they made, by id."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    experiment = client.create_experiment(f"race-{time.time_ns()}")
    start = str(time.time() + 8)  # both processes imported and waiting
    script = ["python", "-c", RACE, uri, experiment, str(prepared), start, str(rounds)]
    racers = [subprocess.Popen(script, env=subprocess_env(), stderr=subprocess.PIPE, text=True)
              for _ in range(2)]  # fmt: skip
    stderrs = [racer.communicate(timeout=120)[1].splitlines() for racer in racers]
    errors = [[line[:500] for line in lines if "Error" in line or "Exception" in line][-1:]
              for lines in stderrs]  # fmt: skip
    assert all(racer.returncode == 0 for racer in racers), errors
    runs = [run.info.run_id for run in client.search_runs([experiment], max_results=1000)]
    assert len(runs) == 2 * rounds
    return runs
