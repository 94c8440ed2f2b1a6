"""model=tabm: TabM's k members through the `tabm` package, trained on the mean of their losses,
predicting the mean of their scores, from training to the served model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import tabm
import torch
from mlflow import MlflowClient
from rtdl_num_embeddings import PiecewiseLinearEmbeddings
from sklearn.datasets import load_breast_cancer
from sklearn.metrics import roc_auc_score

from mlpflow.data.prepared import load_codes, load_split
from mlpflow.model.checkpoint import best_checkpoint, load_weights
from mlpflow.model.losses import BinaryCrossEntropy
from mlpflow.model.module import MLPModule
from mlpflow.model.outputs import network_outputs, network_scores
from mlpflow.model.tabm import OutputLayers, TabM
from mlpflow.serving import export
from mlpflow.tracking.store import use_tracking_uri

from conftest import make_cfg, subprocess_env
from mlflow_helpers import raw_rows
from test_model_env import AS_IF_UNINSTALLED, uninstalled_modules

SMALL = ["model=tabm", "model.k=4", "model.d_block=32", "model.n_blocks=2"]


def small_tabm(task: str, n_outputs: int, dropout: float = 0.0) -> TabM:
    torch.manual_seed(0)
    return TabM(
        5, n_outputs, task, k=4, n_blocks=2, d_block=16, dropout=dropout,
        cardinalities=[4, 12], n_continuous=3,
        categorical={"one_hot_max_levels": 3},  # one one-hot column, one embedded
    )  # fmt: skip


@pytest.mark.parametrize(
    ("task", "n_outputs", "score"),
    [
        ("binary", 1, torch.sigmoid),
        ("multiclass", 3, lambda z: torch.softmax(z, dim=-1)),
        ("regression", 1, lambda z: z),
    ],
)
def test_the_members_differ_and_the_prediction_is_the_mean_of_their_scores(
    task: str, n_outputs: int, score
) -> None:
    net = small_tabm(task, n_outputs)
    x, codes = torch.randn(64, 5), torch.randint(0, 4, (64, 2))
    members = net.train()(x, codes)
    assert members.shape == (64, 4, n_outputs)
    spread = members.std(dim=1).mean() / members.abs().mean()
    assert spread > 0.05  # k different networks, not k copies of one
    combined = net.eval()(x, codes)  # no dropout: the same members, combined
    assert combined.shape == (64, n_outputs)
    torch.testing.assert_close(score(combined), score(members).mean(dim=1))


def test_outside_training_tabm_runs_in_chunks_that_bound_its_activations() -> None:
    """32 members of 512 take 16,384 values a row: 128 rows a pass keep each activation within
    2^21 values (a 128-wide MLP gets 16,384 rows a pass), with the outputs of one whole pass."""
    torch.manual_seed(0)
    net = TabM(4, 1, "binary", k=32, n_blocks=1, d_block=512).eval()
    x, codes = torch.randn(1300, 4), torch.zeros(1300, 0, dtype=torch.int64)
    with torch.no_grad():
        whole = net(x).squeeze(-1)
    passes: list[int] = []
    net.register_forward_hook(lambda module, args, out: passes.append(len(args[0])))
    assert torch.allclose(network_outputs(net, x, codes), whole, atol=1e-5)
    assert passes == [128] * 10 + [20]


def test_training_validates_tabm_in_chunks_that_bound_its_activations(tmp_path: Path) -> None:
    """The validation split (750 rows) reaches TabM's 32 x 512 members 128 rows at a time, as
    evaluate does; a 128-wide MLP still gets it in one chunk. (Without numeric embeddings: with
    them the input can be the widest layer, and the chunk follows it.)"""
    from mlpflow.config.compose import resolve_data_defaults
    from mlpflow.data.prepared import load_meta
    from mlpflow.stages import prepare, train

    chunks = {}
    for model in ("tabm", "mlp"):
        cfg = make_cfg(
            tmp_path / model, f"model={model}", "data=synthetic", "data.n_samples=5000",
            "model.numeric_embedding.kind=none", tracking=False,
        )  # fmt: skip
        prepare.run(cfg)
        meta = load_meta(cfg.paths.prepared)
        resolve_data_defaults(cfg, meta.task, meta.rows["train"])
        datamodule = train.build_datamodule(cfg)
        train.build_module(cfg, meta, datamodule)
        chunks[model] = [len(y) for _, _, y, _ in datamodule.val_dataloader()]
    assert chunks == {"tabm": [128] * 5 + [110], "mlp": [750]}


def test_a_saturated_member_keeps_the_mean_finite() -> None:
    from mlpflow.model.tabm import member_mean

    members = torch.tensor([[[200.0], [-3.0]], [[-200.0], [0.0]]])  # [N=2, k=2, 1]
    combined = member_mean(members, "binary")
    expected = torch.sigmoid(members).mean(dim=1)
    assert torch.isfinite(combined).all()
    torch.testing.assert_close(torch.sigmoid(combined), expected)


@pytest.mark.parametrize("n_outputs", [1, 3])
def test_the_output_layers_compute_what_tabms_linear_ensemble_computes(n_outputs: int) -> None:
    torch.manual_seed(0)
    ours, theirs = OutputLayers(16, n_outputs, k=4), tabm.LinearEnsemble(16, n_outputs, k=4)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(8, 4, 16)
    inputs = [x.clone().requires_grad_(), x.clone().requires_grad_()]
    outputs = [layer(inp) for layer, inp in zip([ours, theirs], inputs, strict=True)]
    torch.testing.assert_close(outputs[0], outputs[1])
    for out in outputs:
        (out * torch.arange(out.numel()).view_as(out)).sum().backward()  # a gradient per output
    torch.testing.assert_close(inputs[0].grad, inputs[1].grad)
    torch.testing.assert_close(ours.weight.grad, theirs.weight.grad)
    torch.testing.assert_close(ours.bias.grad, theirs.bias.grad)


def test_training_minimizes_the_mean_of_the_members_losses(tmp_path: Path) -> None:
    """One training step's logged data loss is the members' losses averaged (the loss of each
    member on the batch, then the mean over members), not the loss of their mean."""
    cfg = make_cfg(tmp_path, *SMALL, "model.dropout=0.0", "trainer.max_epochs=1", tracking=False)
    module = MLPModule(
        n_features=5, n_outputs=1, task="binary", model=dict(cfg.model),
        loss={"_target_": "mlpflow.model.losses.BinaryCrossEntropy"},
        regularization={"l1": 0.0, "l2": 0.0, "include_bias": False},
        optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.0},
        scheduler={}, monitor={"metric": "val/loss", "mode": "min"}, batch_size=64,
    )  # fmt: skip
    x, y = torch.randn(64, 5), torch.randint(0, 2, (64,))
    seen = []
    module._step_optimizer = seen.append  # the loss handed to the optimizer
    module._epoch_sums = torch.zeros(3)
    module.training_step((x, torch.zeros(64, 0, dtype=torch.long), y, None), 0)
    members = module.net.train()(x, None).squeeze(-1)  # lr 0: the weights did not move
    bce = BinaryCrossEntropy("binary")
    per_member = torch.stack([bce(members[:, m], y.float()) for m in range(4)])
    torch.testing.assert_close(seen[0], per_member.mean())
    assert not torch.isclose(seen[0], bce(module.net.eval()(x, None).squeeze(-1), y.float()))


@pytest.mark.slow
def test_model_tabm_trains_from_a_csv_and_the_served_model_predicts_what_evaluate_scored(
    tmp_path: Path,
) -> None:
    """`python -m mlpflow.train data=csv ... model=tabm`, as a user runs it, with its recipe."""
    x, y = load_breast_cancer(return_X_y=True, as_frame=True)
    x.assign(diagnosis=y).to_csv(tmp_path / "cancer.csv", index=False)
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    command = [
        "python", "-m", "mlpflow.train", "data=csv", f"data.path={tmp_path / 'cancer.csv'}",
        "data.target=diagnosis", *SMALL, "trainer.max_epochs=3", f"tracking.uri={store}",
        f"hydra.run.dir={tmp_path / 'run'}", "callbacks.progress_bar=null",
        "evaluate.importance=false",
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]

    client = MlflowClient(store)
    (run,) = client.search_runs([client.get_experiment_by_name("mlpflow").experiment_id])
    assert run.data.params["model.name"] == "tabm"
    assert run.data.params["optimizer.name"] == "adamw"  # the recipe came with model=tabm
    assert float(run.data.params["optimizer.clip_grad_norm"]) == 1.0

    (prepared,) = (tmp_path / "data" / "cache").glob("csv-*")
    weights = load_weights(best_checkpoint(tmp_path / "run" / "models"))
    network = weights.network()
    # the recipe's numbers enter through piecewise-linear embeddings fitted on train
    assert isinstance(network.numeric_embedding, PiecewiseLinearEmbeddings)
    x_test, y_test = load_split(prepared, "test")
    outputs = network_outputs(
        network,
        torch.from_numpy(x_test),
        torch.from_numpy(load_codes(prepared, "test")),
    )
    evaluated = network_scores(outputs, weights.spec).numpy()
    with use_tracking_uri(store):
        served = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    predictions: pd.DataFrame = served.predict(raw_rows(prepared))
    np.testing.assert_allclose(predictions["proba_1"], evaluated, atol=1e-5)
    metrics = json.loads((tmp_path / "run" / "reports" / "metrics.json").read_text())
    assert metrics["test"]["roc_auc"] == pytest.approx(
        roc_auc_score(y_test, predictions["proba_1"]), abs=1e-6
    )

    # its requirements add the `tabm` package, and they are all it needs besides the MLP's
    with use_tracking_uri(store):
        local = Path(mlflow.artifacts.download_artifacts(f"runs:/{run.info.run_id}/model"))
    requirements = (local / "requirements.txt").read_text().split()
    assert requirements == export.requirements(["tabm"]) != export.requirements()
    raw_rows(prepared).to_csv(tmp_path / "rows.csv", index=False)
    blocked = json.dumps(uninstalled_modules(requirements))
    script = [
        sys.executable,
        "-c",
        AS_IF_UNINSTALLED,
        blocked,
        str(local),
        str(tmp_path / "rows.csv"),
    ]
    loaded = subprocess.run(script, env=subprocess_env(), capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert "tabm" in json.loads(loaded.stdout.splitlines()[-1])
