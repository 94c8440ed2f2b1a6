"""Stage train under k-fold cross-validation: a network per fold, trained as the train stage
trains one (its own MLflow run, checkpoints and resume) and nested under one cross-validation
run; each is scored on its held-out fold, which never chose its epoch (early stopping and the
best checkpoint use the fold's inner validation split), so the scores are an honest estimate.

The CV run holds the fold scores' mean and std (`cv/<metric>_mean`, `cv/<metric>_std`), the
out-of-fold metrics (`oof/<metric>`: every row's held-out score, averaged over repeats) and
predictions (`oof/predictions.csv`, the input for stacking), a figure of the fold scores, and
the fold ensemble as its model (`serving.export.log_ensemble`). `<models>/cv.json` lets the same
command continue an interrupted CV: finished folds are not trained again, and the interrupted
fold resumes from its last checkpoint into its run.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
import torch
from omegaconf import DictConfig

from mlpflow.config.schema import CVConfig
from mlpflow.data.folds import CV_STATE, FOLDS_DIR, HELDOUT, HELDOUT_ROWS, Folds, fold_dir
from mlpflow.data.prepared import (
    PREPARE_HINT,
    Meta,
    load_codes,
    load_meta,
    load_row_weights,
    load_split,
)
from mlpflow.errors import DataError, RunInterrupted
from mlpflow.evaluation.importance import Member, column_groups
from mlpflow.evaluation.scoring import score_metrics, score_split
from mlpflow.files import read_json, write_json
from mlpflow.model.checkpoint import labelling_threshold, load_weights, member_checkpoint
from mlpflow.model.outputs import class_probabilities, num_classes
from mlpflow.stages import resume
from mlpflow.stages.interrupt import record_signals
from mlpflow.stages.report import TRAIN_REPORT
from mlpflow.tracking.cv_run import CVRun
from mlpflow.tracking.lineage import config_digest
from mlpflow.tracking.trials import objective_name

OOF_FILE = "oof_predictions.csv"


@dataclass(frozen=True)
class FoldRun:
    """Where a fold's run nests: the CV run, and the fold's number."""

    parent_run_id: str | None
    index: int

    def tags(self) -> dict[str, str]:
        tags = {"fold": str(self.index)}
        if self.parent_run_id:
            tags["mlflow.parentRunId"] = self.parent_run_id
        return tags


@dataclass(frozen=True)
class HeldOut:
    """A fold network's scores on its held-out rows, and their metrics."""

    metrics: dict[str, float]  # `heldout/<metric>`
    scores: np.ndarray
    target: np.ndarray
    rows: np.ndarray  # each row's number in the source table
    weight: np.ndarray | None  # the rows' weights (data.weight); None: unweighted
    threshold: float  # the fold network's binary threshold


def fold_config(cfg: DictConfig, index: int, prepared: Path) -> DictConfig:
    """The config that trains fold `index`: its prepared data, its own models dir (which also
    holds its train.json, a finished fold's mark), and its own seed, `seed` + index: members
    that start from one initialization and see their rows in one order err alike, and an
    ensemble gains from members whose errors differ."""
    fold = cfg.copy()
    models = Path(cfg.paths.models) / fold_dir(index)
    fold.paths.prepared, fold.paths.models, fold.paths.reports = (
        str(prepared),
        str(models),
        str(models),
    )
    for callback in fold.callbacks.values():
        if callback is not None and "dirpath" in callback:
            callback.dirpath = str(models)
    fold.seed = cfg.seed + index
    return fold


