"""Training throughput: mlpflow against a plain PyTorch loop and scikit-learn, on the same data.

    python benchmarks/train_throughput.py --n 100000 --epochs 5 [--features 32] [--batch 256]
    python benchmarks/train_throughput.py --n 100000 --epochs 5 --features 24 --categorical 8
    python benchmarks/train_throughput.py ... --clock cpu   # one thread each, CPU seconds

One process, one data set prepared once by mlpflow's own prepare stage (into a temp dir):
`data=synthetic` for a numeric table, or with --categorical K a Parquet table of F numeric and K
text columns with signal (benchmarks/scale_tables.py; levels 10, 40, 160, 640, then --levels).
Every contender reads the same prepared train/test arrays (features and level codes) and trains
the same network (benchmarks/throughput_contenders.py):

  plain          a hand-written loop over slices of a torch.randperm-shuffled in-memory tensor,
                 torch.optim.Adam with torch's default implementation (the reference)
  plain-fused    the same loop with Adam(fused=True): the bar mlpflow (fused by default) meets
  plain-fused-val  the same loop ending every epoch as mlpflow's does: the val split scored
                 without autograd, its loss and mlpflow's six torchmetrics computed
  sklearn        MLPClassifier(hidden_layer_sizes=(128, 64), solver adam, batch 256); numeric
                 tables only
  mlpflow        mlpflow.stages.train.run(cfg) as the DVC stage runs it: default callbacks
                 (checkpoint, early stopping with patience > epochs, rich progress bar), MLflow
                 logging to a temp SQLite store, system metrics
  mlpflow-nosys  the same with tracking.system_metrics=false: what the system-metrics sampler costs

Plain loops (but plain-fused-val) and sklearn are timed over their epochs only (no validation
pass). mlpflow is timed
twice, with max_epochs=E and max_epochs=1; its throughput is the marginal cost of an epoch,
(E-1) * N_train / (t_E - t_1), so fixed costs (logger and run creation, config logging,
checkpoint upload, ...) cancel out. That marginal epoch still includes what mlpflow does every
epoch and the plain loop does not: the validation pass with its metrics, best.ckpt when it
improves, and once a second the epoch metrics sent to MLflow with last.ckpt. The fixed cost is
printed separately.

The contenders run in interleaved rounds (--repeats) and each keeps its fastest round. A second
column gives each contender's fastest single epoch (plain: timed per epoch; sklearn: the same
MLPClassifier trained one partial_fit, i.e. one epoch, at a time; mlpflow: an EpochTimer callback
added by config, from one on_train_epoch_start to the next). On a small shared machine a burst
of other work stalls torch's 2 OpenMP threads and can make one epoch 10x slower; the fastest
epoch is the estimate such bursts disturb least. With --clock cpu every contender runs on one
thread and is timed in process CPU seconds (benchmarks/clock.py): on a VM whose neighbours take
the cores, the only clock steady enough to resolve a 10% difference.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import clock
import numpy as np
import pytorch_lightning as pl
import torch
from throughput_contenders import plain_loop, sklearn_epochs, sklearn_mlp

PLAIN_VARIANTS = (  # (name, fused Adam, validates every epoch)
    ("plain", False, False),
    ("plain-fused", True, False),
    ("plain-fused-val", True, True),
)
REFERENCES = (*(name for name, _, _ in PLAIN_VARIANTS), "sklearn")
MLPFLOW_VARIANTS = (("mlpflow", []), ("mlpflow-nosys", ["tracking.system_metrics=false"]))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="rows generated (all splits)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--features", type=int, default=32, help="numeric columns")
    parser.add_argument("--categorical", type=int, default=0, help="text categorical columns")
    parser.add_argument("--levels", type=int, default=1000, help="most levels of a categorical")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3, help="rounds; the fastest counts")
    parser.add_argument(
        "--clock", choices=("wall", "cpu"), default="wall",
        help="cpu: one thread each, timed in process CPU seconds (benchmarks/clock.py)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be >= 2 (mlpflow is timed as E epochs minus 1 epoch)")
    return args


class EpochTimer(pl.Callback):
    """Time of every epoch (`clock.now`): one on_train_epoch_start to the next (or on_train_end).

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
        now = clock.now()
        if self._start is not None:
            EpochTimer.last.append(now - self._start)
        self._start = now


def keep(best: dict[str, float], name: str, seconds: float) -> None:
    best[name] = min(seconds, best.get(name, float("inf")))


# The contenders' network: continuous columns as they are, not embedded (mlp's default embeds
# them from 500 train rows).
PLAIN_NETWORK = "model.numeric_embedding.kind=none"


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


