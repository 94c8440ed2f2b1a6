"""Real Lightning training + evaluation, in-process, one per task type; determinism; GD steps."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from mlpflow.stages import evaluate, prepare, train


def train_and_evaluate(cfg) -> tuple[dict, dict]:
    prepare.run(cfg)
    report = train.run(cfg)
    return report, evaluate.run(cfg)


def lightning_test_metrics(cfg) -> dict[str, float]:
    """The best checkpoint tested by Lightning's own loop, through the LightningModule."""
    import pytorch_lightning as pl

    from mlpflow.data.datamodule import TabularDataModule
    from mlpflow.model.module import MLPModule

    module = MLPModule.load_from_checkpoint(
        Path(cfg.paths.models) / "best.ckpt", weights_only=True, threshold=cfg.evaluate.threshold
    )
    data = TabularDataModule(cfg.paths.prepared, batch_size=32, batches_per_step=1, seed=cfg.seed)
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    return trainer.test(module, data, verbose=False)[0]


def test_breast_cancer_beats_baseline_and_fills_the_mlflow_run(cfg_factory, tmp_path: Path):
    cfg = cfg_factory("trainer.max_epochs=40")
    report, metrics = train_and_evaluate(cfg)
    assert metrics["test/roc_auc"] >= 0.97
    assert metrics["test/acc"] > 0.9  # majority class is ~0.63
    assert metrics == pytest.approx(lightning_test_metrics(cfg), rel=1e-5)

    reports = Path(cfg.paths.reports)
    train_json = json.loads((reports / "train.json").read_text())
    assert train_json["run_id"] == report["run_id"]
    assert 0 <= train_json["best_epoch"] < 40
    nested = json.loads((reports / "metrics.json").read_text())
    assert nested["test"]["roc_auc"] == pytest.approx(metrics["test/roc_auc"])
    for name in ("roc", "precision_recall", "confusion", "calibration"):
        assert (reports / "plots" / f"{name}.json").stat().st_size > 0

    client = MlflowClient(cfg.tracking.uri)
    run = client.get_run(report["run_id"])
    assert run.info.run_name == report["run_name"]
    assert run.info.run_name.startswith("mlp128x64-relu-bce-none-adam-")
    assert run.data.params["optimizer.lr"] == "0.001"
    assert run.data.params["model.hidden_dims"] == "[128, 64]"
    for metric in (
        "train/loss",
        "train/data_loss",
        "train/penalty",
        "val/loss",
        "val/roc_auc",
        "test/roc_auc",
        "test/pr_auc",
        "test/f1",
    ):
        assert metric in run.data.metrics, metric
    history = client.get_metric_history(run.info.run_id, "val/roc_auc")
    assert len(history) == train_json["epochs_run"]  # one point per epoch, not per step
    # One write an epoch: validation and train metrics of a step share the write's timestamp
    # (two writes are a SQLite transaction and two checkpoint saves apart: several ms).
    train_writes = {
        m.step: m.timestamp for m in client.get_metric_history(run.info.run_id, "train/loss")
    }
    assert {m.step: m.timestamp for m in history} == train_writes
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config", "checkpoints", "plots", "figures", "reports"} <= artifacts
    assert [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")] == [
        "checkpoints/best.ckpt"
    ]
    figures = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert "figures/roc.png" in figures
    assert (
        run.data.tags["data.fingerprint"]
        == json.loads((Path(cfg.paths.prepared) / "meta.json").read_text())["fingerprint"]
    )


@pytest.mark.parametrize(
    ("experiment", "metric", "floor"),
    [("digits", "test/acc", 0.9), ("wine", "test/acc", 0.85), ("diabetes", "test/r2", 0.3)],
)
def test_multiclass_and_regression_beat_trivial_baselines(cfg_factory, experiment, metric, floor):
    # Baselines: the majority class (digits ~0.10, wine ~0.40), the mean (R² = 0).
    cfg = cfg_factory(
        f"experiment={experiment}", "loader.batch_size=32", "trainer.max_epochs=30", tracking=False
    )
    _, metrics = train_and_evaluate(cfg)
    assert metrics[metric] >= floor
    # evaluate scores without Lightning: the same numbers as the LightningModule's test loop
    assert metrics == pytest.approx(lightning_test_metrics(cfg), rel=1e-5)
    plots = {p.name for p in (Path(cfg.paths.reports) / "plots").iterdir()}
    expected = (
        {"predicted_vs_true.json"} if experiment == "diabetes" else {"confusion.json", "roc.json"}
    )
    assert expected <= plots


