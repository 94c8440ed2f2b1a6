"""User-facing errors: each carries one line saying what is wrong and how to fix it."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager


class MlpflowError(Exception):
    """Base of every error the user can fix; printed as one line, never as a traceback."""


class ConfigError(MlpflowError):
    """A config value or combination is invalid."""


class DataError(MlpflowError):
    """The input data cannot be used as configured."""


class TrackingError(MlpflowError):
    """The MLflow tracking store cannot be reached or used."""


class RunInterrupted(MlpflowError):
    """SIGTERM or SIGINT stopped training; the run can be resumed. Exits 128 + the signal
    number (143, 130), as a shell reports a process that signal ended."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


class ModelError(MlpflowError):
    """A model, run or checkpoint reference cannot be found, resolved or safely loaded."""


def first_line(error: BaseException, default: str | None = None) -> str:
    """The first line of an error's message (library messages run to many lines); `default`,
    or the error's type name, when it has none."""
    text = str(error).strip()
    if text:
        return text.splitlines()[0]
    return type(error).__name__ if default is None else default


@contextmanager
def friendly_errors() -> Iterator[None]:
    """Turn an MlpflowError into one line on stderr and exit code 2 (an interruption's own).

    `HYDRA_FULL_ERROR=1` (Hydra's own switch) or `MLPFLOW_FULL_ERROR=1` re-raises instead.
    """
    try:
        yield
    except MlpflowError as error:
        if os.environ.get("HYDRA_FULL_ERROR") == "1" or os.environ.get("MLPFLOW_FULL_ERROR") == "1":
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(getattr(error, "exit_code", 2))


class TrainingDiverged(MlpflowError):
    """The training loss became NaN or infinite."""
