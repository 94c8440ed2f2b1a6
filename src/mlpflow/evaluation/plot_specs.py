"""The plots evaluate writes, once: file, JSON key, axes and title. The `plots` that evaluate
declares for DVC (reports/dvc.yaml), the PNG figures' titles and `mlpflow compare` all read them
from here."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DVC_FILE = "dvc.yaml"  # in the reports folder: the `plots` of the files evaluate last wrote
DVC_FILE_HEADER = (
    "# Written by the evaluate stage (mlpflow.evaluation.plot_specs): the plots it wrote, for\n"
    "# `dvc plots show` and `dvc plots diff`. Not edited by hand; committed along with reports/.\n"
)


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


def write_plot(folder: str | Path, spec: PlotSpec, rows: list[dict[str, Any]]) -> Path:
    """`rows` as the spec's file in `folder` (created if needed), in its shape: keyed (dvclive's)
    or a bare list; strictly valid JSON (no NaN, no Infinity)."""
    path = Path(folder) / Path(spec.file).name
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {spec.name: rows} if spec.keyed else rows
    path.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path


def dvc_plots(names: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """A dvc.yaml `plots` section for the named plots (every plot when None), in PLOTS' order,
    each file relative to the reports folder."""
    wanted = set(PLOTS) if names is None else set(names)
    if unknown := wanted - set(PLOTS):
        raise ValueError(f"unknown plots {sorted(unknown)}; known: {list(PLOTS)}")
    entries = []
    for spec in PLOTS.values():
        if spec.name not in wanted:
            continue
        fields: dict[str, Any] = {"title": spec.title}
        if spec.template:
            fields["template"] = spec.template
        axes = {"x": spec.x, "y": spec.y, "x_label": spec.x_label, "y_label": spec.y_label}
        entries.append({spec.file: {**fields, **axes}})
    return entries


def write_dvc_plots(reports: str | Path, written: Iterable[str | Path]) -> Path:
    """reports/dvc.yaml: the `plots` of exactly the plot files evaluate wrote (`written`).

    DVC counts a declared plot file that does not exist as a failure ("DVC failed to load some
    plots"), and which files exist depends on the task (csv data infers it) and on
    evaluate.importance, which only evaluate knows. So, as DVCLive's make_dvcyaml does, the
    declaration is written next to the files instead of listed once in the project's dvc.yaml;
    `dvc plots show` and `dvc plots diff` read every dvc.yaml in the project.
    """
    path = Path(reports) / DVC_FILE
    section = {"plots": dvc_plots(Path(file).stem for file in written)}
    path.write_text(DVC_FILE_HEADER + yaml.safe_dump(section, sort_keys=False), encoding="utf-8")
    return path