def run(
    cfg: DictConfig,
    folds: Folds,
    meta: Meta,
    train_fold: Callable[[DictConfig, FoldRun], dict[str, Any]],
) -> dict[str, Any]:
    """Train every fold with `train_fold` (train's `run`; those an interrupted CV finished are
    kept), score each on its held-out fold, log the CV run; write reports/train.json; return
    it."""
    models = Path(cfg.paths.models)
    identity = resume.identity(cfg, meta.fingerprint)
    state = _continued_state(models, identity)
    tracked = CVRun.start(cfg, meta, folds, state.get("run_id"))
    state["run_id"] = tracked.run_id if tracked else None
    write_json(models / CV_STATE, state)
    results: list[HeldOut] = []
    try:
        trained = _train_in_parallel(cfg, folds, state, train_fold)
        for index, prepared in enumerate(folds.dirs):
            fold_cfg = fold_config(cfg, index, prepared)
            if str(index) not in state["finished"]:
                train_fold(fold_cfg, FoldRun(state["run_id"], index))
                _finished(models, state, index)
                trained.add(index)
            results.append(score_heldout(fold_cfg))
            if tracked and index in trained:
                tracked.log_fold(fold_cfg, results[-1])
            _report_to_optuna(cfg, results, index)
    except BaseException as error:
        if tracked:
            tracked.stopped(error)
        raise
    summary = summarize(cfg, meta, results)
    oof = oof_table(meta, folds, results)
    oof.to_csv(models / OOF_FILE, index=False)
    report = {
        **(_finish(cfg, tracked, folds, results, summary, oof) if tracked else _untracked()),
        "config_digest": config_digest(cfg),
        "monitor": cfg.monitor.metric,
        "best_score": summary[objective_name(cfg)],
        "cv": {"folds": folds.folds, "repeats": folds.repeats, **_unprefixed(summary, "cv/")},
        "oof": _unprefixed(summary, "oof/"),
    }
    write_json(Path(cfg.paths.reports) / TRAIN_REPORT, report)
    (models / CV_STATE).unlink()
    return report


def _finish(
    cfg: DictConfig,
    tracked: CVRun,
    folds: Folds,
    results: list[HeldOut],
    summary: dict[str, float],
    oof: pd.DataFrame,
) -> dict[str, Any]:
    """The fold ensemble, the summary, the fold-score figure and the out-of-fold predictions
    into the CV run; train.json's tracking fields."""
    from mlpflow.evaluation.figures import write_fold_scores
    from mlpflow.serving.export import log_ensemble

    model = tracked.safely(log_ensemble, tracked.uri, tracked.run_id, fold_members(cfg, folds))
    with tempfile.TemporaryDirectory(prefix="mlpflow-cv-") as tmp:
        figure = write_fold_scores([r.metrics for r in results], Path(tmp) / "cv_folds.png")
        fields = tracked.finish(summary, oof, [figure], model.model_id if model else None)
    return {**fields, "experiment": cfg.tracking.experiment}


def test_members(cfg: DictConfig, folds: Folds, target: torch.Tensor) -> list[Member]:
    """Each fold's network with the test split as its own preprocessing wrote it."""
    members = []
    for checkpoint, prepared in fold_members(cfg, folds):
        x, y = (torch.from_numpy(array) for array in load_split(prepared, "test"))
        if not torch.equal(y, target):
            raise DataError(f"{prepared}: its test split is not the data's; {PREPARE_HINT}")
        codes = torch.from_numpy(load_codes(prepared, "test"))
        groups = column_groups(load_meta(prepared))
        members.append(Member(load_weights(checkpoint), x, codes, groups))
    return members


def score_ensemble(
    cfg: DictConfig,
    folds: Folds,
    members: list[Member],
    meta: Meta,
    target: torch.Tensor,
    row_weight: torch.Tensor | None = None,
) -> tuple[dict[str, float], torch.Tensor]:
    """The fold ensemble on the test split: its metrics (`test/`), the mean of its members'
    (`test_fold_mean/`: the ensemble's gain over them), and its scores, the mean of the
    members' scores; weighted by `row_weight` when given. Each member labels by its own
    threshold, the ensemble by their `labelling_threshold`. Each member's test metrics go into
    its fold's run."""
    from mlpflow.tracking.results import log_results

    member_metrics, scores = [], []
    for member, report in zip(members, fold_reports(cfg, folds), strict=True):
        weights = member.weights
        metrics, member_scores = score_split(
            weights, member.x, member.codes, target, weights.spec.threshold, "test", row_weight
        )
        member_metrics.append(metrics)
        scores.append(member_scores.double())
        if cfg.tracking.enabled and report.get("run_id"):
            log_results(report["tracking_uri"], report["run_id"], metrics, {}, report["model_id"])
    ensemble = torch.stack(scores).mean(dim=0).float()
    classes = num_classes(meta.task, meta.n_outputs)
    threshold = labelling_threshold(member.weights.spec for member in members)
    metrics = score_metrics(meta.task, classes, ensemble, target, threshold, "test", row_weight)
    for key in member_metrics[0]:
        name = key.removeprefix("test/")
        metrics[f"test_fold_mean/{name}"] = float(np.mean([m[key] for m in member_metrics]))
    return metrics, ensemble


