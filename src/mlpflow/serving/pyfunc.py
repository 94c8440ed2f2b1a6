"""The trained network as an MLflow pyfunc model that takes raw rows.

The model carries the train split's preprocessing (median imputation, standardization) from
meta.json and the network as plain tensors; nothing is unpickled when it loads (the network
weights go through `torch.load(weights_only=True)`, the model itself is built from code by
`model_code.py`). Imports stay light: no Lightning, no Hydra.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from mlflow.pyfunc import PythonModel, PythonModelContext

from mlpflow.data.prepared import Meta
from mlpflow.errors import DataError, ModelError
from mlpflow.evaluation.plots import predicted_labels
from mlpflow.evaluation.scoring import network_outputs, network_scores
from mlpflow.model.checkpoint import Weights, load_weights

LABEL = "label"
PREDICTION = "prediction"
PROBA_PREFIX = "proba_"


class Predictor:
    """Raw feature rows -> class probabilities and labels, or regression values."""

    def __init__(self, weights: Weights, meta: Meta) -> None:
        spec = weights.spec
        if spec.n_features != meta.n_features or spec.task != meta.task:
            raise ModelError(
                f"the checkpoint ({spec.task}, {spec.n_features} features) was not "
                f"trained on this prepared data ({meta.task}, {meta.n_features} features); "
                "pass the prepared directory it was trained on"
            )
        self.spec, self.meta = spec, meta
        self.features: list[str] = list(meta.feature_names)
        self.net = weights.network()
        self.mean = np.asarray(meta.scaler.mean, dtype=np.float64)
        self.scale = np.asarray(meta.scaler.scale, dtype=np.float64)
        self.medians = None if meta.imputer is None else np.asarray(meta.imputer.median)

    @property
    def output_columns(self) -> list[str]:
        if self.meta.task == "regression":
            return [PREDICTION]
        return [LABEL, *(f"{PROBA_PREFIX}{name}" for name in self.meta.classes or [])]

    def _inputs(self, rows: pd.DataFrame) -> np.ndarray:
        """The network's input: the feature columns imputed and standardized as on train."""
        missing = [name for name in self.features if name not in rows.columns]
        if missing:
            raise DataError(
                f"missing feature column(s) {', '.join(missing)}; "
                f"expected columns: {', '.join(self.features)}"
            )
        try:
            x = rows[self.features].to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError) as error:
            raise DataError(
                f"feature columns must be numeric ({error}); "
                f"expected columns: {', '.join(self.features)}"
            ) from error
        bad = ~np.isfinite(x)
        if bad.any():
            if self.medians is None:
                columns = [
                    name for name, b in zip(self.features, bad.any(axis=0), strict=True) if b
                ]
                raise DataError(
                    f"missing or infinite values in {int(bad.any(axis=1).sum())} row(s), columns "
                    f"{', '.join(columns)}; the model was trained with "
                    f"data.nan_policy={self.meta.nan_policy} and cannot impute them"
                )
            x = np.where(bad, self.medians, x)
        return ((x - self.mean) / self.scale).astype(np.float32)

    def predict(self, rows: pd.DataFrame) -> pd.DataFrame:
        outputs = network_outputs(self.net, torch.from_numpy(self._inputs(rows)))
        scores = network_scores(outputs, self.spec).double().numpy()
        if self.meta.task == "regression":
            return pd.DataFrame({PREDICTION: scores}, index=rows.index)
        binary = self.meta.task == "binary"
        proba = np.stack([1.0 - scores, scores], axis=1) if binary else scores
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
