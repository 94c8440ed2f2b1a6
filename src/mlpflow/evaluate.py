"""Stage evaluate: best checkpoint + test split -> metrics.json, DVC plots, figures, into the
same MLflow run as train.

Scoring a saved network on one split needs no training loop: this stage runs the network
(torch), the metrics (torchmetrics) and the MLflow client directly, and so does not pay
Lightning's import (~4.6 s of its ~7 s start-up here).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from mlpflow.config import validate
from mlpflow.console import warn
from mlpflow.errors import DataError, ModelError
from mlpflow.files import read_json, write_json

if TYPE_CHECKING:
    from torch import Tensor

METRICS_FILE = "metrics.json"
EVAL_CHUNK_ROWS = 65536


def run(cfg: DictConfig) -> dict[str, float]:
    """Test the best checkpoint; write reports/metrics.json, plots/ and figures/; log them."""
    validate(cfg)
    reports = Path(cfg.paths.reports)
    train_report_path = reports / "train.json"
    if not train_report_path.exists():
        raise DataError(f"{train_report_path} not found: run the train stage first (dvc repro)")
    train_report = read_json(train_report_path)

    import torch

    from mlpflow.checkpoint import load_weights
    from mlpflow.data.splits import load_meta, load_split
    from mlpflow.evaluation.curves import write_plots
    from mlpflow.evaluation.figures import write_figures
    from mlpflow.tracking import tracking_uri

    weights = load_weights(Path(cfg.paths.models) / "best.ckpt")  # refuses corrupt/foreign files
    meta = load_meta(cfg.paths.prepared)
    x, y = (torch.from_numpy(array) for array in load_split(cfg.paths.prepared, "test"))
    # The threshold is evaluate's own param: metrics, confusion and plots all use the current one.
    metrics, scores = score_split(weights, x, y, cfg.evaluate.threshold, "test")

    curve_args: dict[str, Any] = {
        "class_names": meta.get("classes"),
        "threshold": cfg.evaluate.threshold,
        "calibration_bins": cfg.evaluate.calibration_bins,
    }
    task, target, score_array = meta["task"], y.numpy(), scores.numpy()
    plots = write_plots(task, target, score_array, reports / "plots", **curve_args)
    figures = write_figures(task, target, score_array, reports / "figures", **curve_args)
    metrics_path = write_json(reports / METRICS_FILE, _nested(metrics))
    if cfg.tracking.enabled and train_report.get("run_id"):
        _log_to_run(
            train_report.get("tracking_uri") or tracking_uri(cfg),
            train_report["run_id"],
            metrics,
            {"plots": plots, "figures": figures, "reports": [metrics_path]},
        )
    return metrics


def score_split(
    weights: dict[str, Any], x: Tensor, y: Tensor, threshold: float, split: str
) -> tuple[dict[str, float], Tensor]:
    """`<split>/loss` and the task's metrics of the checkpoint's network; and its scores.

    The same loss, scores and torchmetrics collection as the LightningModule's validation.
    """
    import torch

    from mlpflow.checkpoint import build_network
    from mlpflow.config import build_partial
    from mlpflow.evaluation.metrics import build_metrics
    from mlpflow.model.outputs import loss_target, output_scores, squeeze_head

    hparams = weights["hyper_parameters"]
    task, target_stats = hparams["task"], (hparams["target_mean"], hparams["target_scale"])
    if hparams["n_features"] != x.shape[1]:
        raise ModelError(
            f"the checkpoint expects {hparams['n_features']} features, the {split} split has "
            f"{x.shape[1]}: train again on this prepared data (dvc repro)"
        )
    net = build_network(weights)
    with torch.no_grad():
        outputs = torch.cat([squeeze_head(net(part)) for part in x.split(EVAL_CHUNK_ROWS)])
        loss_fn = build_partial(hparams["loss"], task=task)
        loss = loss_fn(outputs, loss_target(y, task, *target_stats))
        scores = output_scores(outputs, task, *target_stats)
    num_classes = 2 if task == "binary" else hparams["n_outputs"]
    collection = build_metrics(task, num_classes, threshold).clone(prefix=f"{split}/")
    collection.update(scores, y)
    metrics = {f"{split}/loss": float(loss)}
    metrics.update({name: float(value) for name, value in collection.compute().items()})
    return metrics, scores


def _log_to_run(
    uri: str, run_id: str, metrics: dict[str, float], artifacts: dict[str, list[Path]]
) -> None:
    """Add the test metrics (one batch) and the report files to train's run."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    from mlpflow.guard import StoreGuard

    guard = StoreGuard(uri, lambda: run_id, "evaluation")
    client = guard(MlflowClient, uri)
    now = int(time.time() * 1000)
    batch = [Metric(key, value, now, 0) for key, value in metrics.items()]
    if client is not None:
        guard(client.log_batch, run_id, metrics=batch)
        for folder, paths in artifacts.items():
            for path in paths:
                guard(client.log_artifact, run_id, str(path), folder)
    if guard.lost:
        warn(
            f"MLflow run {run_id} is missing evaluate's results ({guard.lost}); "
            "reports/ is complete"
        )


def _nested(metrics: dict[str, float]) -> dict[str, dict[str, float]]:
    """{'test/f1': x} -> {'test': {'f1': x}}: DVC shows it as test.f1."""
    nested: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        split, name = key.split("/", 1)
        nested.setdefault(split, {})[name] = value
    return nested