def _train_in_parallel(
    cfg: DictConfig,
    folds: Folds,
    state: dict[str, Any],
    train_fold: Callable[[DictConfig, FoldRun], dict[str, Any]],
) -> set[int]:
    """With cv.n_jobs > 1, the unfinished folds trained that many at once, each in a worker
    process of its own with its share of the cores; the folds trained. A fold writes only its
    own models dir and run; this process alone writes cv.json, as each fold ends. SIGTERM or
    SIGINT is passed on to the workers, which stop as a single training does (their folds
    resumable; a fold whose training had ended finishes); a failed fold lets the others
    finish first."""
    pending = [index for index in range(len(folds.dirs)) if str(index) not in state["finished"]]
    n_jobs = min(CVConfig.parse(cfg.get("cv")).n_jobs, len(pending))
    if n_jobs < 2:
        return set()
    threads = max(1, (os.cpu_count() or 1) // n_jobs)
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked torch state
    failure: BaseException | None = None
    with (
        passed_on_signals() as received,
        ProcessPoolExecutor(n_jobs, mp_context=context, initializer=record_signals) as pool,
    ):
        futures = [
            pool.submit(
                _train_in_worker,
                train_fold,
                fold_config(cfg, index, folds.dirs[index]),
                FoldRun(state["run_id"], index),
                threads,
            )
            for index in pending
        ]
        for future in as_completed(futures):
            try:
                index, signum = future.result()
            except BaseException as error:  # a worker a signal reached before its training
                failure = failure or error
                continue
            if signum is None:
                _finished(Path(cfg.paths.models), state, index)
    if received:
        name = signal.Signals(received[0]).name
        how = f"stopped by {name} while folds trained in parallel; run the same command again"
        raise RunInterrupted(f"{how} to resume", received[0])
    if failure is not None:
        raise failure
    return set(pending)


@contextmanager
def passed_on_signals() -> Iterator[list[int]]:
    """SIGTERM and SIGINT received in the block, each passed on to this process's children
    (the fold workers; multiprocessing's resource tracker ignores both)."""
    received: list[int] = []

    def pass_on(signum: int, frame: Any) -> None:
        received.append(signum)
        for child in psutil.Process().children():
            with suppress(psutil.Error):
                child.send_signal(signum)

    saved = {sig: signal.signal(sig, pass_on) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield received
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _train_in_worker(
    train_fold: Callable[[DictConfig, FoldRun], dict[str, Any]],
    fold_cfg: DictConfig,
    fold: FoldRun,
    threads: int,
) -> tuple[int, int | None]:
    """Train one fold in a worker: its index, and the signal that stopped it (None: it
    finished)."""
    torch.set_num_threads(threads)
    try:
        train_fold(fold_cfg, fold)
    except RunInterrupted as error:
        return fold.index, error.exit_code - 128
    return fold.index, None


def _finished(models: Path, state: dict[str, Any], index: int) -> None:
    state["finished"][str(index)] = True
    write_json(models / CV_STATE, state)


def _continued_state(models: Path, identity: resume.RunIdentity) -> dict[str, Any]:
    """The interrupted CV of the same identity (its run, its finished folds), or a fresh one:
    then the folds of another run are removed, never mixed in."""
    path = models / CV_STATE
    state = read_json(path) if path.exists() else {}
    if state.get("identity") == list(identity.__dict__.values()):
        return state
    resume.discard(models / FOLDS_DIR)
    return {"identity": list(identity.__dict__.values()), "run_id": None, "finished": {}}


def score_heldout(fold_cfg: DictConfig) -> HeldOut:
    """The fold's network (`member_checkpoint`) scored on its held-out rows (weighted, with
    data.weight)."""
    prepared = Path(fold_cfg.paths.prepared)
    weights = load_weights(member_checkpoint(fold_cfg.paths.models))
    x, y = (torch.from_numpy(array) for array in load_split(prepared, HELDOUT))
    codes = torch.from_numpy(load_codes(prepared, HELDOUT))
    weight = load_row_weights(prepared, HELDOUT)
    row_weight = None if weight is None else torch.from_numpy(weight)
    threshold = weights.spec.threshold
    metrics, scores = score_split(weights, x, codes, y, threshold, HELDOUT, row_weight)
    rows = np.load(prepared / HELDOUT_ROWS, allow_pickle=False)
    return HeldOut(metrics, scores.double().numpy(), y.numpy(), rows, weight, threshold)


def summarize(cfg: DictConfig, meta: Meta, results: list[HeldOut]) -> dict[str, float]:
    """`cv/<metric>_mean` and `_std` over the folds' held-out metrics (std over the K x R
    folds, ddof=0), and `oof/<metric>`: the metrics of every row's held-out score, the mean
    over repeats (docs/math.md), labelled by the folds' `labelling_threshold` and weighted by
    the rows' weights (data.weight)."""
    summary: dict[str, float] = {}
    for key in results[0].metrics:
        values = np.array([result.metrics[key] for result in results])
        name = key.split("/", 1)[1]
        summary[f"cv/{name}_mean"] = float(values.mean())
        summary[f"cv/{name}_std"] = float(values.std())
    rows, inverse = np.unique(np.concatenate([r.rows for r in results]), return_inverse=True)
    scores = np.concatenate([r.scores for r in results])
    target = np.concatenate([r.target for r in results])
    counts = np.bincount(inverse, minlength=len(rows))
    mean = np.zeros((len(rows), *scores.shape[1:]))
    np.add.at(mean, inverse, scores)
    mean /= counts.reshape(-1, *([1] * (scores.ndim - 1)))
    row_target = np.empty(len(rows), dtype=target.dtype)
    row_target[inverse] = target  # a row's copies (one per repeat) share its target
    row_weight = None
    if results[0].weight is not None:  # and so its weight
        row_weight = torch.empty(len(rows), dtype=torch.float32)
        row_weight[inverse] = torch.from_numpy(np.concatenate([r.weight for r in results]))
    classes = num_classes(meta.task, meta.n_outputs)
    oof_scores, oof_target = torch.from_numpy(mean).float(), torch.from_numpy(row_target)
    threshold = labelling_threshold(result.threshold for result in results)
    summary.update(
        score_metrics(meta.task, classes, oof_scores, oof_target, threshold, "oof", row_weight)
    )
    return summary


def oof_table(meta: Meta, folds: Folds, results: list[HeldOut]) -> pd.DataFrame:
    """One line per held-out row and repeat: the source row number, repeat, fold, target, and
    the score (class probabilities, or the prediction)."""
    parts = []
    for index, result in enumerate(results):
        target: Any = result.target
        if meta.classes is not None:
            target = np.asarray(meta.classes, dtype=object)[result.target]
        frame = pd.DataFrame(
            {"row": result.rows, "repeat": folds.repeat[index], "fold": folds.fold[index],
             "target": target}
        )  # fmt: skip
        if meta.task == "regression":
            frame["prediction"] = result.scores
        else:
            proba = class_probabilities(meta.task, result.scores)
            for k, name in enumerate(meta.classes or []):
                frame[f"proba_{name}"] = proba[:, k]
        parts.append(frame)
    return pd.concat(parts, ignore_index=True).sort_values(["repeat", "row"], kind="stable")


def _report_to_optuna(cfg: DictConfig, results: list[HeldOut], index: int) -> None:
    from mlpflow.tracking.trials import pruning_requested

    if pruning_requested():
        from mlpflow.tracking.pruning import report_fold

        key = f"{HELDOUT}/{str(cfg.monitor.metric).split('/', 1)[1]}"
        report_fold(float(np.mean([result.metrics[key] for result in results])), index)


def _unprefixed(summary: dict[str, float], prefix: str) -> dict[str, float]:
    return {key.removeprefix(prefix): v for key, v in summary.items() if key.startswith(prefix)}


def _untracked() -> dict[str, Any]:
    return {"run_id": None, "run_name": None, "model_id": None, "tracking": "off",
            "experiment": None, "experiment_id": None, "tracking_uri": None}  # fmt: skip


def fold_members(cfg: DictConfig, folds: Folds) -> list[tuple[Path, Path]]:
    """Each fold's network (`member_checkpoint`) and prepared directory: the fold ensemble's
    members."""
    models = Path(cfg.paths.models)
    return [(member_checkpoint(models / fold_dir(i)), d) for i, d in enumerate(folds.dirs)]


def fold_reports(cfg: DictConfig, folds: Folds) -> list[dict[str, Any]]:
    """Each fold's train.json (its run and model)."""
    models = Path(cfg.paths.models)
    return [read_json(models / fold_dir(i) / TRAIN_REPORT) for i in range(len(folds.dirs))]
