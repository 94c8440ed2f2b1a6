"""A test-only Lightning callback that gives a fresh run's epochs a minimum wall time, so a test
about time limits runs as long on a fast machine as on a slow one."""

from __future__ import annotations

import time

import pytorch_lightning as pl


class EpochPace(pl.Callback):
    """Sleeps at each epoch's end until the epoch has lasted at least `seconds`, in a run that
    starts at epoch 0 only: a resumed run goes at full speed, so a first attempt is sure to reach
    a time limit and its retry sure to finish, however loaded the machine."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = 0.0
        self.pacing = True

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.pacing = trainer.current_epoch == 0

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.started = time.monotonic()

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if self.pacing:
            time.sleep(max(0.0, self.started + self.seconds - time.monotonic()))
