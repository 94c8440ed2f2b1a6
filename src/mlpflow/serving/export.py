"""Package a checkpoint + its prepared data's meta.json as an MLflow pyfunc model.

`log_model` logs it once per training run (train calls it with the best checkpoint);
`save_model` writes the same model to a local directory (predict uses it for a bare .ckpt);
`log_ensemble` logs the fold models of a cross-validation as one model.
The model is built from code (`model_code.py`) with the mlpflow package shipped alongside
(`code_paths`), so it loads without pickles and without mlpflow installed; its requirements
are given explicitly, so MLflow does not load the model to infer them.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from collections.abc import Iterable
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.models import ModelSignature, infer_signature
from mlflow.types import ColSpec, Schema
from mlflow.types.schema import AnyType

from mlpflow.data.prepared import META_FILE, Meta, load_meta
from mlpflow.model.checkpoint import load_weights
from mlpflow.serving.pyfunc import FoldEnsemble, Predictor, member_artifacts
from mlpflow.serving.registry import MODEL_NAME
from mlpflow.tracking.store import use_tracking_uri

if TYPE_CHECKING:
    from mlflow.models.model import ModelInfo
    from pytorch_lightning.loggers import MLFlowLogger

EXAMPLE_ROWS = 5
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the mlpflow package, shipped with the model
ENTRY_FILE = PACKAGE_DIR / "serving" / "model_code.py"
# What the model's import chain (model_code.py) needs, all of it: scikit-learn rebuilds the fitted
# numeric transform, rtdl_num_embeddings builds the numeric embeddings; no Hydra, Lightning,
# torchmetrics or rich (tests/test_model_env.py).
REQUIREMENTS = ("mlflow", "torch", "numpy", "pandas", "scikit-learn", "rtdl_num_embeddings")
# ...and what a network other than the MLP builds its layers with (model/network.py)
NETWORK_REQUIREMENTS = {"tabm": ("tabm",)}


def requirements(networks: Iterable[str] = ()) -> list[str]:
    """The packages that serve networks of these `model.name`s, pinned to what is installed;
    local build tags (torch's +cpu) dropped, pip matches them."""
    names = [*REQUIREMENTS]
    for network in sorted(set(networks)):
        names += NETWORK_REQUIREMENTS.get(network, ())
    return [f"{name}=={version(name).split('+')[0]}" for name in names]


def raw_example(meta: Meta) -> pd.DataFrame:
    """The first rows' raw cells, as prepare read them: the model's input example.

    When the model imputes, its numeric and boolean columns are double (0/1, NaN: a float), so
    that a missing cell in an integer or boolean column fits the signature.
    """
    frame = pd.DataFrame(meta.example)
    if meta.numeric.medians is None:  # rows the model takes: no missing number or date
        imputed = ("numeric", "boolean", "date")
        needed = [column.name for column in meta.columns if column.role in imputed]
        complete = frame[needed].notna().all(axis=1)
        frame = frame[complete] if complete.any() else frame
    frame = frame.head(EXAMPLE_ROWS).reset_index(drop=True)
    numbers = {"numeric", "boolean"} if meta.numeric.medians is not None else set()
    for column in meta.columns:
        if column.role in numbers and column.dtype not in ("string", "large_string"):
            frame[column.name] = frame[column.name].astype(np.float64)
    return frame


Member = tuple[str | Path, str | Path]  # a network: its checkpoint and its prepared directory


def _model_kwargs(members: list[Member], workdir: Path) -> dict:
    """Everything pyfunc's save_model/log_model need for one network, or for a fold ensemble
    of several; artifact files are written to `workdir`."""
    artifacts: dict[str, str] = {}
    predictors = []
    for index, (checkpoint, prepared_dir) in enumerate(members):
        weights, meta = load_weights(checkpoint), load_meta(prepared_dir)
        predictors.append(Predictor(weights, meta))
        names = ("weights", "meta") if len(members) == 1 else member_artifacts(index)
        weights_file, meta_file = workdir / f"{names[0]}.pt", workdir / f"{names[1]}.json"
        torch.save(weights.serving_payload(), weights_file)
        shutil.copyfile(Path(prepared_dir) / META_FILE, meta_file)
        artifacts.update({names[0]: str(weights_file), names[1]: str(meta_file)})
    predictor = predictors[0] if len(members) == 1 else FoldEnsemble(predictors)
    example = raw_example(predictor.meta)
    with warnings.catch_warnings():  # integer columns may hold no NaN: true, the model refuses NaN
        warnings.filterwarnings("ignore", message=".*Integer columns in Python cannot represent")
        signature = infer_signature(example, predictor.predict(example))
    # Every input column is required (prepare read them all); a cell of one may be missing.
    # Every column takes any type: the model reads each cell by meaning (a number as int, float
    # or text in the table's format, a level as text, number, Timestamp or pandas category),
    # and MLflow would refuse all but one (an int64 column for a double, a NaN for a long).
    specs = [ColSpec(AnyType(), spec.name, required=True) for spec in signature.inputs.inputs]
    return {
        "python_model": str(ENTRY_FILE),
        "artifacts": artifacts,
        "code_paths": [str(PACKAGE_DIR)],
        "signature": ModelSignature(Schema(specs), signature.outputs),
        "input_example": example,
        "pip_requirements": requirements(p.spec.model.get("name", "mlp") for p in predictors),
    }


def log_model(
    logger: MLFlowLogger, checkpoint: str | Path, prepared_dir: str | Path, step: int = 0
) -> ModelInfo:
    """Log the model into the logger's (finished) run, as the run's MLflow 3 LoggedModel, at
    `step` (the best checkpoint's epoch)."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        use_tracking_uri(logger.experiment.tracking_uri),
        # The active run gives the model its experiment; status and end time are set again.
        mlflow.start_run(run_id=logger.run_id),
    ):
        kwargs = _model_kwargs([(checkpoint, prepared_dir)], Path(tmp))
        return mlflow.pyfunc.log_model(name=MODEL_NAME, step=step, **kwargs)


def log_ensemble(uri: str, run_id: str, members: list[Member]) -> ModelInfo:
    """Log the fold ensemble of `members` into the cross-validation run `run_id`, as its
    MLflow 3 LoggedModel."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        use_tracking_uri(uri),
        mlflow.start_run(run_id=run_id),
    ):
        kwargs = _model_kwargs(members, Path(tmp))
        return mlflow.pyfunc.log_model(name=MODEL_NAME, **kwargs)


def save_model(checkpoint: str | Path, prepared_dir: str | Path, path: str | Path) -> None:
    """Write the model to the local directory `path` (which must not exist or be empty)."""
    with tempfile.TemporaryDirectory() as tmp:
        kwargs = _model_kwargs([(checkpoint, prepared_dir)], Path(tmp))
        mlflow.pyfunc.save_model(str(path), **kwargs)
