"""Training throughput: mlpflow against a plain PyTorch loop and scikit-learn, on the same data.

    python benchmarks/train_throughput.py --n 100000 --epochs 5 [--features 32] [--batch 256]

One process, one synthetic data set prepared once by mlpflow's own prepare stage (into a temp
dir); every contender reads the same prepared train/test arrays and trains the same network
(MLP [128, 64] relu -> 1 logit, BCE on the logit, Adam lr 1e-3, minibatch 256, reshuffled every
epoch):

  plain          a hand-written loop over slices of a torch.randperm-shuffled in-memory tensor,
                 torch.optim.Adam with torch's default implementation (the reference)
  plain-fused    the same loop with Adam(fused=True)
  sklearn        MLPClassifier(hidden_layer_sizes=(128, 64), solver adam, batch 256)
  mlpflow        mlpflow.train.run(cfg) as the DVC stage runs it: default callbacks (checkpoint,
                 early stopping with patience > epochs, rich progress bar), MLflow logging to a
                 temp SQLite store
  mlpflow-nosys  the same with tracking.system_metrics=false: what the system-metrics sampler costs

Plain loops and sklearn are timed over their epochs only (no validation pass). mlpflow is timed
twice, with max_epochs=E and max_epochs=1; its throughput is the marginal cost of an epoch,
(E-1) * N_train / (t_E - t_1), so fixed costs (logger and run creation, config logging,
checkpoint upload, ...) cancel out. That marginal epoch still includes what mlpflow does every
epoch and the plain loop does not: the validation pass with its metrics, the checkpoint writes
and the epoch metrics sent to MLflow. The fixed cost is printed separately.

The contenders run in interleaved rounds (--repeats) and each keeps its fastest round. A second
column gives each contender's fastest single epoch (plain: timed per epoch; sklearn: the same
MLPClassifier trained one partial_fit, i.e. one epoch, at a time; mlpflow: an EpochTimer callback
added by config, from one on_train_epoch_start to the next). On a small shared machine a burst
of other work stalls torch's 2 OpenMP threads and can make one epoch 10x slower; the fastest
epoch is the estimate such bursts disturb least.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

SEED = 42


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="rows generated (all splits)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3, help="rounds; the fastest counts")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be >= 2 (mlpflow is timed as E epochs minus 1 epoch)")
    return args


class EpochTimer(pl.Callback):
    """Wall time of every epoch: from one on_train_epoch_start to the next (or on_train_end).

    An interval holds everything Lightning does in an epoch: the training steps, validation,
    checkpoints, the epoch-end hooks and the metrics sent to MLflow. Added to a run's callbacks
    by config (`+callbacks.epoch_timer`), so no source file changes.
    """

    last: ClassVar[list[float]] = []  # the epoch times of the latest fit

    def on_train_start(self, trainer, pl_module) -> None:
        EpochTimer.last = []
        self._start = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._lap()

    def on_train_end(self, trainer, pl_module) -> None:
        self._lap()

    def _lap(self) -> None:
        now = time.perf_counter()
        if self._start is not None:
            EpochTimer.last.append(now - self._start)
        self._start = now


def keep(best: dict[str, float], name: str, seconds: float) -> None:
    best[name] = min(seconds, best.get(name, float("inf")))


def make_cfg(root: Path, overrides: list[str], name: str):
    """conf/ composed with overrides; outputs under root/name, tracking in root/mlflow.db."""
    from mlpflow.config.compose import compose

    cfg = compose(overrides)
    cfg.paths.prepared = str(root / "prepared")
    cfg.paths.models = str(root / name / "models")
    cfg.paths.reports = str(root / name / "reports")
    cfg.tracking.enabled = True
    cfg.tracking.uri = f"sqlite:///{root / 'mlflow.db'}"
    return cfg


def mlp(n_features: int) -> nn.Module:
    return nn.Sequential(
        nn.Linear(n_features, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 1)
    )


def plain_loop(
    x, y, x_test, epochs: int, batch: int, fused: bool
) -> tuple[list[float], np.ndarray]:
    """Seconds of each of `epochs` epochs of minibatch Adam, and the test scores."""
    torch.manual_seed(SEED)
    model = mlp(x.shape[1])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True if fused else None)
    loss_fn = nn.BCEWithLogitsLoss()
    y = y.to(torch.float32)
    n = len(y)
    laps = [time.perf_counter()]
    for _ in range(epochs):
        order = torch.randperm(n)
        xs, ys = x[order], y[order]
        for i in range(0, n, batch):
            loss = loss_fn(model(xs[i : i + batch]).squeeze(-1), ys[i : i + batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        laps.append(time.perf_counter())
    with torch.no_grad():
        scores = torch.sigmoid(model(x_test).squeeze(-1)).numpy()
    return list(np.diff(laps)), scores


def sklearn_mlp(x, y, x_test, epochs: int, batch: int) -> tuple[float, np.ndarray, str]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(
        hidden_layer_sizes=(128, 64),
        activation="relu",
        solver="adam",
        learning_rate_init=1e-3,
        alpha=0.0,  # no L2 penalty, like the others (sklearn's default is 1e-4)
        batch_size=batch,
        max_iter=epochs,
        shuffle=True,
        early_stopping=False,
        tol=0.0,
        n_iter_no_change=10**9,
        random_state=SEED,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        clf.fit(x, y)
        seconds = time.perf_counter() - start
    return seconds, clf.predict_proba(x_test)[:, 1], str(clf.coefs_[0].dtype)


def sklearn_epochs(x, y, epochs: int, batch: int) -> list[float]:
    """Seconds of each epoch of the same MLPClassifier, one `partial_fit` (= one epoch) each."""
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(
        hidden_layer_sizes=(128, 64),
        solver="adam",
        learning_rate_init=1e-3,
        alpha=0.0,
        batch_size=batch,
        shuffle=True,
        random_state=SEED,
    )
    classes = np.unique(y)
    laps = []
    for _ in range(epochs):
        start = time.perf_counter()
        clf.partial_fit(x, y, classes=classes)
        laps.append(time.perf_counter() - start)
    return laps


def mlpflow_fit(root: Path, overrides: list[str], epochs: int, name: str) -> tuple[float, dict]:
    """Wall time of mlpflow.train.run with max_epochs=epochs, and its report."""
    from mlpflow.stages import train

    cfg = make_cfg(
        root,
        [
            *overrides,
            f"+callbacks.epoch_timer._target_={EpochTimer.__module__}.EpochTimer",
            f"trainer.max_epochs={epochs}",
            f"callbacks.early_stopping.patience={epochs + 10}",
        ],
        name,
    )
    deterministic = torch.are_deterministic_algorithms_enabled()
    start = time.perf_counter()
    report = train.run(cfg)
    seconds = time.perf_counter() - start
    # Trainer(deterministic=True) switches torch to deterministic algorithms for good: switch
    # back so that the next round's plain loops run as they did in the first.
    torch.use_deterministic_algorithms(deterministic)
    report["models"] = cfg.paths.models
    report["epoch_seconds"] = list(EpochTimer.last)
    return seconds, report


def mlpflow_scores(models_dir: str, x_test: torch.Tensor) -> np.ndarray:
    from mlpflow.evaluation.scoring import network_outputs, network_scores
    from mlpflow.model.checkpoint import load_weights

    weights = load_weights(Path(models_dir) / "best.ckpt")
    codes = torch.zeros((len(x_test), 0), dtype=torch.int64)  # a numeric table: no categories
    outputs = network_outputs(weights.network(), x_test, codes)
    return network_scores(outputs, weights.spec).numpy()


def main() -> int:
    args = parse_args()
    t_process = time.perf_counter()
    from sklearn.metrics import roc_auc_score

    from mlpflow.data.prepared import load_meta, load_split
    from mlpflow.stages import prepare
    from mlpflow.tracking.store import ensure_store

    data = [
        "data=synthetic",
        f"data.n_samples={args.n}",
        f"data.n_features={args.features}",
        f"loader.batch_size={args.batch}",
    ]
    # name, samples/s (whole run), samples/s (fastest epoch), test AUC, note
    results: list[tuple[str, float, float, float, str]] = []
    load_before = os.getloadavg()

    with tempfile.TemporaryDirectory(prefix="mlpflow-bench-") as tmp:
        root = Path(tmp)
        cfg = make_cfg(root, data, "prepare")
        start = time.perf_counter()
        prepare.run(cfg)
        print(
            f"prepare ({args.n} rows, {args.features} features): "
            f"{time.perf_counter() - start:.2f} s"
        )
        meta = load_meta(cfg.paths.prepared)
        x_np, y_np = load_split(cfg.paths.prepared, "train")
        xt_np, yt_np = load_split(cfg.paths.prepared, "test")
        x, y = torch.from_numpy(x_np), torch.from_numpy(y_np)
        x_test = torch.from_numpy(xt_np)
        n_train = len(y_np)
        samples = args.epochs * n_train
        print(
            f"rows: {meta.rows}; torch threads: {torch.get_num_threads()}; "
            f"batch {args.batch}; epochs {args.epochs}"
        )

        # Out of the timings: the imports train.run pays once per process and the store's
        # creation (once per project); every timed run then opens an existing store.
        # The experiment keeps its artifacts in the temp dir too (MLflow's default for a SQLite
        # store is ./mlruns of the working directory).
        from mlflow import MlflowClient

        import mlpflow.data.datamodule
        import mlpflow.model.module
        import mlpflow.train  # noqa: F401

        MlflowClient(cfg.tracking.uri).create_experiment(
            cfg.tracking.experiment, artifact_location=(root / "mlruns").as_uri()
        )
        ensure_store(cfg.tracking.uri, cfg.tracking.experiment)

        # Rounds interleave the contenders; each keeps its fastest round and its fastest epoch
        # (the machine is shared: the minimum is the least disturbed estimate).
        best: dict[str, float] = {}
        scores: dict[str, np.ndarray] = {}
        notes: dict[str, str] = {}
        mlpflow_variants = (("mlpflow", []), ("mlpflow-nosys", ["tracking.system_metrics=false"]))
        for round_ in range(args.repeats):
            for name, fused in (("plain", False), ("plain-fused", True)):
                laps, scores[name] = plain_loop(x, y, x_test, args.epochs, args.batch, fused)
                keep(best, name, sum(laps))
                keep(best, f"{name}@epoch", min(laps))
            seconds, scores["sklearn"], dtype = sklearn_mlp(
                x_np, y_np, xt_np, args.epochs, args.batch
            )
            keep(best, "sklearn", seconds)
            keep(best, "sklearn@epoch", min(sklearn_epochs(x_np, y_np, args.epochs, args.batch)))
            notes["sklearn"] = f"weights {dtype}"
            for name, extra in mlpflow_variants:
                tag = f"{name}-r{round_}"
                t_one, _ = mlpflow_fit(root, [*data, *extra], 1, f"{tag}-1")
                t_all, report = mlpflow_fit(root, [*data, *extra], args.epochs, f"{tag}-E")
                keep(best, f"{name}@1", t_one)
                keep(best, f"{name}@E", t_all)
                keep(best, f"{name}@epoch", min(report["epoch_seconds"]))
                scores[name] = mlpflow_scores(report["models"], x_test)
                notes[name] = f"best epoch {report['best_epoch']} of {report['epochs_run']}"
            print(
                f"round {round_ + 1}/{args.repeats} (best so far): "
                + ", ".join(f"{k} {v:.2f} s" for k, v in best.items()),
                file=sys.stderr,
            )

        for name in ("plain", "plain-fused", "sklearn"):
            results.append(
                (
                    name,
                    samples / best[name],
                    n_train / best[f"{name}@epoch"],
                    roc_auc_score(yt_np, scores[name]),
                    f"{best[name]:.2f} s / {args.epochs} epochs {notes.get(name, '')}",
                )
            )
        fixed: dict[str, float] = {}
        for name, _ in mlpflow_variants:
            t_one, t_all = best[f"{name}@1"], best[f"{name}@E"]
            epoch = (t_all - t_one) / (args.epochs - 1)
            fixed[name] = t_one - epoch
            results.append(
                (
                    name,
                    n_train / epoch,
                    n_train / best[f"{name}@epoch"],
                    roc_auc_score(yt_np, scores[name]),
                    f"t_{args.epochs}={t_all:.2f} s, t_1={t_one:.2f} s, {notes[name]}",
                )
            )

    load_after = os.getloadavg()
    print()
    print(
        f"== training throughput: {n_train} train rows x {args.epochs} epochs, "
        f"{args.features} features, MLP [128, 64], batch {args.batch}, "
        f"best of {args.repeats} rounds =="
    )
    print("samples/s: whole run (plain, sklearn: all epochs; mlpflow: (E-1)*N/(t_E - t_1))")
    print("           and fastest single epoch (mlpflow: one epoch as Lightning runs it)")
    print(f"{'contender':<14} {'samples/s':>10} {'fastest ep':>11} {'test AUC':>9}  note")
    for name, run_rate, epoch_rate, auc, note in results:
        print(f"{name:<14} {run_rate:>10,.0f} {epoch_rate:>11,.0f} {auc:>9.4f}  {note}")
    print()
    for name, t in fixed.items():
        print(f"{name} fixed cost per train.run (t_1 minus one marginal epoch): {t:.2f} s")
    print()
    rate = {name: (r, e) for name, r, e, _, _ in results}
    print("ratios of samples/s (1 = parity, > 1 = mlpflow faster)")
    print(f"  {'':<26} {'whole run':>10} {'fastest ep':>11}")
    for ours in ("mlpflow", "mlpflow-nosys"):
        for ref in ("plain", "plain-fused", "sklearn"):
            label = f"{ours}/{ref}"
            print(
                f"  {label:<26} {rate[ours][0] / rate[ref][0]:>10.2f} "
                f"{rate[ours][1] / rate[ref][1]:>11.2f}"
            )
    disturbed = [n for n, (r, e) in rate.items() if r < 0.75 * e or r > 1.25 * e]
    if disturbed:
        print(
            f"  ! whole run and fastest epoch disagree by > 25% for {', '.join(disturbed)}: "
            "other work took the cores; the fastest-epoch column is the one to trust"
        )
    print(
        f"\nload average before / after: {load_before[0]:.2f} / {load_after[0]:.2f} "
        f"on {os.cpu_count()} CPUs (above ~0.5 something else competed for the cores)"
    )
    print(f"total wall time: {time.perf_counter() - t_process:.1f} s")
    return 0


if __name__ == "__main__":
    # Lightning and MLflow chatter goes to stderr; the table goes to stdout.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