def test_synthetic_binary_with_penalty_logs_it(cfg_factory):
    cfg = cfg_factory(
        "data=synthetic",
        "data.n_samples=2000",
        "regularization=elastic_net",
        "trainer.max_epochs=5",
    )
    report, metrics = train_and_evaluate(cfg)
    assert metrics["test/roc_auc"] > 0.8
    run = MlflowClient(cfg.tracking.uri).get_run(report["run_id"])
    penalty, total, data = (
        run.data.metrics[f"train/{k}"] for k in ("penalty", "loss", "data_loss")
    )
    assert penalty > 0
    assert total == pytest.approx(data + penalty, rel=1e-4)


def test_same_seed_same_metrics(tmp_path: Path):
    from conftest import make_cfg

    runs = []
    for name in ("a", "b"):
        cfg = make_cfg(tmp_path / name, "trainer.max_epochs=8", "model.dropout=0.2", tracking=False)
        runs.append(train_and_evaluate(cfg)[1])
    assert runs[0] == runs[1]


def test_an_untracked_run_trains_and_evaluates_without_importing_mlflow(tmp_path: Path):
    """tracking=none costs no MLflow import (about a second a run): the command as a user runs
    it, with sys.modules read as it exits."""
    from conftest import subprocess_env

    code = """
import atexit, runpy, sys
atexit.register(lambda: print("mlflow imported:", "mlflow" in sys.modules))
sys.argv = ["mlpflow.train", *sys.argv[1:]]
runpy.run_module("mlpflow.train", run_name="__main__")
"""
    args = ["data=wine", "trainer.max_epochs=1", "tracking=none", f"hydra.run.dir={tmp_path}"]
    done = subprocess.run(
        [sys.executable, "-c", code, *args, "callbacks.progress_bar=null"],
        cwd=tmp_path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "reports" / "metrics.json").exists()
    assert "mlflow imported: False" in done.stdout


def test_gd_takes_exactly_one_optimizer_step_per_epoch(cfg_factory):
    cfg = cfg_factory("optimizer=gd", "trainer.max_epochs=7", "callbacks=none", tracking=False)
    prepare.run(cfg)
    report = train.run(cfg)
    assert report["global_step"] == 7


def test_minibatch_steps_do_not_depend_on_batches_per_step(tmp_path: Path):
    """Chunking is a speed knob only: 1 or 32 minibatches per Lightning step, same weights."""
    from conftest import make_cfg

    weights = []
    for k in (1, 3):
        cfg = make_cfg(
            tmp_path / str(k),
            "loader.batch_size=32",
            f"loader.batches_per_step={k}",
            "trainer.max_epochs=3",
            "callbacks.early_stopping=null",
            tracking=False,
        )
        prepare.run(cfg)
        report = train.run(cfg)
        assert report["global_step"] == 3 * 13  # ceil(397 / 32) steps per epoch
        state = torch.load(Path(cfg.paths.models) / "last.ckpt", weights_only=True)["state_dict"]
        weights.append(state)
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key


def test_monitor_auto_keeps_the_checkpoint_of_the_best_main_metric(cfg_factory):
    """monitor.metric=auto on a binary task: the best checkpoint is the epoch of the highest
    val/roc_auc, and the run's params say what auto became."""
    cfg = cfg_factory("monitor.metric=auto", "monitor.mode=max", "trainer.max_epochs=6")
    prepare.run(cfg)
    report = train.run(cfg)
    client = MlflowClient(cfg.tracking.uri)
    assert client.get_run(report["run_id"]).data.params["monitor.metric"] == "val/roc_auc"
    history = [m.value for m in client.get_metric_history(report["run_id"], "val/roc_auc")]
    assert report["monitor"] == "val/roc_auc"
    assert report["best_score"] == pytest.approx(max(history))
    assert report["best_epoch"] == history.index(max(history))


def test_a_monitor_the_task_does_not_log_fails_before_training(cfg_factory):
    from mlpflow.errors import ConfigError

    cfg = cfg_factory("data=diabetes", "monitor.metric=val/roc_auc", "monitor.mode=max")
    prepare.run(cfg)
    with pytest.raises(
        ConfigError,
        match=r"monitor.metric='val/roc_auc' is not logged for the "
        r"regression task: choose one of val/loss, val/mae, val/mse, val/r2, val/rmse",
    ):
        train.run(cfg)
    assert not Path(cfg.paths.models).exists()


