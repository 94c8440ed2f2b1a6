"""`last.ckpt`, what an interrupted run resumes from, written at most every `every_seconds`.

An epoch of a small table takes milliseconds, and writing its checkpoint and its metrics costs
about as much again (benchmarks/README.md). So the loggers hold the epoch metrics, and at the end
of an epoch, once `every_seconds` have passed since the last write (and always after the last
epoch), this callback flushes them and then writes the checkpoint. The store then always has
every epoch the checkpoint holds; a run killed in between resumes from the checkpoint and repeats
the epochs after it, whose points the store may already have (`TrackingLogger` skips those).
"""

from __future__ import annotations

import math
import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint


class LastCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint for `last.ckpt`, saved at the end of a training epoch when
    due. A logger with `holding` and `flush()` (`TrackingLogger`) holds its points between
    writes; with `every_seconds=0` every epoch is written and nothing is held."""

    def __init__(self, every_seconds: float = 1.0, **kwargs: Any) -> None:
        super().__init__(monitor=None, save_top_k=1, save_on_train_epoch_end=True, **kwargs)
        self.every_seconds = every_seconds
        self._written_at = -math.inf

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        for logger in _holding_loggers(trainer):
            logger.holding = self.every_seconds > 0

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        due = time.monotonic() - self._written_at >= self.every_seconds
        if not (due or _last_epoch(trainer)):
            return
        for logger in _holding_loggers(trainer):
            logger.flush()  # the metrics first: a kill after them repeats an epoch, loses none
        super().on_train_epoch_end(trainer, pl_module)
        self._written_at = time.monotonic()


def _holding_loggers(trainer: pl.Trainer) -> list[Any]:
    return [logger for logger in trainer.loggers if hasattr(logger, "holding")]


def _last_epoch(trainer: pl.Trainer) -> bool:
    """Whether training stops after this epoch: early stopping (or a timer) asked for it, or
    the epoch or step limit is reached. Every checkpoint callback runs after the others."""
    epochs, steps = trainer.max_epochs, trainer.max_steps
    return (
        trainer.should_stop
        or (epochs is not None and epochs >= 0 and trainer.current_epoch + 1 >= epochs)
        or (steps is not None and steps >= 0 and trainer.global_step >= steps)
    )