def mlpflow_fit(root: Path, overrides: list[str], epochs: int, name: str) -> tuple[float, dict]:
    """Time (`clock.now`) of mlpflow.stages.train.run with max_epochs=epochs, and its report."""
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
    start = clock.now()
    report = train.run(cfg)
    seconds = clock.now() - start
    # Trainer(deterministic=True) switches torch to deterministic algorithms for good: switch
    # back so that the next round's plain loops run as they did in the first.
    torch.use_deterministic_algorithms(deterministic)
    report["models"] = cfg.paths.models
    report["epoch_seconds"] = list(EpochTimer.last)
    return seconds, report


@dataclass
class Prepared:
    """The prepared splits every contender trains and scores on."""

    overrides: list[str]  # the data config mlpflow trains with
    train: tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # features, level codes, target
    test: tuple[torch.Tensor, torch.Tensor, np.ndarray]
    val: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    cardinalities: list[int]


def prepare_data(args: argparse.Namespace, root: Path) -> Prepared:
    """The table, prepared once by mlpflow's prepare stage; its train and test splits."""
    from mlpflow.data.prepared import load_codes, load_meta, load_split
    from mlpflow.stages import prepare

    overrides = [
        "data=synthetic",
        f"data.n_samples={args.n}",
        f"data.n_features={args.features}",
    ]
    if args.categorical:
        from scale_tables import generate

        table = root / "table.parquet"
        generate(table, args.n, args.features, 262_144, args.categorical, args.levels)
        overrides = ["data=csv", f"data.path={table}", "data.target=y"]
    overrides.append(f"loader.batch_size={args.batch}")
    overrides.append(PLAIN_NETWORK)
    cfg = make_cfg(root, overrides, "prepare")
    start = time.perf_counter()
    prepare.run(cfg)
    print(f"prepare: {time.perf_counter() - start:.2f} s")
    meta = load_meta(cfg.paths.prepared)

    def split(name: str) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        x, y = load_split(cfg.paths.prepared, name)
        return torch.from_numpy(x), torch.from_numpy(load_codes(cfg.paths.prepared, name)), y

    x, codes, y = split("train")
    x_val, c_val, y_val = split("val")
    return Prepared(
        overrides, (x, codes, torch.from_numpy(y)), split("test"),
        (x_val, c_val, torch.from_numpy(y_val)), list(meta.categorical.cardinalities),
    )  # fmt: skip


def mlpflow_scores(models_dir: str, x_test: torch.Tensor, codes: torch.Tensor) -> np.ndarray:
    from mlpflow.model.checkpoint import best_checkpoint, load_weights
    from mlpflow.model.outputs import network_outputs, network_scores

    weights = load_weights(best_checkpoint(models_dir))
    outputs = network_outputs(weights.network(), x_test, codes)
    return network_scores(outputs, weights.spec).numpy()


def open_store(root: Path, data: Prepared) -> None:
    """The store and experiment, created before any timing (once per project): every timed run
    then opens an existing store. Artifacts go to the temp dir (MLflow's default for a SQLite
    store is ./mlruns of the working directory). Then one untimed 1-epoch run: what the first
    train.run of a process pays once (lazy imports, first calls) is not in round 1's times."""
    from mlflow import MlflowClient

    import mlpflow.data.datamodule
    import mlpflow.model.module
    import mlpflow.stages.train  # noqa: F401  (imports train.run pays once per process)
    from mlpflow.tracking.store import ensure_store

    cfg = make_cfg(root, [], "store")
    MlflowClient(cfg.tracking.uri).create_experiment(
        cfg.tracking.experiment, artifact_location=(root / "mlruns").as_uri()
    )
    ensure_store(cfg.tracking.uri, cfg.tracking.experiment)
    mlpflow_fit(root, data.overrides, 1, "warm-up")