def test_loss_that_does_not_fit_inferred_task_fails_before_training(cfg_factory, tmp_path):
    from mlpflow.errors import ConfigError

    table = tmp_path / "rows.csv"
    table.write_text("a,b,y\n" + "".join(f"{i},{i % 3},{i * 0.37}\n" for i in range(60)))
    args = ("data=csv", f"data.path={table}", "data.target=y")
    cfg = cfg_factory(*args, "loss=bce", tracking=False)
    prepare.run(cfg)  # the target is continuous: task auto -> regression
    with pytest.raises(ConfigError, match="loss=bce does not fit the regression task"):
        train.run(cfg)
    assert not Path(cfg.paths.models).exists()
    cfg = cfg_factory(*args, "trainer.max_epochs=1", tracking=False)  # loss=auto: the task's
    assert train.run(cfg)["best_score"] > 0 and cfg.loss.name == "mse"


def test_epoch_train_losses_are_the_row_weighted_means_of_the_minibatch_losses(cfg_factory):
    """With lr=1e-12 the weights stay the initial ones all epoch, so the logged train/data_loss must
    be the loss of those weights over every train row (700 rows in minibatches of 64: the last
    one has 60), train/penalty their l2 penalty, train/loss the sum: what the per-chunk sums
    must add up to."""
    from mlpflow.data.prepared import load_codes, load_split
    from mlpflow.model.checkpoint import load_weights
    from mlpflow.model.outputs import network_outputs

    cfg = cfg_factory(
        "data=synthetic", "data.n_samples=1000", "loader.batch_size=64",
        "loader.batches_per_step=4", "regularization=l2", "regularization.l2=0.01",
        "optimizer.lr=1e-12", "trainer.max_epochs=1", "callbacks.early_stopping=null",
    )  # fmt: skip
    prepare.run(cfg)
    report = train.run(cfg)
    net = load_weights(Path(cfg.paths.models) / "best.ckpt").network()
    x, y = load_split(cfg.paths.prepared, "train")
    codes = torch.from_numpy(load_codes(cfg.paths.prepared, "train"))
    outputs = network_outputs(net, torch.from_numpy(x), codes)
    data_loss = torch.nn.functional.binary_cross_entropy_with_logits(
        outputs, torch.from_numpy(y).float()
    ).item()
    penalty = 0.01 * sum(p.pow(2).sum() for n, p in net.named_parameters() if "weight" in n)
    logged = MlflowClient(cfg.tracking.uri).get_run(report["run_id"]).data.metrics
    assert logged["train/data_loss"] == pytest.approx(data_loss, rel=1e-5)
    assert logged["train/penalty"] == pytest.approx(penalty.item(), rel=1e-5)
    assert logged["train/loss"] == pytest.approx(data_loss + penalty.item(), rel=1e-5)


def test_each_epoch_logs_the_validation_metrics_of_that_epochs_weights(cfg_factory):
    """The val metrics are computed once per epoch over that epoch's scores, then reset: the
    last epoch's logged val/roc_auc, val/pr_auc, val/acc and val/loss are those of the last
    checkpoint's weights on the val split (scores carried over from earlier epochs would change
    them). Each epoch's point sits at the optimizer step it reached, with its epoch number."""
    import sklearn.metrics as skm

    from mlpflow.data.prepared import load_codes, load_split
    from mlpflow.model.checkpoint import load_weights
    from mlpflow.model.outputs import network_outputs

    cfg = cfg_factory(
        "data=synthetic", "data.n_samples=1000", "optimizer.lr=0.05",
        "trainer.max_epochs=3", "callbacks.early_stopping=null",
    )  # fmt: skip
    prepare.run(cfg)
    run_id = train.run(cfg)["run_id"]
    net = load_weights(Path(cfg.paths.models) / "last.ckpt").network()
    x, y = load_split(cfg.paths.prepared, "val")
    codes = torch.from_numpy(load_codes(cfg.paths.prepared, "val"))
    outputs = network_outputs(net, torch.from_numpy(x), codes)
    scores = torch.sigmoid(outputs).numpy()
    client = MlflowClient(cfg.tracking.uri)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        outputs, torch.from_numpy(y).float()
    )
    expected = {
        "val/roc_auc": skm.roc_auc_score(y, scores),
        "val/pr_auc": skm.average_precision_score(y, scores),
        "val/acc": skm.accuracy_score(y, scores > 0.5),
        "val/loss": loss.item(),  # on the logits: sigmoid saturates in float32
    }
    for key, value in expected.items():
        history = client.get_metric_history(run_id, key)
        assert len(history) == 3
        assert max(history, key=lambda m: m.step).value == pytest.approx(value, abs=1e-6), key
    steps_per_epoch = math.ceil(700 / 32)  # 700 train rows, loader.batch_size=auto: 32
    for key in ("val/loss", "train/loss", "epoch"):
        history = sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)
        assert [m.step for m in history] == [steps_per_epoch * k for k in (1, 2, 3)], key
    assert [m.value for m in history] == [0, 1, 2]  # the epoch numbers


