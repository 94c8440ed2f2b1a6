"""last.ckpt and the epoch metrics are written together, at most every `every_seconds`, and
always after the last epoch; a stopped run flushes the metrics of every epoch it finished."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import ClassVar

import pytest
import pytorch_lightning as pl
import torch
from mlflow import MlflowClient

from mlpflow.stages import prepare, train

OBSERVER = "+callbacks.observer._target_=test_last_checkpoint.WrittenSoFar"


class WrittenSoFar(pl.Callback):
    """At each epoch's start: the epoch in last.ckpt (-1: none) and the val/loss points stored."""

    seen: ClassVar[list[tuple[int, int, int]]] = []

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        WrittenSoFar.seen = []

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        (dirpath,) = {c.dirpath for c in trainer.checkpoint_callbacks}
        last = Path(dirpath) / "last.ckpt"
        epoch = torch.load(last, weights_only=True)["epoch"] if last.exists() else -1
        client = MlflowClient(trainer.logger.experiment.tracking_uri)
        points = len(client.get_metric_history(trainer.logger.run_id, "val/loss"))
        WrittenSoFar.seen.append((trainer.current_epoch, epoch, points))


def run(cfg_factory, *overrides: str) -> tuple[dict, list[tuple[int, int, int]], MlflowClient]:
    cfg = cfg_factory("data=synthetic", "data.n_samples=1000", OBSERVER, *overrides)
    prepare.run(cfg)
    report = train.run(cfg)
    return report, WrittenSoFar.seen, MlflowClient(cfg.tracking.uri)


def test_writes_wait_for_the_interval_and_the_last_epoch_is_always_written(cfg_factory):
    report, seen, client = run(
        cfg_factory, "trainer.max_epochs=5", "callbacks.early_stopping=null",
        "callbacks.last_checkpoint.every_seconds=1000",
    )  # fmt: skip
    # Epoch 0 is written (nothing was before); epochs 1-3 wait, metrics and checkpoint alike.
    assert seen == [(0, -1, 0), (1, 0, 1), (2, 0, 1), (3, 0, 1), (4, 0, 1)]
    assert report["epochs_run"] == 5  # read from last.ckpt: the last epoch was written
    history = client.get_metric_history(report["run_id"], "val/loss")
    assert len(history) == 5
    assert len({m.timestamp for m in history}) == 5  # each point stamped when its epoch ended


def test_every_seconds_zero_writes_every_epoch(cfg_factory):
    _, seen, _ = run(
        cfg_factory, "trainer.max_epochs=4", "callbacks.early_stopping=null",
        "callbacks.last_checkpoint.every_seconds=0",
    )  # fmt: skip
    assert seen == [(0, -1, 0), (1, 0, 1), (2, 1, 2), (3, 2, 3)]


def test_an_early_stop_writes_its_last_epoch(cfg_factory):
    """lr=1e-12: val/loss never improves after epoch 0, so patience 2 stops after epoch 2."""
    report, seen, client = run(
        cfg_factory, "trainer.max_epochs=50", "optimizer.lr=1e-12",
        "callbacks.early_stopping.patience=2", "callbacks.last_checkpoint.every_seconds=1000",
    )  # fmt: skip
    assert [epoch for epoch, _, _ in seen] == [0, 1, 2]
    assert report["epochs_run"] == 3
    assert len(client.get_metric_history(report["run_id"], "val/loss")) == 3


def test_a_failed_run_still_stores_the_metrics_of_its_finished_epochs(cfg_factory):
    """Training that raises in epoch 3 (here: a callback) leaves epochs 0-2 in the store, held or
    not: Lightning finalizes the logger on the way out."""
    cfg = cfg_factory(
        "data=synthetic", "data.n_samples=1000", "trainer.max_epochs=10",
        "callbacks.early_stopping=null", "callbacks.last_checkpoint.every_seconds=1000",
        "+callbacks.fail._target_=test_last_checkpoint.FailAtEpoch", "+callbacks.fail.epoch=3",
    )  # fmt: skip
    prepare.run(cfg)
    with pytest.raises(RuntimeError, match="epoch 3"):
        train.run(cfg)
    client = MlflowClient(cfg.tracking.uri)
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    (run_,) = client.search_runs([experiment.experiment_id])
    steps = [m.step for m in client.get_metric_history(run_.info.run_id, "val/loss")]
    assert len(steps) == len(set(steps)) == 3
    assert run_.info.status == "FAILED"


class FailAtEpoch(pl.Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            raise RuntimeError(f"stopped at epoch {self.epoch}")


def signal_at_epoch(models: Path, epoch: int) -> None:
    """SIGTERM this process once last.ckpt holds `epoch`: training stops at its next chunk."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if torch.load(models / "last.ckpt", weights_only=True)["epoch"] >= epoch:
                os.kill(os.getpid(), signal.SIGTERM)
                return
        except (OSError, RuntimeError, EOFError):
            pass
        time.sleep(0.002)


def test_a_stopped_run_with_a_scheduler_resumes_to_the_uninterrupted_weights(tmp_path: Path):
    """Cosine LR, stepped by the module at each epoch's end: the resumed run continues the
    schedule where the checkpoint left it (a step lost or repeated changes every later update)
    and ends with the uninterrupted run's weights."""
    from mlpflow.errors import RunInterrupted

    from conftest import make_cfg

    overrides = (
        "data=synthetic", "data.n_samples=2000", "trainer.max_epochs=8", "scheduler=cosine",
        "callbacks.early_stopping=null", "callbacks.last_checkpoint.every_seconds=0",
    )  # fmt: skip
    whole = make_cfg(tmp_path / "whole", *overrides)
    prepare.run(whole)
    train.run(whole)
    cfg = make_cfg(tmp_path / "stopped", *overrides)
    cfg.paths.prepared = whole.paths.prepared
    models = Path(cfg.paths.models)
    threading.Thread(target=signal_at_epoch, args=(models, 2), daemon=True).start()
    with pytest.raises(RunInterrupted):
        train.run(cfg)
    stopped_at = torch.load(models / "last.ckpt", weights_only=True)["epoch"]
    assert 2 <= stopped_at < 7  # stopped mid-training
    report = train.run(cfg)  # the same config again: resumes from last.ckpt
    assert MlflowClient(cfg.tracking.uri).get_run(report["run_id"]).data.tags["run.resumes"] == "1"
    for name in ("last.ckpt", "best.ckpt"):
        a = torch.load(models / name, weights_only=True)["state_dict"]
        b = torch.load(Path(whole.paths.models) / name, weights_only=True)["state_dict"]
        assert all(torch.equal(a[k], b[k]) for k in a), name
