"""Reading a training checkpoint safely, without Lightning or MLflow (evaluate, predict, export).

`weights_only=True` admits tensors and plain containers only: a crafted file that would run code
on a plain `torch.load` is refused instead.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from mlpflow.errors import ModelError, first_line
from mlpflow.model.mlp import MLP

# What a Lightning checkpoint's hyper_parameters must hold to rebuild the network and its outputs.
NETWORK_HPARAMS = (
    "n_features",
    "n_outputs",
    "task",
    "model",
    "threshold",
    "target_mean",
    "target_scale",
)


def load_weights(path: str | Path) -> dict[str, Any]:
    """`hyper_parameters` and the network's `state_dict`; a ModelError for anything else."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as error:
        raise ModelError(f"checkpoint not found: {path}") from error
    except pickle.UnpicklingError as error:
        raise ModelError(
            f"refusing to load {path}: it holds Python objects besides tensors and plain "
            "containers (not an mlpflow checkpoint; it may be malicious)"
        ) from error
    except (RuntimeError, OSError, EOFError, ValueError) as error:
        raise ModelError(f"cannot read checkpoint {path}: {first_line(error)}") from error
    hparams = payload.get("hyper_parameters") if isinstance(payload, dict) else None
    if (
        not isinstance(hparams, dict)
        or not isinstance(payload.get("state_dict"), dict)
        or any(key not in hparams for key in NETWORK_HPARAMS)
    ):
        raise ModelError(
            f"{path} is not an mlpflow checkpoint (no network hyper_parameters/state_dict); "
            "pass the best.ckpt that `mlpflow train` or `dvc repro` wrote"
        )
    return {
        "hyper_parameters": hparams,
        "state_dict": {k: v for k, v in payload["state_dict"].items() if k.startswith("net.")},
    }


def network_weights(weights: dict[str, Any]) -> dict[str, Any]:
    """What serving needs of `load_weights`' result: the network, not the training setup."""
    hparams = {key: weights["hyper_parameters"][key] for key in NETWORK_HPARAMS}
    return {"hyper_parameters": hparams, "state_dict": weights["state_dict"]}


def build_network(weights: dict[str, Any]) -> MLP:
    """The network of `load_weights`' result, weights loaded, in eval mode."""
    hparams = weights["hyper_parameters"]
    net = MLP(hparams["n_features"], hparams["n_outputs"], **hparams["model"])
    net.load_state_dict({k.removeprefix("net."): v for k, v in weights["state_dict"].items()})
    return net.eval()
