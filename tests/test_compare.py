"""`mlpflow compare`: the best runs as a table and their test curves in one figure."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from matplotlib.colors import to_rgb
from mlflow import MlflowClient
from rich.console import Console

from mlpflow.cli import main
from mlpflow.compare import best_runs, curve_points, default_curve, table, write_figure

from conftest import make_cfg
from mlflow_helpers import Trained, train_and_evaluate, trained_runs


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return trained_runs(tmp_path_factory)


def colours_drawn(png: Path, colours: list[str], alpha: float = 1.0) -> list[bool]:
    """Whether each colour (on white, at `alpha`) appears in the image: one per run."""
    pixels = matplotlib.image.imread(png)[..., :3].reshape(-1, 3)
    expected = [alpha * np.array(to_rgb(c)) + (1 - alpha) for c in colours]
    return [bool((np.abs(pixels - rgb).max(axis=1) < 0.02).any()) for rgb in expected]


def test_best_runs_first_with_the_params_that_differ(trained: Trained):
    client = MlflowClient(trained.uri)
    runs = best_runs(client, "mlpflow", "test/roc_auc", top=10)
    assert {r.info.run_id for r in runs} == {trained.run_id, trained.other_run_id}
    scores = [r.data.metrics["test/roc_auc"] for r in runs]
    assert scores == sorted(scores, reverse=True)
    assert [r.info.run_id for r in best_runs(client, "mlpflow", "test/roc_auc", top=1)] == [
        runs[0].info.run_id
    ]
    losses = [r.data.metrics["test/loss"] for r in best_runs(client, "mlpflow", "test/loss", 10)]
    assert losses == sorted(losses)  # a loss ranks lowest first

    console = Console(record=True, width=220)
    console.print(table(runs, "test/roc_auc"))
    text = console.export_text()
    for run in runs:
        assert run.info.run_name in text and run.info.run_id in text
        assert f"{run.data.metrics['test/roc_auc']:.4f}" in text
    header = text.splitlines()[2]
    assert "lr" in header and "roc_auc" in header and "status" in header and "time" in header
    assert "hidden_dims" not in header  # the same in both runs: not what tells them apart
    assert "0.001" in text and "0.01" in text and "finished" in text


def test_runs_without_lineage_are_not_training_runs(trained: Trained):
    """A sweep's parent run repeats its best trial's metric; it is no run of its own."""
    client = MlflowClient(trained.uri)
    experiment_id = client.get_run(trained.run_id).info.experiment_id
    parent = client.create_run(experiment_id, run_name="sweep-parent").info.run_id
    try:
        client.log_metric(parent, "test/roc_auc", 1.0)
        ranked = [r.info.run_id for r in best_runs(client, "mlpflow", "test/roc_auc", top=10)]
        assert parent not in ranked and len(ranked) == 2
    finally:
        client.delete_run(parent)


def test_figure_overlays_one_curve_per_run(trained: Trained, tmp_path: Path):
    client = MlflowClient(trained.uri)
    runs = best_runs(client, "mlpflow", "test/roc_auc", top=10)
    assert default_curve(runs) == "roc"
    for curve in ("roc", "pr"):
        path = write_figure(client, runs, "test/roc_auc", curve, tmp_path / f"{curve}.png")
        assert colours_drawn(path, ["C0", "C1", "C2"]) == [True, True, False]


def test_cli_prints_the_table_and_the_figure_path(trained: Trained, tmp_path: Path, capsys):
    out = tmp_path / "figures" / "cmp.png"
    main(["compare", "--uri", trained.uri, "--top", "5", "--output", str(out)])
    printed = capsys.readouterr().out
    assert "best runs by test/roc_auc" in printed
    assert printed.strip().endswith(f"figure: {out}")
    assert matplotlib.image.imread(out).shape[:2] == (600, 700)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--experiment", "nope"], "no experiment 'nope'"),
        (["--metric", "test/nope"], "no run in experiment 'mlpflow' has metric 'test/nope'"),
    ],
)
def test_unknown_experiment_or_metric_gets_one_line(trained: Trained, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "--uri", trained.uri, *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    if "metric" in message:
        assert "test/roc_auc" in err  # lists what is there


def test_regression_runs_overlay_predicted_vs_true(tmp_path: Path):
    cfg = make_cfg(tmp_path, "experiment=diabetes", "trainer.max_epochs=3")
    train_and_evaluate(cfg)
    client = MlflowClient(cfg.tracking.uri)
    runs = best_runs(client, "mlpflow", "test/r2", top=3)
    assert default_curve(runs) == "pred"
    path = write_figure(client, runs, "test/r2", "pred", tmp_path / "pred.png")
    assert colours_drawn(path, ["C0", "C1"], alpha=0.5) == [True, False]


def test_multiclass_curves_are_macro_averaged():
    rows = [
        {"fpr": 0.0, "tpr": 0.0, "class": "a"},
        {"fpr": 1.0, "tpr": 1.0, "class": "a"},
        {"fpr": 0.0, "tpr": 1.0, "class": "b"},
        {"fpr": 1.0, "tpr": 1.0, "class": "b"},
    ]
    x, y = curve_points(rows, "fpr", "tpr")
    assert y[0] == pytest.approx(0.5) and y[-1] == pytest.approx(1.0)
    assert y[len(x) // 2] == pytest.approx((0.5 + 1.0) / 2)
