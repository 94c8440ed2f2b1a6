"""The trained network as an MLflow pyfunc model that takes raw rows.

The model carries the preprocessing prepare fitted on train (meta.json: column roles, text
parsing, imputation, the numeric transform, vocabularies) and the network as plain tensors;
nothing is unpickled when it loads (the weights go through `torch.load(weights_only=True)`, the
model itself is built from code by `model_code.py`). It imports only what its requirements
(`export.REQUIREMENTS`) install: no Hydra, Lightning, torchmetrics, rich or matplotlib.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from mlflow.pyfunc import PythonModel, PythonModelContext

from mlpflow.data.prepared import Meta
from mlpflow.errors import ModelError
from mlpflow.model.checkpoint import Weights, labelling_threshold, load_weights
from mlpflow.model.outputs import (
    class_probabilities,
    network_outputs,
    network_scores,
    predicted_labels,
)
from mlpflow.serving.raw_rows import network_inputs

LABEL = "label"
PREDICTION = "prediction"
PROBA_PREFIX = "proba_"


class Predictor:
    """Raw rows -> class probabilities and labels, or regression values, of one network."""

    def __init__(self, weights: Weights, meta: Meta) -> None:
        spec = weights.spec
        if spec.n_features != meta.n_features or spec.task != meta.task:
            raise ModelError(
                f"the checkpoint ({spec.task}, {spec.n_features} features) was not "
                f"trained on this prepared data ({meta.task}, {meta.n_features} features); "
                "pass the prepared directory it was trained on"
            )
        self.spec, self.meta = spec, meta
        self.net = weights.network()
        self.estimator = meta.numeric.estimator() if meta.numeric.n_continuous else None

    def scores(self, rows: pd.DataFrame) -> np.ndarray:
        """The network's scores (`mlpflow.model.outputs`' convention) on raw rows."""
        x, codes = network_inputs(self.meta, rows, self.estimator)
        outputs = network_outputs(self.net, torch.from_numpy(x), torch.from_numpy(codes))
        return network_scores(outputs, self.spec).double().numpy()

    def predict(self, rows: pd.DataFrame) -> pd.DataFrame:
        return scores_frame(self.meta, self.spec.threshold, self.scores(rows), rows.index)


class FoldEnsemble:
    """The fold models of a cross-validation as one model: each row goes through each fold's
    own preprocessing and network, and their scores are averaged (class probabilities, or
    predictions in target units). A classifier's label is the averaged score's, by the
    members' `labelling_threshold`."""

    def __init__(self, members: list[Predictor]) -> None:
        first = members[0]
        for member in members[1:]:
            if member.meta.task != first.meta.task or member.meta.classes != first.meta.classes:
                raise ModelError("the fold models disagree on the task or its classes")
        self.members, self.meta, self.spec = members, first.meta, first.spec
        self.threshold = labelling_threshold(member.spec for member in members)

    def predict(self, rows: pd.DataFrame) -> pd.DataFrame:
        scores = np.mean([member.scores(rows) for member in self.members], axis=0)
        return scores_frame(self.meta, self.threshold, scores, rows.index)


def output_columns(meta: Meta) -> list[str]:
    """The model's output columns: `prediction`, or `label` and one `proba_<class>` per class."""
    if meta.task == "regression":
        return [PREDICTION]
    return [LABEL, *(f"{PROBA_PREFIX}{name}" for name in meta.classes or [])]


def scores_frame(meta: Meta, threshold: float, scores: np.ndarray, index: pd.Index) -> pd.DataFrame:
    """Scores as the model's output table (`output_columns`)."""
    if meta.task == "regression":
        return pd.DataFrame({PREDICTION: scores}, index=index)
    proba = class_probabilities(meta.task, scores)
    labels = predicted_labels(meta.task, scores, threshold)
    classes = np.asarray(meta.classes, dtype=object)
    frame = pd.DataFrame(proba, columns=output_columns(meta)[1:], index=index)
    frame.insert(0, LABEL, classes[labels])
    return frame


def member_artifacts(index: int) -> tuple[str, str]:
    """The artifact names of a fold ensemble's member `index`: its weights and its meta."""
    return f"fold_{index}_weights", f"fold_{index}_meta"


class MLPModel(PythonModel):
    """The pyfunc wrapper MLflow loads and serves. Artifacts: `weights` (.pt) and `meta` (JSON)
    of one network, or `fold_<i>_weights` and `fold_<i>_meta` of each member of a fold
    ensemble."""

    def load_context(self, context: PythonModelContext) -> None:
        artifacts = context.artifacts
        if "weights" in artifacts:
            self.predictor = load_predictor(artifacts["weights"], artifacts["meta"])
            return
        members, index = [], 0
        while (names := member_artifacts(index))[0] in artifacts:
            members.append(load_predictor(*(artifacts[name] for name in names)))
            index += 1
        self.predictor = FoldEnsemble(members)

    def predict(
        self, context: PythonModelContext, model_input: pd.DataFrame, params: dict | None = None
    ) -> pd.DataFrame:
        return self.predictor.predict(model_input)


def load_predictor(weights: str | Path, meta: str | Path) -> Predictor:
    return Predictor(load_weights(weights), Meta.from_json(Path(meta).read_text()))
