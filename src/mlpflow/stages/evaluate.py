"""Stage evaluate: best checkpoint + test split -> metrics.json, DVC plots, figures, into the
same MLflow run as train. Under cross-validation, the fold ensemble is what is evaluated, and
each fold's network too (`stages.cross_validation.score_ensemble`).

Scoring a saved network needs no training loop: this stage runs the network, torchmetrics and
the MLflow client directly, and so does not pay Lightning's import.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from mlpflow.config.schema import validate
from mlpflow.errors import DataError
from mlpflow.files import read_json, write_json
from mlpflow.stages.allocator import reuse_freed_memory

if TYPE_CHECKING:
    from torch import Tensor

    from mlpflow.data.prepared import Meta
    from mlpflow.evaluation.importance import Member

METRICS_FILE = "metrics.json"


def run(cfg: DictConfig) -> dict[str, float]:
    """Test the best checkpoint; write reports/metrics.json, plots/ and figures/; log them."""
    validate(cfg)
    reuse_freed_memory()
    reports = Path(cfg.paths.reports)
    train_report_path = reports / "train.json"
    if not train_report_path.exists():
        raise DataError(f"{train_report_path} not found: run the train stage first (dvc repro)")
    train_report = read_json(train_report_path)

    import torch

    from mlpflow.data.folds import load_folds
    from mlpflow.data.prepared import load_codes, load_meta, load_row_weights, load_split
    from mlpflow.evaluation.figures import write_figures
    from mlpflow.evaluation.importance import Member, column_groups
    from mlpflow.evaluation.plot_specs import write_dvc_plots
    from mlpflow.evaluation.plots import write_plots
    from mlpflow.evaluation.scoring import score_split
    from mlpflow.model.checkpoint import best_checkpoint, labelling_threshold, load_weights

    meta = load_meta(cfg.paths.prepared)
    x, y = (torch.from_numpy(array) for array in load_split(cfg.paths.prepared, "test"))
    codes = torch.from_numpy(load_codes(cfg.paths.prepared, "test"))
    weight = load_row_weights(cfg.paths.prepared, "test")  # data.weight: weighted metrics
    row_weight = None if weight is None else torch.from_numpy(weight)
    folds = load_folds(cfg.paths.prepared)
    # The threshold is the model's: metrics, confusion and plots label as the served model does.
    if folds is None:
        weights = load_weights(best_checkpoint(cfg.paths.models))  # refuses corrupt/foreign files
        members = [Member(weights, x, codes, column_groups(meta))]
        threshold = weights.spec.threshold  # evaluate.threshold, or the one auto chose in train
        metrics, scores = score_split(weights, x, codes, y, threshold, "test", row_weight)
    else:
        from mlpflow.stages.cross_validation import score_ensemble, test_members

        members = test_members(cfg, folds, y)
        metrics, scores = score_ensemble(cfg, folds, members, meta, y, row_weight)
    curve_args = {
        "class_names": meta.classes,
        "threshold": labelling_threshold(member.weights.spec for member in members),
        "calibration_bins": cfg.evaluate.calibration_bins,
    }
    target, score_array = y.numpy(), scores.numpy()
    plots = write_plots(meta.task, target, score_array, reports / "plots", **curve_args)
    figures = write_figures(meta.task, target, score_array, reports / "figures", **curve_args)
    if cfg.evaluate.importance:
        plot, figure = _importance(cfg, members, y, meta)
        plots, figures = [*plots, plot], [*figures, figure]
    write_dvc_plots(reports, plots)  # reports/dvc.yaml: what `dvc plots show` renders
    nested = _nested(metrics)
    if cfg.tracking.enabled and train_report.get("run_id"):
        _log(cfg, train_report, metrics, nested, {"plots": plots, "figures": figures}, meta)
    # Last: a metrics.json on disk means the run holds the results too (the Hydra path reads
    # it as "evaluate finished"; a stage killed before this line evaluates again).
    write_json(reports / METRICS_FILE, nested)
    return metrics


def _log(
    cfg: DictConfig,
    train_report: dict,
    metrics: dict[str, float],
    nested: dict[str, dict[str, float]],
    artifacts: dict[str, list[Path]],
    meta: Meta,
) -> None:
    """The test metrics, evaluate's settings (tags), the report files and metrics.json
    (`nested`, written to a temp dir) into train's run."""
    import tempfile

    from mlpflow.tracking.datasets import split_digest
    from mlpflow.tracking.lineage import evaluation_tags
    from mlpflow.tracking.results import log_results
    from mlpflow.tracking.store import tracking_uri

    with tempfile.TemporaryDirectory(prefix="mlpflow-evaluate-") as tmp:
        metrics_copy = write_json(Path(tmp) / METRICS_FILE, nested)
        log_results(
            train_report.get("tracking_uri") or tracking_uri(cfg),
            train_report["run_id"],
            metrics,
            {**artifacts, "reports": [metrics_copy]},
            model_id=train_report.get("model_id"),
            dataset=(str(cfg.data.name), split_digest(meta.fingerprint, "test")),
            tags=evaluation_tags(cfg),
        )


def _importance(cfg: DictConfig, members: list[Member], y: Tensor, meta: Meta) -> tuple[Path, Path]:
    """plots/importance.json and figures/importance.png: permutation importance of the raw
    columns on the test split, of the network or the fold ensemble (`evaluation/importance.py`)."""
    from mlpflow.evaluation.importance import write_importance

    reports, repeats = Path(cfg.paths.reports), cfg.evaluate.importance_repeats
    return write_importance(members, y, meta, reports, repeats, cfg.seed)


def _nested(metrics: dict[str, float]) -> dict[str, dict[str, float]]:
    """{'test/f1': x} -> {'test': {'f1': x}}: DVC shows it as test.f1."""
    nested: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        split, name = key.split("/", 1)
        nested.setdefault(split, {})[name] = value
    return nested
