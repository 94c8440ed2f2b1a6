"""What 5-fold cross-validation costs against a single run, end to end.

    python benchmarks/cv_cost.py [--table mixed_binary] [--rows 5000] [--rounds 2]
        [--tracking none,sqlite] [--folds 5]

One of quality.py's generated tables (mixed_tables.py), written to CSV once, trained by
`python -m mlpflow.train data=csv data.path=... data.target=...` with cv=none and with `cv=kfold
cv.folds=K`, each run a fresh process in its own temp project (an empty dvc.yaml: no prepared
data is reused), alternating single and CV round by round; with `tracking=none`, and with the
default tracking to a new SQLite store per run (MLFLOW_TRACKING_URI=sqlite:///...). Prints every
wall time, the CV / single ratio of the fastest and of the median runs, and where the epochs
went: the single run's epochs (reports/train.json) against the folds' (models/folds/*/train.json),
since early stopping ends each network at its own epoch and the epochs, not the K, set the cost.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mixed_tables import KINDS, make_table

BIN = Path(sys.executable).parent
TRACKING = ("none", "sqlite")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", default="mixed_binary", choices=KINDS)
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated table")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--tracking", default=",".join(TRACKING), help="none, sqlite or both")
    args = parser.parse_args()
    args.tracking = [t.strip() for t in args.tracking.split(",") if t.strip()]
    if not args.tracking or any(t not in TRACKING for t in args.tracking):
        parser.error(f"--tracking: choose from {', '.join(TRACKING)}")
    return args


def run(root: Path, csv: Path, target: str, tracking: str, cv: list[str], name: str) -> dict:
    """One `python -m mlpflow.train` in a fresh project: its wall time and epochs."""
    project = root / name
    project.mkdir()
    (project / "dvc.yaml").write_text("stages: {}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    overrides = ["tracking=none"] if tracking == "none" else []
    if tracking == "sqlite":
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{project / 'mlflow.db'}"
    run_dir = project / "run"
    command = [
        sys.executable, "-m", "mlpflow.train", "data=csv", f"data.path={csv}",
        f"data.target={target}", f"hydra.run.dir={run_dir}", "callbacks.progress_bar=null",
        *overrides, *cv,
    ]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        (root / f"{name}.log").write_text(done.stdout + done.stderr)
        raise SystemExit(f"{name} failed (exit {done.returncode}); log: {root / name}.log")
    folds = sorted((run_dir / "models" / "folds").glob("*/train.json"))
    reports = folds or [run_dir / "reports" / "train.json"]
    epochs = [json.loads(path.read_text())["epochs_run"] for path in reports]
    return {"seconds": seconds, "epochs": epochs}


def report(tracking: str, single: list[dict], cv: list[dict], folds: int) -> None:
    t_single, t_cv = ([r["seconds"] for r in runs] for runs in (single, cv))
    print(f"\ntracking={tracking}: wall seconds per round (single, cv.folds={folds})")
    for i, (a, b) in enumerate(zip(t_single, t_cv, strict=True)):
        print(
            f"  round {i + 1}: {a:7.1f} {b:7.1f}   epochs {single[i]['epochs']} {cv[i]['epochs']}"
        )
    fastest = min(t_cv) / min(t_single)
    median = statistics.median(t_cv) / statistics.median(t_single)
    print(f"  cv / single: fastest {fastest:.2f}x, median {median:.2f}x")
    e_single = statistics.mean(sum(r["epochs"]) for r in single)
    e_cv = statistics.mean(sum(r["epochs"]) for r in cv)
    print(f"  epochs, mean over rounds: single {e_single:.1f}, folds together {e_cv:.1f} "
          f"({e_cv / e_single:.2f}x)")  # fmt: skip


def main() -> int:
    args = parse_args()
    frame, target, task = make_table(args.table, args.rows, args.seed)
    cv = ["cv=kfold", f"cv.folds={args.folds}"]
    print(f"{args.table}: {len(frame)} rows, {task}; load average {os.getloadavg()[0]:.2f}")
    results: dict[str, dict[str, list[dict]]] = {t: {"single": [], "cv": []} for t in args.tracking}
    with tempfile.TemporaryDirectory(prefix="mlpflow-cv-cost-") as tmp:
        root = Path(tmp)
        csv = root / f"{args.table}.csv"
        frame.to_csv(csv, index=False)
        for i in range(args.rounds):
            for tracking in args.tracking:
                for kind, extra in (("single", []), ("cv", cv))[:: 1 if i % 2 == 0 else -1]:
                    result = run(root, csv, target, tracking, extra, f"{tracking}-{kind}-{i}")
                    results[tracking][kind].append(result)
                    print(f"  {tracking} {kind} round {i + 1}: {result['seconds']:.1f} s",
                          file=sys.stderr)  # fmt: skip
    for tracking, runs in results.items():
        report(tracking, runs["single"], runs["cv"], args.folds)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    sys.exit(main())
