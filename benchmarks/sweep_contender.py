"""A hand-written Optuna search over the learning rate, in one process: the contender of
`sweep_overhead.py`.

    python benchmarks/sweep_contender.py --store sqlite:///runs.db --storage sqlite:///optuna.db

What a user writes instead of `python -m mlpflow.train -m` with the Optuna sweeper, doing what an
mlpflow trial does on the default config: breast cancer split 70/15/15 as prepare splits it
(scikit-learn's stratified `train_test_split`, test first, seed 42), standardized on train with
mlpflow's soft clip; MLP [128, 64] relu with one logit, BCE, fused Adam, minibatches of 32
reshuffled each epoch, at most 50 epochs with early stopping on val loss (patience 10) and the
best epoch's weights kept; each epoch's train loss, val loss and val ROC AUC logged to MLflow and
reported to Optuna (TPE seeded 42, mlpflow's MedianPruner); test loss, ROC AUC and accuracy; the
model logged with `mlflow.pytorch.log_model`, an input example and pinned requirements. Each
trial is a run nested under one parent run, in the SQLite store `--store`.
"""

from __future__ import annotations

import argparse
import copy
import math
from importlib.metadata import version

import mlflow
import numpy as np
import optuna
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from torch import nn

SEED = 42
BATCH = 32
REQUIREMENTS = [f"{name}=={version(name).split('+')[0]}" for name in ("mlflow", "torch", "numpy")]

Split = tuple[torch.Tensor, torch.Tensor]


def splits() -> dict[str, Split]:
    """Train, val and test as float32 tensors: standardized on train, then soft-clipped."""
    x, y = load_breast_cancer(return_X_y=True)
    n_out = math.ceil(0.15 * len(y))
    rest, test = train_test_split(np.arange(len(y)), test_size=n_out, random_state=SEED, stratify=y)
    train, val = train_test_split(rest, test_size=n_out, random_state=SEED, stratify=y[rest])
    scaler = StandardScaler().fit(x[train])

    def tensors(rows: np.ndarray) -> Split:
        z = scaler.transform(x[rows])
        z = z / np.sqrt(1 + (z / 3) ** 2)
        return torch.tensor(z, dtype=torch.float32), torch.tensor(y[rows], dtype=torch.float32)

    return {"train": tensors(train), "val": tensors(val), "test": tensors(test)}


def network(n_inputs: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(n_inputs, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 1)
    )


def evaluate(model: nn.Module, data: Split) -> tuple[float, np.ndarray]:
    x, y = data
    with torch.no_grad():
        logits = model(x).squeeze(1)
        loss = nn.functional.binary_cross_entropy_with_logits(logits, y)
    return float(loss), torch.sigmoid(logits).numpy()


def objective(trial: optuna.Trial, data: dict[str, Split], epochs: int, patience: int) -> float:
    lr = trial.suggest_float("lr", 1e-4, 3e-2, log=True)
    torch.manual_seed(SEED)
    x, y = data["train"]
    model = network(x.shape[1])
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    loss_fn = nn.BCEWithLogitsLoss()
    best, best_state, waited = math.inf, None, 0
    with mlflow.start_run(run_name=f"trial-{trial.number}", nested=True):
        mlflow.log_params({"lr": lr, "hidden_dims": "[128, 64]", "batch_size": BATCH})
        for epoch in range(epochs):
            model.train()
            total = 0.0
            for rows in torch.randperm(len(y)).split(BATCH):
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(model(x[rows]).squeeze(1), y[rows])
                loss.backward()
                optimizer.step()
                total += float(loss) * len(rows)
            model.eval()
            val_loss, scores = evaluate(model, data["val"])
            val_auc = roc_auc_score(data["val"][1].numpy(), scores)
            mlflow.log_metrics(
                {"train/loss": total / len(y), "val/loss": val_loss, "val/roc_auc": val_auc},
                step=epoch,
            )
            if val_loss < best:
                best, best_state, waited = val_loss, copy.deepcopy(model.state_dict()), 0
            else:
                waited += 1
            trial.report(val_loss, epoch)
            if trial.should_prune():
                mlflow.set_tag("pruned", epoch)
                raise optuna.TrialPruned()
            if waited >= patience:
                break
        model.load_state_dict(best_state)
        test_loss, scores = evaluate(model, data["test"])
        y_test = data["test"][1].numpy()
        mlflow.log_metrics(
            {
                "val/best_loss": best,
                "test/loss": test_loss,
                "test/roc_auc": roc_auc_score(y_test, scores),
                "test/accuracy": accuracy_score(y_test, scores > 0.5),
            }
        )
        mlflow.pytorch.log_model(
            model,
            name="model",
            input_example=data["test"][0][:5].numpy(),
            pip_requirements=REQUIREMENTS,
        )
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True, help="MLflow tracking URI (sqlite:///...)")
    parser.add_argument("--storage", required=True, help="Optuna storage URL (sqlite:///...)")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--patience", type=int, default=10)
    args = parser.parse_args()
    mlflow.set_tracking_uri(args.store)
    mlflow.set_experiment("contender")
    data = splits()
    study = optuna.create_study(
        study_name="contender",
        storage=args.storage,
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=SEED),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=3),
    )
    with mlflow.start_run(run_name="sweep"):
        study.optimize(
            lambda trial: objective(trial, data, args.epochs, args.patience),
            n_trials=args.trials,
        )
        mlflow.log_metric("val/best_loss", study.best_value)
        mlflow.log_params({f"best.{key}": value for key, value in study.best_params.items()})


if __name__ == "__main__":
    main()
