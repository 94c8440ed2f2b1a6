"""The models directory's checkpoints, and reading one safely, without Lightning or MLflow
(evaluate, predict, export, train's report).

The layout lives here: `best.ckpt` (the best epoch; what evaluate and the logged model use) and
`last.ckpt` (what an interrupted run resumes from), written by the callbacks in conf/callbacks/
(`filename: best`, `filename: last`: config, checked against these names by a test); a CV
fold's `refit.ckpt` (cv.refit: its network retrained on all its training folds), written by
train. Every checkpoint is read with `weights_only=True`, which admits tensors and plain
containers only: a crafted file that would run code on a plain `torch.load` is refused instead.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mlpflow.errors import ModelError, first_line
from mlpflow.model.network import build_network

BEST_CHECKPOINT = "best.ckpt"
LAST_CHECKPOINT = "last.ckpt"
REFIT_CHECKPOINT = "refit.ckpt"


def best_checkpoint(models_dir: str | Path) -> Path:
    return Path(models_dir) / BEST_CHECKPOINT


def member_checkpoint(models_dir: str | Path) -> Path:
    """A CV fold's network in the ensemble and on its held-out rows: its refit when it was
    refitted (cv.refit), else its best checkpoint."""
    refit = Path(models_dir) / REFIT_CHECKPOINT
    return refit if refit.exists() else best_checkpoint(models_dir)


def last_checkpoint(models_dir: str | Path) -> Path:
    return Path(models_dir) / LAST_CHECKPOINT


@dataclass(frozen=True)
class NetworkSpec:
    """What rebuilds the network and gives its outputs a meaning (the checkpoint's
    hyper_parameters, as `MLPModule` saves them; `loss` only in a training checkpoint)."""

    n_features: int
    n_outputs: int
    task: str
    model: dict[str, Any]
    threshold: float  # binary: score > threshold is the positive class (evaluate.threshold)
    target_mean: float
    target_scale: float
    cardinalities: list[int] | None = None  # per categorical column: its level codes
    n_continuous: int = 0  # features that a numeric embedding may take (the first ones)
    loss: dict[str, Any] | None = None
    target_transform: dict[str, Any] | None = None  # TargetTransform.as_hparams; None: none
    bins: list[list[float]] | None = None  # piecewise-linear bin edges, fitted on train

    @classmethod
    def from_hparams(cls, hparams: dict[str, Any]) -> NetworkSpec:
        optional = {key: hparams[key] for key in OPTIONAL_HPARAMS if key in hparams}
        return cls(**{key: hparams[key] for key in NETWORK_HPARAMS}, **optional)


def labelling_threshold(networks: Iterable[NetworkSpec | float]) -> float:
    """The binary threshold that labels the mean score of these networks (one, or a fold
    ensemble), given as specs or as their thresholds: the mean of theirs. They share
    evaluate.threshold, or, with auto, each carries the one its own validation split chose."""
    thresholds = [n.threshold if isinstance(n, NetworkSpec) else n for n in networks]
    return thresholds[0] if len(set(thresholds)) == 1 else sum(thresholds) / len(thresholds)


OPTIONAL_HPARAMS = ("cardinalities", "n_continuous", "loss", "target_transform", "bins")
NETWORK_HPARAMS = tuple(n for n in NetworkSpec.__dataclass_fields__ if n not in OPTIONAL_HPARAMS)


@dataclass(frozen=True)
class Weights:
    """A trained network: its spec and its `net.` weights."""

    spec: NetworkSpec
    state_dict: dict[str, torch.Tensor]

    def network(self) -> nn.Module:
        """The network, weights loaded, in eval mode."""
        spec = self.spec
        net = build_network(
            spec.model, spec.n_features, spec.n_outputs, spec.task, spec.cardinalities,
            spec.n_continuous, spec.bins,
        )  # fmt: skip
        net.load_state_dict({k.removeprefix("net."): v for k, v in self.state_dict.items()})
        return net.eval()

    def serving_payload(self) -> dict[str, Any]:
        """What the pyfunc model ships (`torch.save`): the network, not the training setup."""
        hparams = {k: v for k, v in asdict(self.spec).items() if k != "loss"}
        return {"hyper_parameters": hparams, "state_dict": self.state_dict}


def read_checkpoint(path: str | Path) -> Any:
    """A checkpoint file's contents, on the CPU, tensors and plain containers only; a ModelError
    for a missing, unreadable or unsafe file."""
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as error:
        raise ModelError(f"checkpoint not found: {path}") from error
    except pickle.UnpicklingError as error:
        raise ModelError(
            f"refusing to load {path}: it holds Python objects besides tensors and plain "
            "containers (not an mlpflow checkpoint; it may be malicious)"
        ) from error
    except (RuntimeError, OSError, EOFError, ValueError) as error:
        raise ModelError(f"cannot read checkpoint {path}: {first_line(error)}") from error


def load_weights(path: str | Path) -> Weights:
    """The network of a checkpoint (or of a `serving_payload` file); a ModelError otherwise."""
    path = Path(path)
    payload = read_checkpoint(path)
    hparams = payload.get("hyper_parameters") if isinstance(payload, dict) else None
    if (
        not isinstance(hparams, dict)
        or not isinstance(payload.get("state_dict"), dict)
        or any(key not in hparams for key in NETWORK_HPARAMS)
    ):
        raise ModelError(
            f"{path} is not an mlpflow checkpoint (no network hyper_parameters/state_dict); "
            f"pass the {BEST_CHECKPOINT} that `mlpflow train` or `dvc repro` wrote"
        )
    state = {k: v for k, v in payload["state_dict"].items() if k.startswith("net.")}
    return Weights(NetworkSpec.from_hparams(hparams), state)
