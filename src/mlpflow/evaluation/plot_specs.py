"""The plots evaluate writes, once: file, JSON key, axes and title. dvc.yaml's `plots` section
(checked by a test), the PNG figures' titles and `mlpflow compare` all read them from here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PlotSpec:
    name: str  # reports/plots/<name>.json
    title: str
    x: str
    y: str
    x_label: str
    y_label: str
    template: str | None = None  # DVC's template; None: linear
    keyed: bool = True  # rows under {"<name>": [...]} (dvclive's shape); False: a bare list

    @property
    def file(self) -> str:
        return f"plots/{self.name}.json"


PLOTS = {
    spec.name: spec
    for spec in (
        PlotSpec(
            "roc", "ROC curve (test)", "fpr", "tpr", "false positive rate", "true positive rate",
        ),
        PlotSpec(
            "precision_recall", "Precision-recall curve (test)", "recall", "precision", "recall",
            "precision",
        ),
        PlotSpec(
            "confusion", "Confusion matrix (test)", "actual", "predicted", "actual class",
            "predicted class", template="confusion", keyed=False,
        ),
        PlotSpec(
            "calibration", "Calibration (test)", "mean_predicted", "fraction_positive",
            "mean predicted probability", "fraction of positives",
        ),
        PlotSpec(
            "predicted_vs_true", "Predicted vs true (test)", "true", "predicted", "true value",
            "predicted value", template="scatter",
        ),
        PlotSpec(
            "importance", "Permutation importance (test)", "importance", "column",
            "drop in the main test metric", "raw column", template="bar_horizontal",
        ),
    )
}  # fmt: skip


def dvc_plots() -> list[dict[str, Any]]:
    """dvc.yaml's `plots` section, as these specs define it."""
    entries = []
    for spec in PLOTS.values():
        fields: dict[str, Any] = {"title": spec.title}
        if spec.template:
            fields["template"] = spec.template
        entries.append({f"reports/{spec.file}": {**fields, "x": spec.x, "y": spec.y}})
    return entries
