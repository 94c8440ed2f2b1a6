"""DVC plot data: strictly valid JSON files in the shapes dvclive writes.

Curves are computed by scikit-learn on scores (probabilities), never on thresholded labels.
sklearn marks the "nothing predicted positive" end of ROC and PR curves with no finite threshold
(+inf for ROC, no threshold at all for PR's last point); those points carry `TOP_THRESHOLD` = 1.0,
the upper end of the probability range, so the files never contain Infinity or NaN.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn.calibration import calibration_curve
from sklearn.metrics import precision_recall_curve, roc_curve

from mlpflow.config.schema import TASKS
from mlpflow.evaluation.plot_specs import PLOTS, write_plot
from mlpflow.model.outputs import class_probabilities, predicted_labels

TOP_THRESHOLD = 1.0


def resolve_class_names(task: str, scores: np.ndarray, class_names: list[str] | None) -> list[str]:
    """Class names for a classification task; "0".."K-1" when none are given."""
    num_classes = class_probabilities(task, scores).shape[1]
    if class_names is None:
        return [str(k) for k in range(num_classes)]
    if len(class_names) != num_classes:
        raise ValueError(f"expected {num_classes} class names, got {len(class_names)}")
    return [str(name) for name in class_names]


def curve_defined(y_true: np.ndarray) -> bool:
    """ROC and PR need both classes in the (one-vs-rest) target; otherwise they are 0/0."""
    return 0 < int(np.sum(y_true)) < len(y_true)


def one_vs_rest(
    task: str, target: np.ndarray, scores: np.ndarray, class_names: list[str]
) -> list[tuple[str | None, np.ndarray, np.ndarray]]:
    """(class name, or None for binary; 0/1 target; positive-class score) per curve."""
    if task == "binary":
        return [(None, target, scores)]
    return [(name, (target == k).astype(int), scores[:, k]) for k, name in enumerate(class_names)]


def _roc_rows(y_true: np.ndarray, y_score: np.ndarray) -> list[dict[str, float]]:
    if not curve_defined(y_true):
        return []
    fpr, tpr, thresholds = roc_curve(y_true, y_score)
    thresholds = np.where(np.isinf(thresholds), TOP_THRESHOLD, thresholds)
    return [
        {"fpr": float(f), "tpr": float(t), "threshold": float(th)}
        for f, t, th in zip(fpr, tpr, thresholds, strict=True)
    ]


def _pr_rows(y_true: np.ndarray, y_score: np.ndarray) -> list[dict[str, float]]:
    if not curve_defined(y_true):
        return []
    precision, recall, thresholds = precision_recall_curve(y_true, y_score, drop_intermediate=True)
    thresholds = np.append(thresholds, TOP_THRESHOLD)  # the (recall 0, precision 1) end point
    return [
        {"precision": float(p), "recall": float(r), "threshold": float(th)}
        for p, r, th in zip(precision, recall, thresholds, strict=True)
    ]


def write_plots(
    task: str,
    target: np.ndarray,
    scores: np.ndarray,
    out_dir: str | Path,
    *,
    class_names: list[str] | None,
    threshold: float = 0.5,
    calibration_bins: int = 10,
) -> list[Path]:
    """Write the task's plot files into `out_dir` (created if needed); return their paths.

    binary: roc, precision_recall, confusion, calibration; multiclass: roc and precision_recall
    (one-vs-rest rows with a "class" key), confusion; regression: predicted_vs_true.
    A curve whose (one-vs-rest) target holds one class only is undefined and gets no rows.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    target, scores = np.asarray(target), np.asarray(scores)
    if task == "regression":
        rows = [
            {"true": float(t), "predicted": float(p)} for t, p in zip(target, scores, strict=True)
        ]
        return [write_plot(out, PLOTS["predicted_vs_true"], rows)]
    names = resolve_class_names(task, scores, class_names)
    written = [
        write_plot(out, PLOTS[name], rows) for name, rows in _curves(task, target, scores, names)
    ]
    predicted = predicted_labels(task, scores, threshold)
    confusion = [
        {"actual": names[int(a)], "predicted": names[int(p)]}
        for a, p in zip(target, predicted, strict=True)
    ]
    written.append(write_plot(out, PLOTS["confusion"], confusion))
    if task == "binary":
        calibration = _calibration_rows(target, scores, calibration_bins)
        written.append(write_plot(out, PLOTS["calibration"], calibration))
    return written


def _curves(
    task: str, target: np.ndarray, scores: np.ndarray, names: list[str]
) -> list[tuple[str, list[dict[str, Any]]]]:
    """ROC and PR rows; one-vs-rest rows carry their "class"."""
    roc: list[dict[str, Any]] = []
    pr: list[dict[str, Any]] = []
    for name, y_true, y_score in one_vs_rest(task, target, scores, names):
        tag = {} if name is None else {"class": name}
        roc += [{**row, **tag} for row in _roc_rows(y_true, y_score)]
        pr += [{**row, **tag} for row in _pr_rows(y_true, y_score)]
    return [("roc", roc), ("precision_recall", pr)]


def _calibration_rows(target: np.ndarray, scores: np.ndarray, bins: int) -> list[dict[str, float]]:
    fraction_positive, mean_predicted = calibration_curve(target, scores, n_bins=bins)
    return [
        {"mean_predicted": float(m), "fraction_positive": float(f)}
        for m, f in zip(mean_predicted, fraction_positive, strict=True)
    ]