def run_rounds(args: argparse.Namespace, root: Path, data: Prepared) -> tuple[dict, dict, dict]:
    """Rounds interleave the contenders; each keeps its fastest round and its fastest epoch
    (the machine is shared: the minimum is the least disturbed estimate)."""
    best: dict[str, float] = {}
    scores: dict[str, np.ndarray] = {}
    notes: dict[str, str] = {}
    (x, codes, y), (x_test, c_test, _) = data.train, data.test
    for round_ in range(args.repeats):
        for name, fused, val in PLAIN_VARIANTS:
            laps, scores[name] = plain_loop(
                x, codes, y, (x_test, c_test), args.epochs, args.batch, fused, data.cardinalities,
                data.val if val else None,
            )  # fmt: skip
            keep(best, name, sum(laps))
            keep(best, f"{name}@epoch", min(laps))
        if not data.cardinalities:
            seconds, scores["sklearn"], dtype = sklearn_mlp(
                x.numpy(), y.numpy(), x_test.numpy(), args.epochs, args.batch
            )
            keep(best, "sklearn", seconds)
            epochs = sklearn_epochs(x.numpy(), y.numpy(), args.epochs, args.batch)
            keep(best, "sklearn@epoch", min(epochs))
            notes["sklearn"] = f"weights {dtype}"
        for name, extra in MLPFLOW_VARIANTS:
            tag = f"{name}-r{round_}"
            t_one, _ = mlpflow_fit(root, [*data.overrides, *extra], 1, f"{tag}-1")
            t_all, report = mlpflow_fit(root, [*data.overrides, *extra], args.epochs, f"{tag}-E")
            keep(best, f"{name}@1", t_one)
            keep(best, f"{name}@E", t_all)
            keep(best, f"{name}@epoch", min(report["epoch_seconds"]))
            scores[name] = mlpflow_scores(report["models"], x_test, c_test)
            notes[name] = f"best epoch {report['best_epoch']} of {report['epochs_run']}"
        print(
            f"round {round_ + 1}/{args.repeats} (best so far): "
            + ", ".join(f"{k} {v:.2f} s" for k, v in best.items()),
            file=sys.stderr,
        )
    return best, scores, notes


def results_table(args, data: Prepared, best: dict, scores: dict, notes: dict) -> list[tuple]:
    """(name, samples/s whole run, samples/s fastest epoch, test AUC, note) per contender."""
    from sklearn.metrics import roc_auc_score

    n_train, y_test = len(data.train[2]), data.test[2]
    rows = []
    for name in REFERENCES:
        if name in best:
            rows.append((
                name, args.epochs * n_train / best[name], n_train / best[f"{name}@epoch"],
                roc_auc_score(y_test, scores[name]),
                f"{best[name]:.2f} s / {args.epochs} epochs {notes.get(name, '')}",
            ))  # fmt: skip
    for name, _ in MLPFLOW_VARIANTS:
        t_one, t_all = best[f"{name}@1"], best[f"{name}@E"]
        epoch = (t_all - t_one) / (args.epochs - 1)
        rows.append((
            name, n_train / epoch, n_train / best[f"{name}@epoch"],
            roc_auc_score(y_test, scores[name]),
            f"t_{args.epochs}={t_all:.2f} s, t_1={t_one:.2f} s, fixed {t_one - epoch:.2f} s, "
            f"{notes[name]}",
        ))  # fmt: skip
    return rows


def print_report(args: argparse.Namespace, data: Prepared, rows: list[tuple]) -> None:
    table = f"{args.features} numeric"
    if data.cardinalities:
        table += f" + {args.categorical} categorical (levels {data.cardinalities})"
    print(
        f"\n== training throughput: {len(data.train[2])} train rows x {args.epochs} epochs, "
        f"{table}, MLP [128, 64], batch {args.batch}, best of {args.repeats} rounds, "
        f"torch threads {torch.get_num_threads()}, {clock.name} clock =="
    )
    print("samples/s: whole run (plain, sklearn: all epochs; mlpflow: (E-1)*N/(t_E - t_1))")
    print("           and fastest single epoch (mlpflow: one epoch as Lightning runs it)")
    print(f"{'contender':<16} {'samples/s':>10} {'fastest ep':>11} {'test AUC':>9}  note")
    for name, run_rate, epoch_rate, auc, note in rows:
        print(f"{name:<16} {run_rate:>10,.0f} {epoch_rate:>11,.0f} {auc:>9.4f}  {note}")
    rate = {name: (r, e) for name, r, e, _, _ in rows}
    print("\nratios of samples/s (1 = parity, > 1 = mlpflow faster)")
    print(f"  {'':<30} {'whole run':>10} {'fastest ep':>11}")
    for ours, _ in MLPFLOW_VARIANTS:
        for ref in REFERENCES:
            if ref in rate:
                label = f"{ours}/{ref}"
                print(
                    f"  {label:<30} {rate[ours][0] / rate[ref][0]:>10.2f} "
                    f"{rate[ours][1] / rate[ref][1]:>11.2f}"
                )
    disturbed = [n for n, (r, e) in rate.items() if r < 0.75 * e or r > 1.25 * e]
    if disturbed:
        print(
            f"  ! whole run and fastest epoch disagree by > 25% for {', '.join(disturbed)}: "
            "other work took the cores; the fastest-epoch column is the one to trust"
        )


def main() -> int:
    args = parse_args()
    if args.clock == "cpu":
        clock.use_cpu_time()
    t_process = time.perf_counter()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="mlpflow-bench-") as tmp:
        root = Path(tmp)
        data = prepare_data(args, root)
        open_store(root, data)
        best, scores, notes = run_rounds(args, root, data)
    print_report(args, data, results_table(args, data, best, scores, notes))
    load_after = os.getloadavg()
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
