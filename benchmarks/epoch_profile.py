"""Where an mlpflow epoch's time goes: its phases, timed by a callback, and the top functions.

    python benchmarks/epoch_profile.py [--n 100000] [--features 32] [--epochs 6] [--top 25]
        [override ...]   # config overrides, e.g. callbacks.progress_bar=null

Trains the numeric synthetic table of train_throughput.py with the default config (MLflow
tracking to a temp SQLite store) for --epochs epochs, twice: once timed, once under cProfile.
The timed run splits each epoch (after the first) into:

  training steps   on_train_epoch_start -> on_validation_start: the chunks' optimizer steps
  validation       on_validation_start -> on_validation_end: the forward pass over the val split,
                   the metrics computed once and handed to the logger
  epoch end        on_validation_end -> the next on_train_epoch_start: best.ckpt, early stopping,
                   the scheduler, the progress bar, and (at most once a second) the held
                   metrics' MLflow write followed by last.ckpt

and prints the median of each, in ms. The profiled run prints the functions with the most
cumulative time per epoch (cProfile slows Python-level code, so read shares, not times).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path
from typing import ClassVar

import pytorch_lightning as pl
from train_throughput import PLAIN_NETWORK, make_cfg, mlpflow_fit

PHASES = ("training steps", "validation", "epoch end")


class PhaseTimer(pl.Callback):
    """Each epoch's phase boundaries, on the wall clock and the main thread's CPU clock
    (`time.thread_time`, which epoch_ab.py reads); added by config."""

    marks: ClassVar[dict[str, list[tuple[str, float]]]] = {"wall": [], "cpu": []}

    def _mark(self, name: str) -> None:
        PhaseTimer.marks["wall"].append((name, time.perf_counter()))
        PhaseTimer.marks["cpu"].append((name, time.thread_time()))

    def on_train_start(self, trainer, pl_module) -> None:
        PhaseTimer.marks = {"wall": [], "cpu": []}

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._mark("epoch")

    def on_validation_start(self, trainer, pl_module) -> None:
        self._mark("validation")

    def on_validation_end(self, trainer, pl_module) -> None:
        self._mark("epoch end")


def phase_times(marks: list[tuple[str, float]]) -> dict[str, list[float]]:
    """Seconds of each phase of each complete epoch but the first."""
    times: dict[str, list[float]] = {phase: [] for phase in PHASES}
    starts = [i for i, (name, _) in enumerate(marks) if name == "epoch"]
    for begin, end in pairwise(starts[1:]):
        stamps = [t for _, t in marks[begin : end + 1]]
        for phase, (a, b) in zip(PHASES, pairwise(stamps), strict=True):
            times[phase].append(b - a)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("overrides", nargs="*", help="config overrides for the run")
    args = parser.parse_args()
    from mlflow import MlflowClient

    from mlpflow.stages import prepare

    data = ["data=synthetic", f"data.n_samples={args.n}", f"data.n_features={args.features}"]
    data += [PLAIN_NETWORK, *args.overrides]
    timer = [*data, f"+callbacks.phases._target_={PhaseTimer.__module__}.PhaseTimer"]
    with tempfile.TemporaryDirectory(prefix="mlpflow-profile-") as tmp:
        root = Path(tmp)
        cfg = make_cfg(root, data, "prepare")
        prepare.run(cfg)
        MlflowClient(cfg.tracking.uri).create_experiment(
            cfg.tracking.experiment, artifact_location=(root / "mlruns").as_uri()
        )
        mlpflow_fit(root, data, 1, "warm-up")
        mlpflow_fit(root, timer, args.epochs, "timed")
        times = phase_times(PhaseTimer.marks["wall"])
        profiler = cProfile.Profile()
        profiler.enable()
        mlpflow_fit(root, data, args.epochs, "profiled")
        profiler.disable()
    total = sum(statistics.median(v) for v in times.values())
    print(f"\n== one epoch, median of {len(times['validation'])} (epochs 2..{args.epochs - 1}) ==")
    for phase, seconds in times.items():
        median = statistics.median(seconds)
        print(f"{phase:<15} {median * 1e3:>7.1f} ms  {median / total:>6.1%}")
    print(f"{'epoch':<15} {total * 1e3:>7.1f} ms")
    print(f"\n== cProfile, top {args.top} by cumulative time over {args.epochs} epochs ==")
    pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative").print_stats(args.top)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    sys.exit(main())
