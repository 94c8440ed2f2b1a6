"""Permutation importance in evaluate: on a table with planted informative columns (one numeric,
one categorical) among noise, the planted ones rank first and the noise stays near zero."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow import MlflowClient
from omegaconf import DictConfig

from mlpflow.config.compose import compose
from mlpflow.config.schema import MAIN_METRIC, validate
from mlpflow.data.prepared import load_codes, load_meta, load_split
from mlpflow.errors import ConfigError
from mlpflow.evaluation.importance import (
    MAX_ROWS,
    Member,
    column_groups,
    main_metric,
    permutation_importance,
)
from mlpflow.model.checkpoint import Weights, load_weights
from mlpflow.model.metrics import build_metrics
from mlpflow.model.outputs import network_outputs, network_scores
from mlpflow.stages import evaluate, prepare, train

from conftest import make_cfg

PLANTED = {"signal", "group"}
NOISE = {"noise_a", "noise_b", "gappy", "color", "flag"}
GROUP_EFFECT = {"g0": -2.5, "g1": -1.0, "g2": 0.0, "g3": 1.0, "g4": 2.5}


def planted_table(n: int = 2400, seed: int = 0) -> pd.DataFrame:
    """A binary target driven by `signal` (numeric, a few cells missing) and `group` (text
    levels); the other columns are noise of every kind prepare meets."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "signal": rng.normal(size=n),
            "group": rng.choice(list(GROUP_EFFECT), n),
            "noise_a": rng.normal(size=n),
            "noise_b": rng.uniform(-3, 3, n),
            "gappy": rng.normal(size=n),
            "color": rng.choice(["red", "green", "blue", "black"], n),
            "flag": rng.choice(["yes", "no"], n),
        }
    )
    logit = 2.5 * frame["signal"] + frame["group"].map(GROUP_EFFECT)
    frame["label"] = np.where(logit + rng.logistic(size=n) > 0, "pos", "neg")
    frame.loc[::30, "signal"] = np.nan  # signal gets a missing indicator: one group, two features
    frame.loc[::7, "gappy"] = np.nan
    return frame


def evaluated_cfg(root: Path, *overrides: str) -> DictConfig:
    data = root / "table.csv"
    keys = [f"data.path={data}", "data.target=label", "trainer.max_epochs=8"]
    return make_cfg(root, "data=csv", *keys, "callbacks.early_stopping=null", *overrides)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> DictConfig:
    """One model trained on the planted table, then evaluated with the defaults."""
    root = tmp_path_factory.mktemp("importance")
    planted_table().to_csv(root / "table.csv", index=False)
    cfg = evaluated_cfg(root)
    prepare.run(cfg)
    train.run(cfg)
    evaluate.run(cfg)
    return cfg


def importance_rows(cfg: DictConfig) -> list[dict[str, float | str]]:
    payload = json.loads((Path(cfg.paths.reports) / "plots" / "importance.json").read_text())
    return payload["importance"]


def test_the_planted_columns_rank_first_and_the_noise_stays_near_zero(trained: DictConfig):
    rows = importance_rows(trained)
    by_column = {row["column"]: row for row in rows}
    assert set(by_column) == PLANTED | NOISE  # every raw column but the target, each once
    assert {rows[0]["column"], rows[1]["column"]} == PLANTED
    assert min(by_column[name]["importance"] for name in PLANTED) > 0.05  # test ROC AUC lost
    assert all(abs(by_column[name]["importance"]) < 0.02 for name in NOISE), rows
    assert [row["importance"] for row in rows] == sorted(
        (row["importance"] for row in rows), reverse=True
    )
    assert all(row["std"] >= 0 for row in rows)


def test_a_raw_column_is_permuted_with_its_missing_indicator_and_codes_as_a_whole(
    trained: DictConfig,
):
    meta = load_meta(trained.paths.prepared)
    groups = column_groups(meta)
    features = meta.numeric.features
    assert [features[i] for i in groups["signal"][0]] == ["signal", "signal_na"]
    assert [features[i] for i in groups["flag"][0]] == ["flag"]  # yes/no: a boolean feature
    assert groups["signal"][1] == [] and groups["flag"][1] == []
    assert groups["group"] == ([], [meta.categorical.names.index("group")])
    assert groups["color"] == ([], [meta.categorical.names.index("color")])


def test_importance_is_in_the_reports_and_the_mlflow_run(trained: DictConfig):
    reports = Path(trained.paths.reports)
    assert (reports / "figures" / "importance.png").read_bytes().startswith(b"\x89PNG")
    run_id = json.loads((reports / "train.json").read_text())["run_id"]
    client = MlflowClient(trained.tracking.uri)
    logged = {
        entry.path
        for folder in ("plots", "figures")
        for entry in client.list_artifacts(run_id, folder)
    }
    assert {"plots/importance.json", "figures/importance.png"} <= logged
    assert "importance" not in json.loads((reports / "metrics.json").read_text())["test"]


