"""`mlpflow predict`: raw rows (CSV or Parquet) -> predictions (CSV) from a registered model, a
run's model, a saved model directory or a bare checkpoint.

Every source goes through the same MLflow pyfunc model that `mlflow models serve` loads, so
the CLI and the server answer alike. The input is checked against the model's signature first:
a bad file gets one line naming the expected columns, and nothing is written.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
from mlflow.exceptions import MlflowException

from mlpflow.errors import MlpflowError, ModelError
from mlpflow.files import write_text
from mlpflow.serving.csv_rows import read_rows
from mlpflow.serving.export import save_model
from mlpflow.serving.registry import model_uri
from mlpflow.tracking.store import open_store, use_tracking_uri

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.pyfunc import PyFuncModel

    from mlpflow.data.prepared import Meta


def load_model(reference: str, uri: str, prepared_dir: str | Path) -> PyFuncModel:
    """The pyfunc model `reference` names: a local checkpoint or model directory, else a
    run id / runs:/ / models:/ URI looked up in the store at `uri`."""
    path = Path(reference)
    if path.is_file():
        with tempfile.TemporaryDirectory() as tmp:
            save_model(path, prepared_dir, Path(tmp) / "model")
            return _load(str(Path(tmp) / "model"))
    if path.is_dir():
        if not (path / "MLmodel").exists():
            raise ModelError(f"{path} is not an MLflow model directory (no MLmodel file)")
        return _load(str(path))
    resolved = model_uri(open_store(uri), reference)
    with use_tracking_uri(uri):  # models:/ and runs:/ resolve through the global URI
        return _load(resolved)


def _load(location: str) -> PyFuncModel:
    """mlflow.pyfunc.load_model; our own errors (e.g. an unsafe weights file) keep their line."""
    try:
        return mlflow.pyfunc.load_model(location)
    except MlflowException as error:
        cause = error.__cause__
        while cause is not None and not isinstance(cause, MlpflowError):
            cause = cause.__cause__
        if cause is not None:
            raise cause from error
        raise ModelError(f"cannot load {location}: {error.message.splitlines()[0]}") from error


def _meta(model: PyFuncModel) -> Meta | None:
    """An mlpflow model's meta.json (its columns' roles, how its training table wrote numbers);
    None for another kind of pyfunc model."""
    try:
        return model.unwrap_python_model().predictor.meta
    except (AttributeError, MlflowException):
        return None


def predict(
    reference: str, input_path: str | Path, output_path: str | Path, uri: str, prepared_dir: str
) -> pd.DataFrame:
    """Predict every row of `input_path`; write the predictions (same row order) as CSV."""
    model = load_model(reference, uri, prepared_dir)
    schema = model.metadata.get_input_schema()
    if schema is None:
        raise ModelError(f"{reference} has no input signature; log it with mlpflow train")
    predictions = model.predict(read_rows(input_path, schema, _meta(model)))
    write_text(output_path, predictions.to_csv(index=False))
    return predictions
