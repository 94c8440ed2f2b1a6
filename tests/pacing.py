"""A test-only Lightning callback that gives every epoch a minimum wall time, so a test about
time limits runs as long on a fast machine as on a slow one."""

from __future__ import annotations

import time

import pytorch_lightning as pl


class EpochPace(pl.Callback):
    """Sleeps at each epoch's end until the epoch has lasted at least `seconds`."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.started = time.monotonic()

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        time.sleep(max(0.0, self.started + self.seconds - time.monotonic()))
