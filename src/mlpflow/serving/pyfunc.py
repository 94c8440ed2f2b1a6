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
from mlpflow.model.checkpoint import Weights, load_weights
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
    """Raw rows -> class probabilities and labels, or regression values."""

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

    @property
    def output_columns(self) -> list[str]:
        if self.meta.task == "regression":
            return [PREDICTION]
        return [LABEL, *(f"{PROBA_PREFIX}{name}" for name in self.meta.classes or [])]

    def predict(self, rows: pd.DataFrame) -> pd.DataFrame:
        x, codes = network_inputs(self.meta, rows, self.estimator)
        outputs = network_outputs(self.net, torch.from_numpy(x), torch.from_numpy(codes))
        scores = network_scores(outputs, self.spec).double().numpy()
        if self.meta.task == "regression":
            return pd.DataFrame({PREDICTION: scores}, index=rows.index)
        proba = class_probabilities(self.meta.task, scores)
        labels = predicted_labels(self.meta.task, scores, self.spec.threshold)
        classes = np.asarray(self.meta.classes, dtype=object)
        frame = pd.DataFrame(proba, columns=self.output_columns[1:], index=rows.index)
        frame.insert(0, LABEL, classes[labels])
        return frame


class MLPModel(PythonModel):
    """The pyfunc wrapper MLflow loads and serves; artifacts: `weights` (.pt) and `meta` (JSON)."""

    def load_context(self, context: PythonModelContext) -> None:
        meta = Meta.from_json(Path(context.artifacts["meta"]).read_text())
        self.predictor = Predictor(load_weights(context.artifacts["weights"]), meta)

    def predict(
        self, context: PythonModelContext, model_input: pd.DataFrame, params: dict | None = None
    ) -> pd.DataFrame:
        return self.predictor.predict(model_input)
