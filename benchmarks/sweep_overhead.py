"""Per-trial overhead of a Hydra sweep against a single run.

    python benchmarks/sweep_overhead.py [--trials 4] [--epochs 10]

Times, as subprocesses from a temp directory (own MLflow store, own Hydra output dirs):
  single   `python -m mlpflow.train seed=1`                 one process, one run
  sweep-1  `python -m mlpflow.train -m seed=1`              the same as a 1-trial multirun
  sweep-N  `python -m mlpflow.train -m seed=1,...,N`        N trials, basic launcher (in-process)
and prints the marginal cost of a trial, (t_N - t_1) / (N - 1), next to the single run's wall
time: trials run in-process by the basic launcher reuse the imports (torch, Lightning, MLflow)
and the prepared-data cache, so a trial costs a fraction of a fresh process.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(args: list[str], workdir: Path) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir / 'mlflow.db'}"
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "mlpflow.train",
            *args,
            "callbacks.progress_bar=null",
            f"hydra.run.dir={workdir}/run",
            f"hydra.sweep.dir={workdir}/sweep-{len(args)}",
        ],
        cwd=REPO,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    epochs = f"trainer.max_epochs={args.epochs}"
    with tempfile.TemporaryDirectory(prefix="mlpflow-sweep-bench-") as tmp:
        workdir = Path(tmp)
        timed([epochs, "seed=1"], workdir)  # warm the store and the prepared-data cache
        single = timed([epochs, "seed=1"], workdir)
        one = timed(["-m", epochs, "seed=1"], workdir)
        seeds = ",".join(str(s) for s in range(1, args.trials + 1))
        many = timed(["-m", epochs, f"seed={seeds}"], workdir)
    per_trial = (many - one) / (args.trials - 1)
    print(f"== sweep overhead: breast_cancer, {args.epochs} epochs a run, basic launcher ==")
    print(f"single run (one process)          {single:6.2f} s")
    print(
        f"1-trial multirun                  {one:6.2f} s  (+{one - single:.2f} s: parent run, "
        "sweep summary)"
    )
    print(f"{args.trials}-trial multirun                  {many:6.2f} s")
    print(
        f"each further trial                {per_trial:6.2f} s  = {per_trial / single:.2f}x a "
        "single run's wall time (imports not paid again)"
    )


if __name__ == "__main__":
    main()
