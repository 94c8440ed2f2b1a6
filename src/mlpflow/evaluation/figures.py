"""PNG figures of the evaluation, drawn by scikit-learn's Display classes (on `mlpflow.drawing`'s
headless matplotlib)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from sklearn.calibration import CalibrationDisplay
from sklearn.metrics import (
    ConfusionMatrixDisplay,
    PrecisionRecallDisplay,
    PredictionErrorDisplay,
    RocCurveDisplay,
)

from mlpflow.drawing import Axes, saved_figure
from mlpflow.evaluation.plot_specs import PLOTS
from mlpflow.evaluation.plots import (
    TASKS,
    curve_defined,
    one_vs_rest,
    resolve_class_names,
)
from mlpflow.model.outputs import predicted_labels


@contextmanager
def _figure(path: Path, title: str) -> Iterator[Axes]:
    """Axes to draw on, titled; the figure is saved to `path` and always closed."""
    with saved_figure(path, (6, 5)) as (_, ax):
        yield ax
        ax.set_title(title)


def _roc(path: Path, task: str, target: np.ndarray, scores: np.ndarray, names: list[str]) -> None:
    """One ROC curve (AUC in the legend) per class; binary draws the positive class only.

    Curves whose target holds a single class are undefined and left out.
    """
    curves = [c for c in one_vs_rest(task, target, scores, names) if curve_defined(c[1])]
    title = PLOTS["roc"].title + ("" if task == "binary" else ", one-vs-rest")
    with _figure(path, title) as ax:
        for i, (name, y_true, y_score) in enumerate(curves):
            RocCurveDisplay.from_predictions(
                y_true,
                y_score,
                pos_label=1,
                name=names[1] if name is None else name,
                ax=ax,
                plot_chance_level=i == len(curves) - 1,
            )


def _confusion(path: Path, target: np.ndarray, predicted: np.ndarray, names: list[str]) -> None:
    with _figure(path, PLOTS["confusion"].title) as ax:
        ConfusionMatrixDisplay.from_predictions(
            target,
            predicted,
            labels=list(range(len(names))),
            display_labels=names,
            xticks_rotation="vertical" if len(names) > 5 else "horizontal",
            ax=ax,
        )


def write_figures(
    task: str,
    target: np.ndarray,
    scores: np.ndarray,
    out_dir: str | Path,
    *,
    class_names: list[str] | None,
    threshold: float = 0.5,
    calibration_bins: int = 10,
) -> list[Path]:
    """Write the task's PNGs into `out_dir` (created if needed); return their paths.

    binary: roc, precision_recall, confusion_matrix, calibration; multiclass: roc (one-vs-rest),
    confusion_matrix; regression: predicted_vs_true.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = np.asarray(target)
    scores = np.asarray(scores)

    if task == "regression":
        path = out / "predicted_vs_true.png"
        with _figure(path, PLOTS["predicted_vs_true"].title) as ax:
            PredictionErrorDisplay.from_predictions(
                target, scores, kind="actual_vs_predicted", subsample=None, ax=ax
            )
        return [path]

    names = resolve_class_names(task, scores, class_names)
    written = [out / "roc.png", out / "confusion_matrix.png"]
    _roc(written[0], task, target, scores, names)
    _confusion(written[1], target, predicted_labels(task, scores, threshold), names)
    if task == "binary":
        pr_path, calibration_path = out / "precision_recall.png", out / "calibration.png"
        with _figure(pr_path, PLOTS["precision_recall"].title) as ax:
            if curve_defined(target):
                PrecisionRecallDisplay.from_predictions(
                    target, scores, pos_label=1, name=names[1], ax=ax, plot_chance_level=True
                )
        with _figure(calibration_path, PLOTS["calibration"].title) as ax:
            CalibrationDisplay.from_predictions(
                target, scores, n_bins=calibration_bins, pos_label=1, name=names[1], ax=ax
            )
        written += [pr_path, calibration_path]
    return written


def write_fold_scores(fold_metrics: list[dict[str, float]], path: Path) -> Path:
    """A cross-validation's held-out score of each fold, one panel per metric, the mean as a
    line and mean ± std as a band: how much the estimate moves between folds."""
    names = list(fold_metrics[0])
    columns = min(3, len(names))
    rows = -(-len(names) // columns)
    with saved_figure(path, (4 * columns, 2.6 * rows)) as (fig, _):
        fig.clf()
        for k, name in enumerate(names):
            ax = fig.add_subplot(rows, columns, k + 1)
            values = np.array([metrics[name] for metrics in fold_metrics])
            folds = np.arange(len(values))
            mean, std = values.mean(), values.std()
            ax.axhspan(mean - std, mean + std, color="tab:blue", alpha=0.15)
            ax.axhline(mean, color="tab:blue", linewidth=1)
            ax.plot(folds, values, "o", color="tab:blue")
            ax.set_xticks(folds)
            ax.set_xlabel("fold")
            ax.set_title(f"{name.split('/', 1)[-1]}: {mean:.4g} ± {std:.3g}", fontsize=9)
        fig.tight_layout()
    return path
