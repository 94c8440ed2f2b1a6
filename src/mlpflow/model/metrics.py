"""Metric collections per task, fed directly with the LightningModule's scores and targets;
the same metrics weighted by rows (data.weight), and the F1-optimal binary threshold
(evaluate.threshold=auto).

Scores follow one convention everywhere: binary -> probability of the positive class [N];
multiclass -> class probabilities [N, K]; regression -> predictions [N]. torchmetrics takes no
row weights, so weighted metrics are scikit-learn's with `sample_weight`, on every row of the
split at once (`GatheredRows`); with weights 1 they equal torchmetrics' (tests/test_weights.py).
"""

from __future__ import annotations

import math

import numpy as np
import torchmetrics
from torch import Tensor
from torchmetrics import classification as tmc
from torchmetrics import regression as tmr
from torchmetrics.utilities import dim_zero_cat

from mlpflow.model.outputs import predicted_labels


def build_metrics(
    task: str, num_classes: int, threshold: float = 0.5
) -> torchmetrics.MetricCollection:
    """Unprefixed metrics for `task`; callers add a prefix with `.clone(prefix="val/")`.

    `num_classes` is read for multiclass only; `threshold` for binary only (the multiclass
    prediction is the argmax).
    """
    if task == "binary":
        # torchmetrics rejects an int threshold; predictions are `score > threshold`.
        threshold = float(threshold)
        metrics = {
            "acc": tmc.BinaryAccuracy(threshold=threshold),
            "precision": tmc.BinaryPrecision(threshold=threshold),
            "recall": tmc.BinaryRecall(threshold=threshold),
            "f1": tmc.BinaryF1Score(threshold=threshold),
            "roc_auc": tmc.BinaryAUROC(),
            "pr_auc": tmc.BinaryAveragePrecision(),
        }
    elif task == "multiclass":
        if num_classes < 2:
            raise ValueError(f"multiclass needs num_classes >= 2, got {num_classes}")
        metrics = {
            "acc": tmc.MulticlassAccuracy(num_classes=num_classes, average="micro"),
            "precision": tmc.MulticlassPrecision(num_classes=num_classes, average="macro"),
            "recall": tmc.MulticlassRecall(num_classes=num_classes, average="macro"),
            "f1": tmc.MulticlassF1Score(num_classes=num_classes, average="macro"),
            "roc_auc": tmc.MulticlassAUROC(num_classes=num_classes, average="macro"),
        }
    elif task == "regression":
        metrics = {
            "mse": tmr.MeanSquaredError(),
            "rmse": tmr.MeanSquaredError(squared=False),
            "mae": tmr.MeanAbsoluteError(),
            "r2": tmr.R2Score(),
        }
    else:
        raise ValueError(f"task must be binary, multiclass or regression, got {task!r}")
    return torchmetrics.MetricCollection(metrics)


def metric_names(task: str) -> list[str]:
    """The unprefixed names `build_metrics` gives the task's metrics."""
    return list(build_metrics(task, num_classes=2).keys())


def metric_values(
    task: str,
    num_classes: int,
    scores: Tensor,
    y: Tensor,
    threshold: float,
    weight: Tensor | None = None,
) -> dict[str, float]:
    """The task's metrics (the unprefixed names of `build_metrics`) of a split's scores: by
    torchmetrics, or with row weights by scikit-learn with those weights as `sample_weight`."""
    if weight is None:
        collection = build_metrics(task, num_classes, threshold)
        collection.update(scores, y)
        return {name: float(value) for name, value in collection.compute().items()}
    arrays = (t.detach().cpu().double().numpy() for t in (scores, y, weight))
    return weighted_metrics(task, num_classes, *arrays, threshold)


def weighted_metrics(
    task: str,
    num_classes: int,
    scores: np.ndarray,
    y: np.ndarray,
    weight: np.ndarray,
    threshold: float,
) -> dict[str, float]:
    """`build_metrics`' metrics with row weights, by scikit-learn: precision, recall and F1 of
    no predicted or true row are 0 (torchmetrics' convention); multiclass averages are macro
    (ROC AUC one-vs-rest), accuracy micro."""
    from sklearn import metrics as skm

    kw = {"sample_weight": weight}
    if task == "regression":
        mse = float(skm.mean_squared_error(y, scores, **kw))
        return {
            "mse": mse,
            "rmse": math.sqrt(mse),
            "mae": float(skm.mean_absolute_error(y, scores, **kw)),
            "r2": float(skm.r2_score(y, scores, **kw)),
        }
    y = y.astype(np.int64)
    labels = predicted_labels(task, scores, threshold)
    binary = task == "binary"
    averaged = (
        {"average": "binary"} if binary else {"average": "macro", "labels": range(num_classes)}
    )
    values = {
        "acc": skm.accuracy_score(y, labels, **kw),
        "precision": skm.precision_score(y, labels, zero_division=0, **averaged, **kw),
        "recall": skm.recall_score(y, labels, zero_division=0, **averaged, **kw),
        "f1": skm.f1_score(y, labels, zero_division=0, **averaged, **kw),
    }
    if binary:
        values["roc_auc"] = skm.roc_auc_score(y, scores, **kw)
        values["pr_auc"] = skm.average_precision_score(y, scores, **kw)
    else:
        values["roc_auc"] = skm.roc_auc_score(
            y, scores, multi_class="ovr", average="macro", labels=range(num_classes), **kw
        )
    return {name: float(value) for name, value in values.items()}


def f1_threshold(scores: np.ndarray, y: np.ndarray, weight: np.ndarray | None = None) -> float:
    """The binary threshold t whose labels `score > t` maximize the (row-weighted) F1 score on
    these rows: scikit-learn's precision-recall curve gives F1 at each cut `score >= c`; t is the
    highest score below the best cut (0 when none is), so that `score > t` labels these rows as
    that cut does, exactly, in float32 as in float64. The lowest best cut wins a tie."""
    from sklearn.metrics import precision_recall_curve

    precision, recall, cuts = precision_recall_curve(y, scores, sample_weight=weight)
    precision, recall = precision[:-1], recall[:-1]  # the last point, recall 0, has no cut
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)
    cut = cuts[int(np.argmax(f1))]
    below = scores[scores < cut]
    return float(below.max()) if len(below) else 0.0


class GatheredRows(torchmetrics.Metric):
    """Every validation batch's scores, targets and row weights, gathered across processes:
    for the metrics that need a split's rows at once (weighted ones, `f1_threshold`)."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        for name in ("scores", "target", "weight"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, scores: Tensor, target: Tensor, weight: Tensor | None = None) -> None:
        self.scores.append(scores)
        self.target.append(target)
        if weight is not None:
            self.weight.append(weight)

    def compute(self) -> tuple[Tensor, Tensor, Tensor | None]:
        weight = dim_zero_cat(self.weight) if self.weight else None
        return dim_zero_cat(self.scores), dim_zero_cat(self.target), weight
