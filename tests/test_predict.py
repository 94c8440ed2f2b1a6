"""`mlpflow register` and `mlpflow predict`: aliases, three model sources that agree, and bad
input that gets one line and writes nothing."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from mlflow import MlflowClient

from mlpflow.cli import main

from mlflow_helpers import Exploit, Trained, raw_rows, trained_runs


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return trained_runs(tmp_path_factory)


@pytest.fixture(scope="session")
def champion(trained: Trained) -> str:
    """`mlpflow register RUN --name bc --alias champion`, once."""
    main(["register", trained.run_id, "--name", "bc", "--alias", "champion", "--uri", trained.uri])
    return "models:/bc@champion"


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The CLI sets these (setdefault) in its own process; keep them out of the test process.
    monkeypatch.setenv("MLFLOW_LOGGING_LEVEL", "WARNING")
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@pytest.fixture
def rows_csv(trained: Trained, tmp_path: Path) -> Path:
    path = tmp_path / "rows.csv"
    raw_rows(trained.prepared).to_csv(path, index=False)
    return path


def fails(capsys: pytest.CaptureFixture, *argv: str) -> str:
    """Run the CLI expecting a user error: exit code 2 and exactly one line on stderr."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def test_register_sets_alias_and_lineage_tags(trained: Trained, champion: str):
    client = MlflowClient(trained.uri)
    version = client.get_model_version_by_alias("bc", "champion")
    run = client.get_run(trained.run_id)
    assert version.run_id == trained.run_id
    assert version.tags["git.commit"] == run.data.tags["mlflow.source.git.commit"]
    assert version.tags["data.fingerprint"] == run.data.tags["data.fingerprint"]
    assert version.tags["config.hash"] == run.data.tags["config.hash"]
    assert version.current_stage == "None"  # aliases, not the deprecated stages


def test_registry_model_run_id_and_checkpoint_predict_the_same(
    trained: Trained, champion: str, rows_csv: Path, tmp_path: Path, capsys
):
    outputs = {}
    for name, model in (
        ("registry", champion),
        ("run", trained.run_id),
        ("checkpoint", str(trained.checkpoint)),
    ):
        out = tmp_path / f"{name}.csv"
        main(
            [
                *("predict", "--model", model, "--input", str(rows_csv), "--output", str(out)),
                *("--uri", trained.uri, "--prepared", str(trained.prepared)),
            ]
        )
        assert f"wrote 86 predictions to {out}" in capsys.readouterr().out
        outputs[name] = pd.read_csv(out)
    assert list(outputs["registry"].columns) == ["label", "proba_malignant", "proba_benign"]
    assert len(outputs["registry"]) == len(pd.read_csv(rows_csv))
    pd.testing.assert_frame_equal(outputs["registry"], outputs["run"])
    pd.testing.assert_frame_equal(outputs["registry"], outputs["checkpoint"], atol=1e-6)


def test_the_store_given_wins_over_mlflows_global_uri(trained: Trained, rows_csv, tmp_path):
    """Lightning's MLFlowLogger sets MLflow's global tracking URI (and env) to its own store."""
    from mlpflow.tracking.store import use_tracking_uri

    out = tmp_path / "preds.csv"
    with use_tracking_uri(f"sqlite:///{tmp_path / 'elsewhere.db'}"):
        main(
            [
                "register",
                trained.run_id,
                "--name",
                "bc-global",
                "--alias",
                "a",
                "--uri",
                trained.uri,
            ]
        )
        main(
            [
                *("predict", "--model", "models:/bc-global@a", "--uri", trained.uri),
                *("--input", str(rows_csv), "--output", str(out)),
            ]
        )
    assert len(pd.read_csv(out)) == len(pd.read_csv(rows_csv))


def test_an_alias_moves_to_the_newest_registration(trained: Trained):
    def register(run_id: str, *alias: str) -> None:
        main(["register", run_id, "--name", "bc-moving", *alias, "--uri", trained.uri])

    client = MlflowClient(trained.uri)
    register(trained.other_run_id)
    register(trained.run_id, "--alias", "best")
    assert client.get_model_version_by_alias("bc-moving", "best").version == 2
    register(trained.other_run_id, "--alias", "best")
    best = client.get_model_version_by_alias("bc-moving", "best")
    assert (best.version, best.run_id) == (3, trained.other_run_id)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("0123456789abcdef0123456789abcdef", "run 0123456789abcdef0123456789abcdef not found"),
        ("models:/no-such-model@champion", "no registered model 'no-such-model'"),
        ("models:/bc@no-such-alias", "has no alias 'no-such-alias' (aliases: champion (v1))"),
        ("models:/bc/99", "model not found: models:/bc/99"),
        ("not-a-model", "cannot resolve model 'not-a-model'"),
    ],
)
def test_unknown_model_references_get_one_line(
    trained: Trained, champion: str, rows_csv: Path, tmp_path: Path, capsys, model, message
):
    out = tmp_path / "preds.csv"
    argv = ["predict", "--model", model, "--input", str(rows_csv), "--output", str(out)]
    assert message in fails(capsys, *argv, "--uri", trained.uri)
    assert not out.exists()


