"""Evaluation: metric values against scikit-learn, DVC plot JSON, PNG figures."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from mlpflow.evaluation.figures import write_figures
from mlpflow.evaluation.plots import write_plots
from mlpflow.model.metrics import build_metrics

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
N = 300
K = 4


def _strict_json(path: Path) -> object:
    def reject(constant: str) -> None:
        raise ValueError(f"{path.name} holds {constant}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=reject)


@pytest.fixture
def binary() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    target = rng.integers(0, 2, N)
    scores = np.clip(0.35 * target + rng.uniform(0.0, 0.65, N), 0.0, 1.0)
    return target, scores


@pytest.fixture
def multiclass() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    target = rng.integers(0, K, N)
    logits = rng.normal(size=(N, K)) + 1.2 * np.eye(K)[target]
    scores = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return target, scores


@pytest.fixture
def regression() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2)
    target = rng.normal(size=N)
    return target, target + rng.normal(scale=0.5, size=N)


def _compute(task: str, target: np.ndarray, scores: np.ndarray, **kwargs: float) -> dict:
    collection = build_metrics(task, num_classes=K if task == "multiclass" else 2, **kwargs)
    dtype = torch.float32 if task == "regression" else torch.long
    collection.update(torch.tensor(scores, dtype=torch.float32), torch.tensor(target, dtype=dtype))
    return {name: float(value) for name, value in collection.compute().items()}


# --- metrics ---------------------------------------------------------------------------------


def test_binary_metrics_match_sklearn_with_threshold(binary):
    target, scores = binary
    got = _compute("binary", target, scores, threshold=0.6)
    predicted = (scores > 0.6).astype(int)
    assert set(got) == {"acc", "precision", "recall", "f1", "roc_auc", "pr_auc"}
    assert got["acc"] == pytest.approx(skm.accuracy_score(target, predicted), abs=1e-6)
    assert got["precision"] == pytest.approx(skm.precision_score(target, predicted), abs=1e-6)
    assert got["recall"] == pytest.approx(skm.recall_score(target, predicted), abs=1e-6)
    assert got["f1"] == pytest.approx(skm.f1_score(target, predicted), abs=1e-6)
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(target, scores), abs=1e-5)
    assert got["pr_auc"] == pytest.approx(skm.average_precision_score(target, scores), abs=1e-5)
    # The threshold is used: the default one gives another recall on these scores.
    assert got["recall"] != pytest.approx(_compute("binary", target, scores)["recall"])


def test_binary_auc_is_computed_from_scores_not_labels():
    # Perfectly ranked scores, all below the threshold: every hard label is 0.
    rng = np.random.default_rng(3)
    target = rng.integers(0, 2, N)
    scores = 0.1 + 0.2 * target + rng.uniform(0.0, 0.05, N)
    assert skm.roc_auc_score(target, (scores > 0.5).astype(int)) == 0.5
    got = _compute("binary", target, scores)
    assert got["roc_auc"] == pytest.approx(1.0)
    assert got["pr_auc"] == pytest.approx(1.0)
    assert got["acc"] == pytest.approx(1 - target.mean())


def test_multiclass_metrics_match_sklearn(multiclass):
    target, scores = multiclass
    got = _compute("multiclass", target, scores)
    predicted = scores.argmax(axis=1)
    assert set(got) == {"acc", "precision", "recall", "f1", "roc_auc"}
    assert got["acc"] == pytest.approx(skm.accuracy_score(target, predicted), abs=1e-6)
    for name, fn in [
        ("precision", skm.precision_score),
        ("recall", skm.recall_score),
        ("f1", skm.f1_score),
    ]:
        assert got[name] == pytest.approx(fn(target, predicted, average="macro"), abs=1e-6), name
    expected_auc = skm.roc_auc_score(target, scores, multi_class="ovr", average="macro")
    assert got["roc_auc"] == pytest.approx(expected_auc, abs=1e-5)
    # Macro is not micro here (the classes are unbalanced by chance).
    assert got["f1"] != pytest.approx(got["acc"], abs=1e-6)


def test_regression_metrics_match_sklearn(regression):
    target, scores = regression
    got = _compute("regression", target, scores)
    mse = skm.mean_squared_error(target, scores)
    assert set(got) == {"mse", "rmse", "mae", "r2"}
    assert got["mse"] == pytest.approx(mse, rel=1e-5)
    assert got["rmse"] == pytest.approx(np.sqrt(mse), rel=1e-5)
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(target, scores), rel=1e-5)
    assert got["r2"] == pytest.approx(skm.r2_score(target, scores), rel=1e-5)


def test_collection_accumulates_batches_and_takes_a_prefix(binary):
    target, scores = binary
    collection = build_metrics("binary", num_classes=2).clone(prefix="val/")
    for chunk in np.array_split(np.arange(N), 3):
        collection.update(torch.tensor(scores[chunk]), torch.tensor(target[chunk]))
    got = {name: float(value) for name, value in collection.compute().items()}
    assert set(got) == {
        f"val/{n}" for n in ("acc", "precision", "recall", "f1", "roc_auc", "pr_auc")
    }
    assert got["val/roc_auc"] == pytest.approx(skm.roc_auc_score(target, scores), abs=1e-5)


def test_unknown_task_is_rejected():
    with pytest.raises(ValueError, match="task"):
        build_metrics("ranking", num_classes=2)


# --- plot data (JSON) ------------------------------------------------------------------------


def _assert_roc_ends(rows: list[dict]) -> None:
    assert (rows[0]["fpr"], rows[0]["tpr"]) == (0.0, 0.0)
    assert (rows[-1]["fpr"], rows[-1]["tpr"]) == (1.0, 1.0)
    assert all(0.0 <= row["threshold"] <= 1.0 for row in rows)


def test_binary_plot_files(binary, tmp_path):
    target, scores = binary
    out = tmp_path / "plots"
    written = write_plots("binary", target, scores, out, class_names=["neg", "pos"], threshold=0.6)
    names = {"roc.json", "precision_recall.json", "confusion.json", "calibration.json"}
    assert {p.name for p in written} == names
    assert all(p.parent == out and p.is_file() for p in written)
    data = {p.name: _strict_json(p) for p in written}

    roc = data["roc.json"]["roc"]
    assert set(roc[0]) == {"fpr", "tpr", "threshold"}
    _assert_roc_ends(roc)
    fpr, tpr, _ = skm.roc_curve(target, scores)
    np.testing.assert_allclose([r["fpr"] for r in roc], fpr)
    np.testing.assert_allclose([r["tpr"] for r in roc], tpr)
    assert roc[0]["threshold"] == 1.0  # sklearn's +inf, replaced

    pr = data["precision_recall.json"]["precision_recall"]
    assert set(pr[0]) == {"precision", "recall", "threshold"}
    assert pr[0]["recall"] == 1.0 and (pr[-1]["recall"], pr[-1]["precision"]) == (0.0, 1.0)

    confusion = data["confusion.json"]
    assert len(confusion) == N
    assert {tuple(row) for row in confusion} == {("actual", "predicted")}
    assert {row["actual"] for row in confusion} == {"neg", "pos"}
    counted = sum(row == {"actual": "neg", "predicted": "pos"} for row in confusion)
    assert counted == skm.confusion_matrix(target, (scores > 0.6).astype(int))[0, 1]

    calibration = data["calibration.json"]["calibration"]
    assert set(calibration[0]) == {"mean_predicted", "fraction_positive"}
    fraction, mean = calibration_curve(target, scores, n_bins=10)
    np.testing.assert_allclose([r["mean_predicted"] for r in calibration], mean)
    np.testing.assert_allclose([r["fraction_positive"] for r in calibration], fraction)


def test_binary_roc_is_computed_from_scores(tmp_path):
    rng = np.random.default_rng(3)
    target = rng.integers(0, 2, N)
    scores = 0.1 + 0.2 * target + rng.uniform(0.0, 0.05, N)  # every hard label is 0
    (roc_path, *_) = write_plots("binary", target, scores, tmp_path, class_names=None)
    roc = _strict_json(roc_path)["roc"]
    assert any(r["fpr"] == 0.0 and r["tpr"] == 1.0 for r in roc)  # a perfect operating point


def test_multiclass_plot_files(multiclass, tmp_path):
    target, scores = multiclass
    class_names = ["a", "b", "c", "d"]
    written = write_plots("multiclass", target, scores, tmp_path, class_names=class_names)
    assert {p.name for p in written} == {"roc.json", "precision_recall.json", "confusion.json"}
    data = {p.name: _strict_json(p) for p in written}
    roc = data["roc.json"]["roc"]
    pr = data["precision_recall.json"]["precision_recall"]
    assert {r["class"] for r in roc} == {r["class"] for r in pr} == set(class_names)
    assert set(roc[0]) == {"fpr", "tpr", "threshold", "class"}
    assert set(pr[0]) == {"precision", "recall", "threshold", "class"}
    for k, name in enumerate(class_names):
        rows = [r for r in roc if r["class"] == name]
        _assert_roc_ends(rows)
        fpr, _, _ = skm.roc_curve(target == k, scores[:, k])
        np.testing.assert_allclose([r["fpr"] for r in rows], fpr)
    confusion = data["confusion.json"]
    assert len(confusion) == N
    assert [row["actual"] for row in confusion] == [class_names[t] for t in target]
    assert [row["predicted"] for row in confusion] == [
        class_names[p] for p in scores.argmax(axis=1)
    ]


def test_regression_plot_file(regression, tmp_path):
    target, scores = regression
    (path,) = write_plots("regression", target, scores, tmp_path, class_names=None)
    assert path.name == "predicted_vs_true.json"
    rows = _strict_json(path)["predicted_vs_true"]
    assert len(rows) == N and set(rows[0]) == {"true", "predicted"}
    np.testing.assert_allclose([r["true"] for r in rows], target)
    np.testing.assert_allclose([r["predicted"] for r in rows], scores)


def test_undefined_curves_are_written_empty_or_skipped(multiclass, tmp_path):
    # Binary target of one class: ROC/PR are 0/0 and get no rows, never NaN.
    written = write_plots(
        "binary", np.zeros(20, dtype=int), np.linspace(0, 1, 20), tmp_path / "b", class_names=None
    )
    data = {p.name: _strict_json(p) for p in written}
    assert data["roc.json"] == {"roc": []}
    assert data["precision_recall.json"] == {"precision_recall": []}
    # Multiclass with class 3 absent from the target: that class has no curve.
    target, scores = multiclass
    target = np.where(target == 3, 0, target)
    written = write_plots("multiclass", target, scores, tmp_path / "m", class_names=None)
    roc = _strict_json(written[0])["roc"]
    assert {r["class"] for r in roc} == {"0", "1", "2"}


def test_class_names_must_match_the_classes(binary, tmp_path):
    target, scores = binary
    with pytest.raises(ValueError, match="class names"):
        write_plots("binary", target, scores, tmp_path, class_names=["only"])


# --- figures ---------------------------------------------------------------------------------


@pytest.fixture
def legends(monkeypatch) -> list[str]:
    """Legend texts of every figure saved during the test."""
    texts: list[str] = []
    original = Figure.savefig

    def recording_savefig(fig: Figure, *args, **kwargs):
        for ax in fig.axes:
            if ax.get_legend() is not None:
                texts.extend(t.get_text() for t in ax.get_legend().get_texts())
        return original(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", recording_savefig)
    return texts


def _assert_pngs(paths: list[Path], names: set[str]) -> None:
    assert {p.name for p in paths} == names
    for path in paths:
        content = path.read_bytes()
        assert content.startswith(PNG_MAGIC), path.name
        assert len(content) > 5_000, path.name
    assert plt.get_fignums() == []  # every figure closed


def test_binary_figures(binary, tmp_path, legends):
    target, scores = binary
    paths = write_figures("binary", target, scores, tmp_path / "fig", class_names=["neg", "pos"])
    _assert_pngs(
        paths, {"roc.png", "precision_recall.png", "confusion_matrix.png", "calibration.png"}
    )
    auc = skm.roc_auc_score(target, scores)
    ap = skm.average_precision_score(target, scores)
    assert any(f"{auc:.2f}" in t and "AUC" in t for t in legends), legends
    assert any(f"{ap:.2f}" in t and "AP" in t for t in legends), legends
    assert "Perfectly calibrated" in legends  # the calibration diagonal


def test_multiclass_figures(multiclass, tmp_path, legends):
    target, scores = multiclass
    class_names = ["a", "b", "c", "d"]
    paths = write_figures("multiclass", target, scores, tmp_path, class_names=class_names)
    _assert_pngs(paths, {"roc.png", "confusion_matrix.png"})
    roc_legend = [t for t in legends if "AUC" in t]
    assert sorted(t.split()[0] for t in roc_legend if t.split()[0] in class_names) == class_names


def test_regression_figure(regression, tmp_path):
    target, scores = regression
    paths = write_figures("regression", target, scores, tmp_path, class_names=None)
    _assert_pngs(paths, {"predicted_vs_true.png"})
