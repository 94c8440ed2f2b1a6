"""Whole process: `python -m mlpflow.train` on a user's table against the script a data
scientist would write instead, hand-written fused-Adam loop + MLflow, both end to end.

    python benchmarks/whole_process.py [--n 1000000] [--features 32] [--epochs 3] [--repeats 2]

A Parquet table (benchmarks/scale_tables.py, numeric) is trained both ways, each from a fresh
process, a fresh SQLite store and no cached data, in alternating rounds (the fastest counts):

  mlpflow  `python -m mlpflow.train data=csv data.path=<table> data.target=y
           trainer.max_epochs=E` in a fresh copy of the project: prepare (scan, split,
           standardize), train (validation every epoch, checkpoints, MLflow metrics, system
           metrics, the logged model), evaluate (test metrics, plots, permutation importance)
  script   one Python file (SCRIPT below): pyarrow read, scikit-learn's stratified 70/15/15
           split and StandardScaler, MLP [128, 64] with Adam(fused=True), minibatch 256,
           validation loss and ROC AUC every epoch, MLflow params/metrics per epoch, a state
           dict saved per epoch, test ROC AUC, `mlflow.pytorch.log_model` with an input example

Prints both wall times, their ratio (script / mlpflow: >= 1 means mlpflow is as fast) and each
one's test ROC AUC.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from pipeline_overhead import copy_project, env

SCRIPT = textwrap.dedent(
    """
    import sys, time
    import mlflow, numpy as np, pyarrow.parquet as pq, torch
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler
    from torch import nn

    path, epochs, uri = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    torch.manual_seed(42)
    table = pq.read_table(path).to_pandas()
    y = table.pop("y").to_numpy()
    x = table.to_numpy(np.float32)
    x_train, x_rest, y_train, y_rest = train_test_split(
        x, y, test_size=0.3, stratify=y, random_state=42)
    x_val, x_test, y_val, y_test = train_test_split(
        x_rest, y_rest, test_size=0.5, stratify=y_rest, random_state=42)
    scaler = StandardScaler().fit(x_train)
    def tensor(a):
        return torch.from_numpy(scaler.transform(a).astype(np.float32))
    x_train, x_val, x_test = tensor(x_train), tensor(x_val), tensor(x_test)
    y_train, y_val_t = torch.from_numpy(y_train).float(), torch.from_numpy(y_val).float()
    model = nn.Sequential(nn.Linear(x.shape[1], 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
                          nn.Linear(64, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    loss_fn = nn.BCEWithLogitsLoss()
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("script")
    started = time.perf_counter()
    with mlflow.start_run():
        mlflow.log_params({"hidden": "128,64", "lr": 1e-3, "batch": 256, "epochs": epochs})
        for epoch in range(epochs):
            model.train()
            order = torch.randperm(len(y_train))
            xs, ys = x_train[order], y_train[order]
            total = 0.0
            for i in range(0, len(ys), 256):
                loss = loss_fn(model(xs[i:i + 256]).squeeze(-1), ys[i:i + 256])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.item() * len(ys[i:i + 256])
            model.eval()
            with torch.no_grad():
                logits = model(x_val).squeeze(-1)
            mlflow.log_metrics({
                "train/loss": total / len(ys),
                "val/loss": loss_fn(logits, y_val_t).item(),
                "val/roc_auc": roc_auc_score(y_val, torch.sigmoid(logits).numpy()),
            }, step=epoch)
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()},
                       "last.pt")
        with torch.no_grad():
            scores = torch.sigmoid(model(x_test).squeeze(-1)).numpy()
        auc = roc_auc_score(y_test, scores)
        mlflow.log_metric("test/roc_auc", auc)
        trained = time.perf_counter()
        mlflow.pytorch.log_model(model, name="model", input_example=x_test[:5].numpy())
    logged = time.perf_counter() - trained
    print(f"PHASES training {trained - started:.1f} s, log_model {logged:.1f} s")
    print("TEST_AUC", auc)
    """
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="rows of the table")
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2, help="rounds; the fastest counts")
    return parser.parse_args()


def run_mlpflow(project: Path, table: Path, epochs: int) -> tuple[float, float]:
    """Wall time of the Hydra entry from a clean slate, and the test ROC AUC it reported."""
    for leftover in ("data/cache", "outputs", "mlruns", "mlflow.db"):
        path = project / leftover
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    command = [
        sys.executable, "-m", "mlpflow.train", "data=csv", f"data.path={table}",
        "data.target=y", f"trainer.max_epochs={epochs}",
        "model.numeric_embedding.kind=none",  # the script's network: columns not embedded
    ]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(command, cwd=project, env=env(), check=True, capture_output=True)
    seconds = time.perf_counter() - start
    metrics = json.loads(next(project.glob("outputs/*/*/reports/metrics.json")).read_text())
    return seconds, metrics["test"]["roc_auc"]


def run_script(work: Path, table: Path, epochs: int) -> tuple[float, float]:
    """Wall time of the hand-written script from a clean slate, and its test ROC AUC."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    (work / "train.py").write_text(SCRIPT)
    uri = f"sqlite:///{work / 'mlflow.db'}"
    command = [sys.executable, "train.py", str(table), str(epochs), uri]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=work, env=env(), check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    print(done.stdout.split("PHASES")[-1].split("\n")[0].strip(), file=sys.stderr)
    return seconds, float(done.stdout.split("TEST_AUC")[-1])


def main() -> int:
    args = parse_args()
    from scale_tables import generate

    with tempfile.TemporaryDirectory(prefix="mlpflow-whole-") as tmp:
        root = Path(tmp)
        table = root / "table.parquet"
        generate(table, args.n, args.features, 262_144)
        project = copy_project(root / "project")
        best = {"mlpflow": float("inf"), "script": float("inf")}
        auc = {}
        for round_ in range(args.repeats):
            for name, run in (("mlpflow", run_mlpflow), ("script", run_script)):
                where = project if name == "mlpflow" else root / "script"
                seconds, auc[name] = run(where, table, args.epochs)
                best[name] = min(best[name], seconds)
                print(f"round {round_ + 1}: {name} {seconds:.1f} s", file=sys.stderr)
    print(
        f"== whole process: {args.n:,} rows x {args.features} features, {args.epochs} epochs, "
        f"best of {args.repeats} =="
    )
    for name, seconds in best.items():
        print(f"{name:<8} {seconds:>7.1f} s   test ROC AUC {auc[name]:.4f}")
    print(f"script / mlpflow: {best['script'] / best['mlpflow']:.2f} (>= 1: mlpflow as fast)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
