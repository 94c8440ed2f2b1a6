"""model.numeric_embedding: the piecewise-linear bins fitted on the train split only, and every
kind trained, evaluated and served from the checkpoint alone (docs/math.md, section 2)."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from rtdl_num_embeddings import compute_bins

from mlpflow.data.prepared import load_meta, load_split
from mlpflow.model.checkpoint import best_checkpoint, load_weights
from mlpflow.model.embeddings import fit_bins
from mlpflow.serving import export
from mlpflow.stages import evaluate, prepare, train

from conftest import evaluate_scores, make_cfg
from mlflow_helpers import raw_rows

PLE = ["model.numeric_embedding.kind=piecewise_linear", "model.numeric_embedding.n_bins=16"]


def test_piecewise_linear_bins_are_fitted_on_the_train_split_only(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path, *PLE, tracking=False)
    prepare.run(cfg)
    meta = load_meta(cfg.paths.prepared)
    module = train.build_module(cfg, meta, train.build_datamodule(cfg))
    n = meta.numeric.n_continuous
    splits = {s: load_split(cfg.paths.prepared, s)[0][:, :n] for s in ("train", "val", "test")}
    on_train = [edges.tolist() for edges in compute_bins(torch.from_numpy(splits["train"]), 16)]
    assert module.hparams.bins == on_train and len(on_train) == n == 30
    every_row = compute_bins(torch.from_numpy(np.concatenate(list(splits.values()))), 16)
    assert module.hparams.bins != [edges.tolist() for edges in every_row]


@pytest.mark.filterwarnings("ignore:.*has just two bin edges")  # compute_bins, called here
def test_a_column_constant_on_train_gets_one_bin_and_the_others_their_quantiles() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3)).astype(np.float32)
    x[:, 1] = 0.5
    x[:, 2] = x[:, 2] > 0  # two distinct values: one bin
    bins = fit_bins({"kind": "piecewise_linear", "n_bins": 8}, x)
    expected = compute_bins(torch.from_numpy(x[:, [0, 2]]), 8)
    assert bins == [expected[0].tolist(), [-0.5, 1.5], [0.0, 1.0]]
    assert len(bins[0]) == 9
    assert fit_bins({"kind": "piecewise_linear", "n_bins": 48}, x[:20]) is not None  # 19 bins


@pytest.mark.parametrize(
    "overrides",
    [
        ["model.numeric_embedding.kind=periodic", "model.numeric_embedding.n_frequencies=8"],
        [*PLE, "model.numeric_embedding.activation=true"],
        ["model=tabm", "model.k=4", "model.d_block=32", "model.n_blocks=2", *PLE],
    ],
    ids=["mlp-periodic", "mlp-piecewise_linear", "tabm-piecewise_linear"],
)
def test_each_kind_trains_and_the_served_model_predicts_what_evaluate_scored(
    tmp_path: Path, overrides: list[str]
) -> None:
    """The served model rebuilds the network from its checkpoint alone (the bins included) and
    scores raw rows as evaluate scores the prepared test split."""
    cfg = make_cfg(tmp_path, *overrides, "model.numeric_embedding.d_embedding=4",
                   "trainer.max_epochs=3", "evaluate.importance=false",
                   tracking=False)  # fmt: skip
    prepare.run(cfg)
    train.run(cfg)
    metrics = evaluate.run(cfg)
    assert metrics["test/roc_auc"] > 0.9
    spec = load_weights(best_checkpoint(cfg.paths.models)).spec
    kind = cfg.model.numeric_embedding.kind
    assert (spec.bins is not None) == (kind == "piecewise_linear")
    assert spec.model["numeric_embedding"]["kind"] == kind
    scores = evaluate_scores(cfg)
    export.save_model(best_checkpoint(cfg.paths.models), cfg.paths.prepared, tmp_path / "model")
    served = mlflow.pyfunc.load_model(str(tmp_path / "model"))
    probability = served.predict(raw_rows(Path(cfg.paths.prepared)))["proba_benign"]  # class 1
    np.testing.assert_allclose(probability, scores, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("data", "n_samples", "kind"),
    [("breast_cancer", None, "none"), ("synthetic", 800, "piecewise_linear")],
)
def test_the_default_embeds_a_table_with_enough_train_rows_and_its_run_says_so(
    tmp_path: Path, data: str, n_samples: int | None, kind: str
) -> None:
    """kind=auto (the default): breast cancer's 398 train rows stay as they are, a table of 560
    train rows is embedded piecewise-linearly; the run's param and the checkpoint name the kind
    that trained, not `auto`."""
    sized = [f"data.n_samples={n_samples}", "data.n_features=6"] if n_samples else []
    cfg = make_cfg(tmp_path, f"data={data}", *sized, "trainer.max_epochs=1")
    assert cfg.model.numeric_embedding.kind == "auto"
    prepare.run(cfg)
    report = train.run(cfg)
    spec = load_weights(best_checkpoint(cfg.paths.models)).spec
    assert spec.model["numeric_embedding"]["kind"] == kind
    assert (spec.bins is not None) == (kind == "piecewise_linear")
    params = mlflow.MlflowClient(cfg.tracking.uri).get_run(report["run_id"]).data.params
    assert params["model.numeric_embedding.kind"] == kind
