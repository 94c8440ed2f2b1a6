"""An Optuna sweep over the learning rate: mlpflow's multirun against a hand-written Optuna loop.

    python benchmarks/sweep_overhead.py [--trials 20] [--rounds 3] [--epochs 50] [--threads 1]

Alternating round by round, each run a fresh process with its own SQLite MLflow store and
Optuna storage in a temp dir:
  mlpflow  `python -m mlpflow.train -m hydra/sweeper=mlpflow_optuna
           'optimizer.lr=tag(log, interval(1e-4, 3e-2))' hydra.sweeper.n_trials=N`: the default
           config (breast cancer, 50 epochs, early stopping), TPE seeded 42, MedianPruner, a
           nested MLflow run per trial, the basic launcher (trials in one process)
  script   `sweep_contender.py`: the same search, split, network, optimizer, early stopping and
           pruner, hand-written in one process, a nested MLflow run per trial
Prints, per round and contender: the whole sweep's wall and CPU seconds (the process and its
children); the marginal trial, the mean spacing of the trials' run start times after the first
(`(start_N - start_2) / (N - 2)`: the first trial's one-time costs, lazy imports among them,
excluded); the epochs those trials ran (pruning and early stopping end trials at their own
epoch); then, per figure, each contender's fastest round and `script / mlpflow` (>= 1: mlpflow
as fast).
mlpflow runs from the checkout, so its prepared data lands in `data/cache/` and its checkpoints
in `outputs/`; one warm-up sweep of 2 trials prepares the data before the rounds.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONTENDER = Path(__file__).with_name("sweep_contender.py")
SEARCH = "optimizer.lr=tag(log, interval(1e-4, 3e-2))"


@dataclass
class Sweep:
    wall: float
    cpu: float
    marginal: float  # seconds a trial after the first, start to start
    epochs: float  # mean epochs of those trials


def mlpflow_command(workdir: Path, trials: int, epochs: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mlpflow.train",
        "-m",
        "hydra/sweeper=mlpflow_optuna",
        SEARCH,
        f"hydra.sweeper.n_trials={trials}",
        f"hydra.sweeper.storage=sqlite:///{workdir / 'optuna.db'}",
        f"trainer.max_epochs={epochs}",
        "callbacks.progress_bar=null",
        f"hydra.sweep.dir={workdir / 'sweep'}",
    ]


def script_command(workdir: Path, trials: int, epochs: int) -> list[str]:
    return [
        sys.executable,
        str(CONTENDER),
        f"--store=sqlite:///{workdir / 'mlflow.db'}",
        f"--storage=sqlite:///{workdir / 'optuna.db'}",
        f"--trials={trials}",
        f"--epochs={epochs}",
    ]


def timed(command: list[str], workdir: Path, threads: int) -> tuple[float, float]:
    """Wall and CPU seconds (user + system, children included) of `command`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir / 'mlflow.db'}"
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        command,
        cwd=REPO,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu


def trial_times(store: Path) -> tuple[float, float]:
    """(marginal trial seconds, mean epochs) of the trials after the first, read from the
    nested runs' start times and their val/loss points."""
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{store}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = [
        run
        for run in client.search_runs(experiments, max_results=10000)
        if "mlflow.parentRunId" in run.data.tags
    ]
    runs.sort(key=lambda run: run.info.start_time)
    later = runs[1:-1]  # each of these trials ends where the next one starts
    marginal = (runs[-1].info.start_time - runs[1].info.start_time) / 1000 / len(later)
    epochs = [len(client.get_metric_history(run.info.run_id, "val/loss")) for run in later]
    return marginal, sum(epochs) / len(epochs)


def run_sweep(name: str, trials: int, epochs: int, threads: int) -> Sweep:
    build = mlpflow_command if name == "mlpflow" else script_command
    with tempfile.TemporaryDirectory(prefix=f"mlpflow-sweep-{name}-") as tmp:
        workdir = Path(tmp)
        wall, cpu = timed(build(workdir, trials, epochs), workdir, threads)
        marginal, mean_epochs = trial_times(workdir / "mlflow.db")
    return Sweep(wall, cpu, marginal, mean_epochs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS; 0: unset")
    args = parser.parse_args()
    if args.trials < 3:
        parser.error("--trials must be at least 3 (the marginal trial skips the first)")
    with tempfile.TemporaryDirectory(prefix="mlpflow-sweep-warmup-") as tmp:
        timed(mlpflow_command(Path(tmp), 2, 1), Path(tmp), args.threads)  # prepares the data
    print(
        f"== {args.trials}-trial Optuna lr sweep, breast_cancer, {args.epochs} epochs max, "
        f"OMP_NUM_THREADS={args.threads or 'unset'}, load {os.getloadavg()[0]:.1f} =="
    )
    print(f"{'round':>5} {'contender':>9} {'wall s':>7} {'cpu s':>7} {'trial s':>8} {'epochs':>7}")
    results: dict[str, list[Sweep]] = {"mlpflow": [], "script": []}
    for round_ in range(1, args.rounds + 1):
        for name, done in results.items():
            sweep = run_sweep(name, args.trials, args.epochs, args.threads)
            done.append(sweep)
            print(
                f"{round_:>5} {name:>9} {sweep.wall:7.1f} {sweep.cpu:7.1f} "
                f"{sweep.marginal:8.2f} {sweep.epochs:7.1f}",
                flush=True,
            )
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    for figure in ("wall", "cpu", "marginal"):
        fastest = {name: min(getattr(s, figure) for s in done) for name, done in results.items()}
        mlpflow, script = fastest["mlpflow"], fastest["script"]
        print(
            f"{figure:>8}: fastest mlpflow {mlpflow:.2f} s, script {script:.2f} s, "
            f"script / mlpflow {script / mlpflow:.2f}"
        )


if __name__ == "__main__":
    main()