def test_register_unknown_run_gets_one_line(trained: Trained, capsys):
    err = fails(capsys, "register", "f" * 32, "--name", "x", "--uri", trained.uri)
    assert f"run {'f' * 32} not found" in err


def test_a_store_that_does_not_exist_is_not_created(tmp_path: Path, capsys):
    uri = f"sqlite:///{tmp_path / 'missing.db'}"
    assert "no MLflow store at" in fails(capsys, "register", "f" * 32, "--name", "x", "--uri", uri)
    assert not (tmp_path / "missing.db").exists()


def bad_csv(rows_csv: Path, kind: str) -> Path:
    frame = pd.read_csv(rows_csv)
    if kind == "missing":
        frame = frame.drop(columns=["mean radius", "worst area"])
    elif kind == "extra":
        frame.insert(0, "patient_id", range(len(frame)))
    else:
        frame["mean radius"] = "large"
    path = rows_csv.with_name(f"{kind}.csv")
    frame.to_csv(path, index=False)
    return path


def test_a_csv_without_a_model_column_names_the_expected_columns(
    trained: Trained, champion: str, rows_csv: Path, tmp_path: Path, capsys
):
    out = tmp_path / "preds.csv"
    argv = ["predict", "--model", champion, "--input", str(bad_csv(rows_csv, "missing"))]
    err = fails(capsys, *argv, "--output", str(out), "--uri", trained.uri)
    assert "missing: mean radius, worst area" in err
    assert "expected 30 columns: mean radius, mean texture," in err
    assert "worst fractal dimension" in err
    assert not out.exists()


def test_extra_columns_are_ignored_and_stray_text_cells_are_missing(
    trained: Trained, champion: str, rows_csv: Path, tmp_path: Path, capsys
):
    expected = tmp_path / "expected.csv"
    main(["predict", "--model", champion, "--input", str(rows_csv), "--output", str(expected),
          "--uri", trained.uri])  # fmt: skip
    capsys.readouterr()
    for kind, warning in (
        ("extra", "ignoring column(s) the model does not read: patient_id"),
        ("dtype", f"{len(pd.read_csv(rows_csv))} cell(s) of column 'mean radius' are not numbers"),
    ):
        out = tmp_path / f"{kind}.csv"
        argv = ["predict", "--model", champion, "--input", str(bad_csv(rows_csv, kind))]
        main([*argv, "--output", str(out), "--uri", trained.uri])
        assert warning in capsys.readouterr().err
        predictions = pd.read_csv(out)
        assert len(predictions) == len(pd.read_csv(rows_csv))
        if kind == "extra":  # the same rows: the same predictions
            pd.testing.assert_frame_equal(predictions, pd.read_csv(expected))


def test_integer_valued_columns_are_accepted_as_doubles(
    trained: Trained, champion: str, rows_csv: Path, tmp_path: Path
):
    frame = pd.read_csv(rows_csv)
    frame["mean area"] = frame["mean area"].round().astype(int)  # pandas reads it back as int64
    frame.to_csv(tmp_path / "ints.csv", index=False)
    out = tmp_path / "preds.csv"
    main(
        [
            *("predict", "--model", champion, "--input", str(tmp_path / "ints.csv")),
            *("--output", str(out), "--uri", trained.uri),
        ]
    )
    assert len(pd.read_csv(out)) == len(frame)


def test_a_malicious_checkpoint_on_the_command_line(trained: Trained, rows_csv, tmp_path, capsys):
    marker = tmp_path / "pwned"
    torch.save({"state_dict": {}, "hyper_parameters": Exploit(marker)}, tmp_path / "evil.ckpt")
    out = tmp_path / "preds.csv"
    err = fails(
        capsys,
        *("predict", "--model", str(tmp_path / "evil.ckpt"), "--input", str(rows_csv)),
        *("--output", str(out), "--prepared", str(trained.prepared)),
    )
    assert "refusing to load" in err
    assert not marker.exists() and not out.exists()


def test_a_checkpoint_with_other_prepared_data_is_refused(trained, rows_csv, tmp_path, capsys):
    from mlpflow.stages import prepare

    from conftest import make_cfg

    wine = make_cfg(tmp_path, "experiment=wine", tracking=False)
    prepare.run(wine)
    out = tmp_path / "preds.csv"
    err = fails(
        capsys,
        *("predict", "--model", str(trained.checkpoint), "--input", str(rows_csv)),
        *("--output", str(out), "--prepared", wine.paths.prepared),
    )
    assert "was not trained on this prepared data" in err
