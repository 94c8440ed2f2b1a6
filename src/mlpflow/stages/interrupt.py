"""SIGTERM (schedulers, `timeout`, Kubernetes) and SIGINT (Ctrl-C) stop training at the next
step, between two consistent states: the last epoch's checkpoint and metrics are already
written, so the same command resumes to the uninterrupted result. An epoch is the unit of
resume: the steps of the interrupted epoch run again."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytorch_lightning as pl

SIGNALS = (signal.SIGTERM, signal.SIGINT)
_received_outside_training: list[int] = []


def record_signals() -> None:
    """Record SIGTERM/SIGINT in this process instead of raising KeyboardInterrupt wherever
    they land (a fold worker, whose parent decides what the CV does): a training running or
    started afterwards stops at its next step; work after a training ends finishes."""
    for sig in SIGNALS:
        signal.signal(sig, lambda signum, frame: _received_outside_training.append(signum))


class Stopped(BaseException):
    """Raised inside Lightning's loop; Lightning finalizes the loggers and re-raises it."""


class StopOnSignal(pl.Callback):
    """Records SIGTERM/SIGINT while installed; the next chunk or validation batch stops."""

    def __init__(self) -> None:
        self.signum: int | None = None
        if _received_outside_training:  # before the training began
            self.signum = _received_outside_training[0]

    @contextmanager
    def installed(self) -> Iterator[None]:
        """Handle the signals for the block (main thread only: Python's rule), then restore."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        saved = {sig: signal.signal(sig, self._record) for sig in SIGNALS}
        try:
            yield
        finally:
            for sig, handler in saved.items():
                signal.signal(sig, handler)

    def _record(self, signum: int, frame: Any) -> None:
        self.signum = signum

    def _stop_if_signalled(self) -> None:
        if self.signum is not None:
            raise Stopped(signal.Signals(self.signum).name)

    def on_train_batch_end(self, *args: Any, **kwargs: Any) -> None:
        self._stop_if_signalled()

    def on_validation_batch_end(self, *args: Any, **kwargs: Any) -> None:
        self._stop_if_signalled()
