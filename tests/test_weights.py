"""Row weights (data.weight) and the F1-optimal threshold (evaluate.threshold=auto): the
weighted losses and metrics against their formulas and scikit-learn, rows of weight 0 ignored,
the threshold against a brute-force search, and one run from a weighted CSV to the served model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn import metrics as skm

from mlpflow.data.prepared import load_codes, load_meta, load_row_weights, load_split
from mlpflow.errors import DataError
from mlpflow.model.losses import BinaryCrossEntropy, CrossEntropy, Huber, MeanSquaredError
from mlpflow.model.metrics import f1_threshold, metric_values
from mlpflow.model.module import MLPModule

from conftest import make_cfg, prepare_data

N = 50


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def test_weighted_losses_are_the_hand_computed_weighted_means(rng):
    w = torch.from_numpy(rng.uniform(0, 3, N)).float()
    z, y01 = torch.randn(N), torch.from_numpy(rng.integers(0, 2, N))
    c = torch.tensor([0.5, 2.0])  # class weights: they multiply the row weights
    p = torch.sigmoid(z)
    bce_rows = -(y01 * torch.log(p) + (1 - y01) * torch.log(1 - p))
    cw = c[y01] * w
    expected = (cw * bce_rows).sum() / cw.sum()
    got = BinaryCrossEntropy("binary", class_weight=c.tolist())(z, y01.float(), w)
    torch.testing.assert_close(got, expected)

    logits, y3 = torch.randn(N, 3), torch.from_numpy(rng.integers(0, 3, N))
    c3 = torch.tensor([1.0, 3.0, 0.25])
    ce_rows = -torch.log_softmax(logits, dim=1)[torch.arange(N), y3]
    cw = c3[y3] * w
    got = CrossEntropy("multiclass", class_weight=c3.tolist())(logits, y3, w)
    torch.testing.assert_close(got, (cw * ce_rows).sum() / cw.sum())

    pred, target = torch.randn(N), torch.randn(N) * 2
    mse_rows = (pred - target) ** 2
    got = MeanSquaredError("regression")(pred, target, w)
    torch.testing.assert_close(got, (w * mse_rows).sum() / w.sum())
    err = (pred - target).abs()
    huber_rows = torch.where(err <= 1.0, 0.5 * err**2, err - 0.5)
    torch.testing.assert_close(
        Huber("regression")(pred, target, w), (w * huber_rows).sum() / w.sum()
    )

    ones = torch.ones(N)  # weight 1 everywhere: the unweighted loss
    torch.testing.assert_close(
        CrossEntropy("multiclass")(logits, y3, ones), CrossEntropy("multiclass")(logits, y3)
    )
    assert BinaryCrossEntropy("binary")(z, y01.float(), torch.zeros(N)) == 0  # no NaN


def small_module(task: str = "binary") -> MLPModule:
    torch.manual_seed(0)
    return MLPModule(
        n_features=4, n_outputs=1, task=task,
        model={"name": "mlp", "hidden_dims": [8], "activation": "relu", "dropout": 0.0,
               "batch_norm": False},
        loss={"_target_": "mlpflow.model.losses.BinaryCrossEntropy"},
        regularization={"l1": 0.0, "l2": 0.0, "include_bias": False},
        optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.5},
        scheduler={}, monitor={"metric": "val/loss", "mode": "min"}, batch_size=1000,
    )  # fmt: skip


def trained(x, y, w, steps: int = 20) -> list[torch.Tensor]:
    """Full-batch gradient steps of the training step on (x, y) weighted by w."""
    module = small_module()
    optimizer = torch.optim.SGD(module.parameters(), lr=0.5)

    def step(loss: torch.Tensor) -> None:
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    module._step_optimizer = step
    codes = torch.zeros(len(y), 0, dtype=torch.long)
    for _ in range(steps):
        module._epoch_sums = torch.zeros(3)
        module.training_step((x, codes, y, w), 0)
    return [p.detach().clone() for p in module.parameters()]


def test_rows_of_weight_zero_are_ignored_and_weights_change_the_model(rng):
    x = torch.from_numpy(rng.normal(size=(60, 4))).float()
    y = torch.from_numpy((rng.normal(size=60) + x[:, 0].numpy() > 0).astype(np.int64))
    kept = torch.from_numpy(rng.random(60) < 0.5)
    on_subset = trained(x[kept], y[kept], None)
    zero_one = trained(x, y, kept.float())
    unweighted = trained(x, y, None)
    for a, b in zip(zero_one, on_subset, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert any(
        not torch.allclose(a, b, atol=1e-3) for a, b in zip(zero_one, unweighted, strict=True)
    )


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_weighted_metrics_are_scikit_learns_with_sample_weight(rng, task):
    w = rng.uniform(0, 2, N)
    if task == "regression":
        y, scores = rng.normal(size=N), rng.normal(size=N)
    elif task == "binary":
        y, scores = rng.integers(0, 2, N), rng.random(N)
    else:
        y, scores = np.arange(N) % 3, rng.dirichlet(np.ones(3), N)
    tensors = [torch.from_numpy(a) for a in (scores, y, w)]
    got = metric_values(task, 3 if task == "multiclass" else 2, *tensors[:2], 0.4, tensors[2])
    kw = {"sample_weight": w}
    if task == "regression":
        assert got["mse"] == pytest.approx(skm.mean_squared_error(y, scores, **kw))
        assert got["r2"] == pytest.approx(skm.r2_score(y, scores, **kw))
        assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, scores, **kw))
    elif task == "binary":
        labels = (scores > 0.4).astype(int)
        assert got["f1"] == pytest.approx(skm.f1_score(y, labels, **kw))
        assert got["acc"] == pytest.approx(skm.accuracy_score(y, labels, **kw))
        assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, scores, **kw))
    else:
        labels = scores.argmax(axis=1)
        assert got["f1"] == pytest.approx(skm.f1_score(y, labels, average="macro", **kw))
        assert got["roc_auc"] == pytest.approx(
            skm.roc_auc_score(y, scores, multi_class="ovr", **kw)
        )
    # weights of 1: torchmetrics' unweighted values, the same metrics by the same rules
    ones = torch.ones(N, dtype=torch.float64)
    classes = 3 if task == "multiclass" else 2
    unit = metric_values(task, classes, tensors[0].float(), tensors[1], 0.4, ones)
    plain = metric_values(task, classes, tensors[0].float(), tensors[1], 0.4)
    assert unit == pytest.approx(plain, rel=1e-4, abs=1e-6)


def brute_force_f1(scores: np.ndarray, y: np.ndarray, w: np.ndarray | None) -> float:
    """The best F1 of `score > t` over every t that labels the rows differently."""
    candidates = np.concatenate([[-1.0], np.unique(scores)])
    return max(skm.f1_score(y, scores > t, sample_weight=w, zero_division=0) for t in candidates)


@pytest.mark.parametrize("weighted", [False, True])
def test_the_auto_threshold_maximizes_f1_over_every_threshold(rng, weighted):
    y = rng.integers(0, 2, 200)
    scores = np.round(np.clip(0.3 * y + rng.normal(0.35, 0.25, 200), 0, 1), 2)  # with ties
    w = rng.uniform(0, 3, 200) if weighted else None
    t = f1_threshold(scores, y, w)
    best = skm.f1_score(y, scores > t, sample_weight=w)
    assert best == pytest.approx(brute_force_f1(scores, y, w))
    assert 0 <= t < 1


def weighted_table(path: Path, rng: np.random.Generator, n: int = 240) -> pd.DataFrame:
    """A binary table whose rows with `w` 0 carry the opposite rule (labels flipped): weighted,
    they teach nothing."""
    a, b = rng.normal(size=n), rng.normal(size=n)
    signal = (a + 0.5 * b + rng.normal(scale=0.5, size=n) > 0.3).astype(int)
    w = np.where(rng.random(n) < 0.3, 0.0, rng.uniform(0.5, 2.0, n))
    frame = pd.DataFrame({"a": a, "b": b, "w": w, "y": np.where(w == 0, 1 - signal, signal)})
    frame.to_csv(path, index=False)
    return frame


def test_weighted_auto_threshold_run_to_the_served_model(tmp_path: Path, rng):
    """prepare -> train -> evaluate with data.weight and evaluate.threshold=auto: the weight is
    no feature and the served model does not ask for it; the threshold is the best F1 one on the
    validation scores, in the checkpoint, train.json and the run; test metrics are weighted;
    the logged model labels by it."""
    from mlflow import MlflowClient

    from mlpflow.model.checkpoint import best_checkpoint, load_weights
    from mlpflow.model.outputs import network_outputs, network_scores
    from mlpflow.serving.predict import load_model
    from mlpflow.stages import evaluate, prepare, train

    table = weighted_table(tmp_path / "t.csv", rng)
    cfg = make_cfg(
        tmp_path, "data=csv", f"data.path={tmp_path / 't.csv'}", "data.target=y",
        "data.weight=w", "evaluate.threshold=auto", "trainer.max_epochs=4",
        "evaluate.importance=false", "model.hidden_dims=[16]",
    )  # fmt: skip
    prepare.run(cfg)
    meta = load_meta(cfg.paths.prepared)
    (plan,) = [c for c in meta.columns if c.name == "w"]
    assert plan.role == "drop" and "row weight: data.weight" in plan.action
    assert meta.input_columns == ["a", "b"] and meta.weight == "w"
    prepared = cfg.paths.prepared
    assert len(load_row_weights(prepared, "train")) == meta.rows["train"]

    report = train.run(cfg)
    metrics = evaluate.run(cfg)
    weights = load_weights(best_checkpoint(cfg.paths.models))
    threshold = weights.spec.threshold
    assert (
        json.loads((Path(cfg.paths.reports) / "train.json").read_text())["threshold"] == threshold
    )

    def scores_of(split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x, y = (torch.from_numpy(a) for a in load_split(prepared, split))
        codes = torch.from_numpy(load_codes(prepared, split))
        outputs = network_outputs(weights.network(), x, codes)
        return (
            network_scores(outputs, weights.spec).double().numpy(),
            y.numpy(),
            load_row_weights(prepared, split),
        )

    val_scores, val_y, val_w = scores_of("val")
    assert threshold == f1_threshold(val_scores, val_y, val_w)  # validation's, never test's
    best = skm.f1_score(val_y, val_scores > threshold, sample_weight=val_w)
    assert best == pytest.approx(brute_force_f1(val_scores, val_y, val_w))
    test_scores, test_y, test_w = scores_of("test")
    labels = (test_scores > threshold).astype(int)
    assert metrics["test/f1"] == pytest.approx(
        skm.f1_score(test_y, labels, sample_weight=test_w), rel=1e-5
    )
    assert metrics["test/roc_auc"] == pytest.approx(
        skm.roc_auc_score(test_y, test_scores, sample_weight=test_w), rel=1e-5
    )

    run = MlflowClient(cfg.tracking.uri).get_run(report["run_id"])
    assert run.data.metrics["threshold"] == pytest.approx(threshold)
    assert "val/threshold" in run.data.metrics
    assert "data.weight=w" in run.data.tags["metrics.weighted"]

    model = load_model(report["run_id"], cfg.tracking.uri, prepared)
    assert [c.name for c in model.metadata.get_input_schema().inputs] == ["a", "b"]
    rows = table[["a", "b"]].head(60)  # no weight column
    served = model.predict(rows)
    assert (served["label"].astype(int) == (served["proba_1"] > threshold)).all()
    assert (served["proba_1"] > threshold).any() and (served["proba_1"] <= threshold).any()


BAD_WEIGHTS = {
    "a weight column naming no column": (
        "weight",
        ["data.weight='weight' names no column", "a, b"],
    ),
    "a non-numeric weight column": ("text", ["data.weight='text' is not numeric", "numbers >= 0"]),
    "negative weights": ("negative", ["has 1 negative weights", "numbers >= 0"]),
    "missing weights": (
        "holes",
        ["missing on 2 of the", "fill in their weights", "drop those rows"],
    ),
    "all-zero weights": ("zeros", ["weighs every row 0"]),
}


@pytest.mark.parametrize("case", BAD_WEIGHTS)
def test_bad_weights_are_one_line_data_errors(tmp_path: Path, case: str):
    """Each is a DataError (exit 2 from the command line; tests/test_bad_input.py runs one)."""
    column, words = BAD_WEIGHTS[case]
    n = 40
    frame = pd.DataFrame({"a": np.arange(n) * 0.5, "b": np.arange(n) % 7, "y": np.arange(n) % 2})
    frame["text"] = ["x" if i % 5 == 0 else str(i) for i in range(n)]
    frame["negative"] = np.where(np.arange(n) == 3, -1.0, 1.0)
    frame["holes"] = np.where(np.isin(np.arange(n), [4, 9]), np.nan, 1.0)
    frame["zeros"] = 0.0
    frame.to_csv(tmp_path / "t.csv", index=False)
    data = {"name": "csv", "task": "auto", "path": str(tmp_path / "t.csv"), "target": "y",
            "weight": column, "drop": ["text"] if column != "text" else []}  # fmt: skip
    with pytest.raises(DataError) as error:
        prepare_data(data, 0, tmp_path / "prepared")
    message = str(error.value)
    assert "\n" not in message
    for word in words:
        assert word in message, (word, message)
    assert not (tmp_path / "prepared").exists()
