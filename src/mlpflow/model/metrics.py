"""Metric collections per task, fed directly with the LightningModule's scores and targets.

Scores follow one convention everywhere: binary -> probability of the positive class [N];
multiclass -> class probabilities [N, K]; regression -> predictions [N].
"""

from __future__ import annotations

import torchmetrics
from torchmetrics import classification as tmc
from torchmetrics import regression as tmr


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