def test_evaluate_writes_metrics_json_last_after_the_run_holds_its_results(
    cfg_factory, monkeypatch
):
    """metrics.json on disk means evaluate finished, MLflow logging included (the Hydra path
    reads it so): a stage stopped while logging leaves none behind and evaluates again."""
    from mlpflow.tracking import results

    cfg = cfg_factory("trainer.max_epochs=2")
    prepare.run(cfg)
    run_id = train.run(cfg)["run_id"]
    metrics_json = Path(cfg.paths.reports) / "metrics.json"
    on_disk_while_logging = []
    log_results = results.log_results

    def logging_while_watching(*args, **kwargs) -> None:
        on_disk_while_logging.append(metrics_json.exists())
        log_results(*args, **kwargs)
        on_disk_while_logging.append(metrics_json.exists())

    monkeypatch.setattr(results, "log_results", logging_while_watching)
    metrics = evaluate.run(cfg)
    assert on_disk_while_logging == [False, False]
    written = json.loads(metrics_json.read_text())
    assert written["test"]["roc_auc"] == metrics["test/roc_auc"]
    client = MlflowClient(str(cfg.tracking.uri))
    logged = client.download_artifacts(run_id, "reports/metrics.json", str(cfg.paths.prepared))
    assert json.loads(Path(logged).read_text()) == written
    assert client.get_run(run_id).data.metrics["test/roc_auc"] == metrics["test/roc_auc"]


@pytest.mark.parametrize("clip", [None, 0.01])
def test_optimizer_clip_grad_norm_bounds_the_step(clip: float | None) -> None:
    """optimizer.clip_grad_norm (model=tabm's recipe sets 1.0): SGD with lr 1 moves the weights
    by the gradient, whose norm (10 here) is clipped to the option."""
    import pytorch_lightning as pl
    from pytorch_lightning.core.optimizer import LightningOptimizer

    from mlpflow.model.fast_step import DirectStep

    weights = torch.nn.Parameter(torch.zeros(3))
    optimizer = LightningOptimizer(torch.optim.SGD([weights], lr=1.0))
    step = DirectStep(pl.Trainer(logger=False), optimizer, clip)
    step((weights - torch.tensor([3.0, 4.0, 0.0])).pow(2).sum())  # gradient (-6, -8, 0)
    assert weights.norm().item() == pytest.approx(10.0 if clip is None else clip, rel=1e-5)


def test_balanced_class_weights_come_from_the_train_rows_and_reach_the_evaluated_loss(
    cfg_factory,
):
    """loss=auto loss.class_weight=balanced: the checkpoint's loss weighs each class
    n / (K n_c) of the train split (scikit-learn's 'balanced'), and evaluate's test loss is
    that weighted loss."""
    from sklearn.utils.class_weight import compute_class_weight

    from mlpflow.data.prepared import load_split
    from mlpflow.evaluation.scoring import score_split
    from mlpflow.model.checkpoint import load_weights

    cfg = cfg_factory("loss.class_weight=balanced", "trainer.max_epochs=2", tracking=False)
    prepare.run(cfg)
    train.run(cfg)
    weights = load_weights(Path(cfg.paths.models) / "best.ckpt")
    _, y_train = load_split(cfg.paths.prepared, "train")
    expected = compute_class_weight("balanced", classes=np.unique(y_train), y=y_train)
    assert weights.spec.loss["class_weight"] == pytest.approx(expected.tolist())
    assert expected.min() < 0.9 < 1.1 < expected.max()  # breast_cancer's classes are unequal
    metrics = evaluate.run(cfg)
    x, y = load_split(cfg.paths.prepared, "test")
    codes = torch.zeros(len(y), 0, dtype=torch.long)
    _, p = score_split(weights, torch.from_numpy(x), codes, torch.from_numpy(y), 0.5, "test")
    p, y = p.double().numpy(), y.astype(float)
    rows = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    c = expected[y.astype(int)]
    assert metrics["test/loss"] == pytest.approx((c * rows).sum() / c.sum(), rel=1e-4)
    assert metrics["test/loss"] != pytest.approx(rows.mean(), rel=1e-3)