def split_tensors(cfg: DictConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x, y = (torch.from_numpy(array) for array in load_split(cfg.paths.prepared, "test"))
    return x, torch.from_numpy(load_codes(cfg.paths.prepared, "test")), y


def test_the_same_seed_gives_the_same_importances(trained: DictConfig):
    weights = load_weights(Path(trained.paths.models) / "best.ckpt")
    groups = column_groups(load_meta(trained.paths.prepared))
    repeats = trained.evaluate.importance_repeats
    x, codes, y = split_tensors(trained)
    members = [Member(weights, x, codes, groups)]
    again = permutation_importance(members, y, repeats, trained.seed)
    assert again == importance_rows(trained)  # what evaluate wrote, exactly
    other = permutation_importance(members, y, repeats, trained.seed + 1)
    assert other != again


def every_row_importance(members: list[Member], y: torch.Tensor, repeats: int, seed: int):
    """The importance by its definition: every permuted row through the network again."""
    (member,) = members
    weights, x, codes, groups = member.weights, member.x, member.codes, member.groups
    net, metric = weights.network(), main_metric(weights.spec.task, weights.spec.n_outputs)
    generator = torch.Generator().manual_seed(seed)
    baseline = metric(network_scores(network_outputs(net, x, codes), weights.spec), y)
    importances = {}
    for name, (x_index, c_index) in groups.items():
        drops = []
        for order in [torch.randperm(len(y), generator=generator) for _ in range(repeats)]:
            x_perm, codes_perm = x.clone(), codes.clone()
            x_perm[:, x_index], codes_perm[:, c_index] = (
                x[order][:, x_index],
                codes[order][:, c_index],
            )
            scores = network_scores(network_outputs(net, x_perm, codes_perm), weights.spec)
            drops.append(baseline - metric(scores, y))
        importances[name] = float(np.mean(drops))
    return importances


def test_rows_a_permutation_left_as_they_were_keep_their_score_and_are_not_run_again(
    trained: DictConfig,
):
    weights = load_weights(Path(trained.paths.models) / "best.ckpt")
    groups = column_groups(load_meta(trained.paths.prepared))
    x, codes, y = split_tensors(trained)
    members, repeats = [Member(weights, x, codes, groups)], 3
    rows_run = []
    original_network = Weights.network

    def counted_network(self: Weights) -> torch.nn.Module:
        net = original_network(self)
        net.register_forward_hook(lambda _module, args, _out: rows_run.append(len(args[0])))
        return net

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Weights, "network", counted_network)
        rows = permutation_importance(members, y, repeats, trained.seed)
    expected = every_row_importance(members, y, repeats, trained.seed)
    assert {row["column"]: row["importance"] for row in rows} == pytest.approx(expected, abs=1e-6)
    # the baseline's rows, then per column only the rows its permutations changed: about half
    # of the yes/no column's, a quarter of the 4-level column's, nearly all of a numeric one's
    assert sum(rows_run) < len(y) * repeats * len(groups)


def test_a_split_over_max_rows_is_measured_on_a_sample(trained: DictConfig):
    x, codes, y = split_tensors(trained)
    copies = MAX_ROWS // len(y) + 2  # the test rows, repeated past MAX_ROWS
    big = (x.repeat(copies, 1), codes.repeat(copies, 1), y.repeat(copies))
    weights = load_weights(Path(trained.paths.models) / "best.ckpt")
    groups = column_groups(load_meta(trained.paths.prepared))
    rows = permutation_importance([Member(weights, *big[:2], groups)], big[2], 2, trained.seed)
    assert {rows[0]["column"], rows[1]["column"]} == PLANTED


@pytest.mark.parametrize(
    ("task", "n_outputs"), [("binary", 1), ("multiclass", 4), ("regression", 1)]
)
def test_the_main_metric_is_the_tasks_metric_in_metrics_json(task: str, n_outputs: int):
    generator = torch.Generator().manual_seed(0)
    if task == "multiclass":
        scores = torch.rand(200, n_outputs, generator=generator).softmax(dim=1)
        y = torch.randint(0, n_outputs, (200,), generator=generator)
    else:
        scores = torch.rand(200, generator=generator)
        y = (scores + torch.rand(200, generator=generator) > 1).long()
        y = y.float() + scores if task == "regression" else y
    collection = build_metrics(task, max(2, n_outputs))
    collection.update(scores, y)
    expected = float(collection.compute()[MAIN_METRIC[task]])
    assert main_metric(task, n_outputs)(scores, y) == pytest.approx(expected)


def test_importance_false_writes_no_importance_files(trained: DictConfig, tmp_path: Path):
    cfg = copy.deepcopy(trained)
    cfg.paths.reports = str(tmp_path / "reports")
    (tmp_path / "reports").mkdir()
    shutil.copy(Path(trained.paths.reports) / "train.json", tmp_path / "reports")
    cfg.evaluate.importance = False
    cfg.tracking.enabled = False
    evaluate.run(cfg)
    assert (tmp_path / "reports" / "plots" / "roc.json").exists()
    assert not list((tmp_path / "reports").rglob("importance*"))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("evaluate.importance=maybe", "evaluate.importance='maybe' must be true or false"),
        ("evaluate.importance_repeats=0", "evaluate.importance_repeats=0 must be >= 1"),
        ("evaluate.importance_repeats=2.5", "evaluate.importance_repeats=2.5 must be an integer"),
    ],
)
def test_a_bad_importance_setting_is_a_one_line_config_error(override: str, message: str):
    with pytest.raises(ConfigError) as error:
        validate(compose([override]))
    assert str(error.value) == message
