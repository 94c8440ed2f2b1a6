"""The contenders `train_throughput.py` times against mlpflow: hand-written PyTorch loops and
scikit-learn's MLPClassifier, on the arrays mlpflow's prepare stage wrote.

Every network is MLP [128, 64] relu -> 1 logit, BCE on the logit, Adam lr 1e-3, minibatch
`batch`, reshuffled every epoch. With categorical columns the plain loop does what a
hand-written tabular MLP does: one `nn.Embedding` per column, of the size mlpflow picks
(`embedding_size`), concatenated with the numeric features.
"""

from __future__ import annotations

import warnings

import clock
import numpy as np
import torch
from torch import Tensor, nn

SEED = 42


def mlp(n_inputs: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(n_inputs, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 1)
    )


class EmbeddedMLP(nn.Module):
    """Numeric features joined with one embedding lookup per categorical column."""

    def __init__(self, n_numeric: int, cardinalities: list[int]) -> None:
        from mlpflow.model.embeddings import embedding_size

        super().__init__()
        self.embeddings = nn.ModuleList(
            nn.Embedding(levels, embedding_size(levels)) for levels in cardinalities
        )
        self.layers = mlp(n_numeric + sum(e.embedding_dim for e in self.embeddings))

    def forward(self, x: Tensor, codes: Tensor) -> Tensor:
        parts = [x, *(embedding(codes[:, j]) for j, embedding in enumerate(self.embeddings))]
        return self.layers(torch.cat(parts, dim=1))


def plain_loop(
    x: Tensor, codes: Tensor, y: Tensor, test: tuple[Tensor, Tensor],
    epochs: int, batch: int, fused: bool, cardinalities: list[int],
    val: tuple[Tensor, Tensor, Tensor] | None = None,
) -> tuple[list[float], np.ndarray]:  # fmt: skip
    """Seconds of each of `epochs` epochs of minibatch Adam, and the test scores. With `val`,
    every epoch ends as mlpflow's does: the val split scored and its loss and metrics computed."""
    torch.manual_seed(SEED)
    model = EmbeddedMLP(x.shape[1], cardinalities) if cardinalities else mlp(x.shape[1])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True if fused else None)
    loss_fn = nn.BCEWithLogitsLoss()
    y = y.to(torch.float32)
    n = len(y)
    validate = Validation(model, loss_fn, val) if val is not None else None
    laps = [clock.now()]
    for _ in range(epochs):
        order = torch.randperm(n)
        xs, cs, ys = x[order], codes[order], y[order]
        for i in range(0, n, batch):
            outputs = forward(model, xs[i : i + batch], cs[i : i + batch], cardinalities)
            loss = loss_fn(outputs, ys[i : i + batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if validate is not None:
            validate(cardinalities)
        laps.append(clock.now())
    with torch.no_grad():
        scores = torch.sigmoid(forward(model, *test, cardinalities)).numpy()
    return list(np.diff(laps)), scores


def forward(model: nn.Module, x: Tensor, codes: Tensor, cardinalities: list[int]) -> Tensor:
    """The network's logit vector [N]."""
    return (model(x, codes) if cardinalities else model(x)).squeeze(-1)


class Validation:
    """The end of a hand-written epoch that validates: the val split's logits without autograd,
    its loss, and the metrics mlpflow computes (the same torchmetrics collection)."""

    def __init__(self, model: nn.Module, loss_fn: nn.Module, val: tuple[Tensor, ...]) -> None:
        from mlpflow.model.metrics import build_metrics

        self.model, self.loss_fn = model, loss_fn
        self.x, self.codes, self.y = val
        self.metrics = build_metrics("binary", 2)

    def __call__(self, cardinalities: list[int]) -> None:
        with torch.no_grad():
            outputs = forward(self.model, self.x, self.codes, cardinalities)
            self.loss_fn(outputs, self.y.to(torch.float32))
            self.metrics.update(torch.sigmoid(outputs), self.y)
        self.metrics.compute()
        self.metrics.reset()


def sklearn_classifier(epochs: int, batch: int):
    from sklearn.neural_network import MLPClassifier

    return MLPClassifier(
        hidden_layer_sizes=(128, 64),
        activation="relu",
        solver="adam",
        learning_rate_init=1e-3,
        alpha=0.0,  # no L2 penalty, like the others (sklearn's default is 1e-4)
        batch_size=batch,
        max_iter=epochs,
        shuffle=True,
        early_stopping=False,
        tol=0.0,
        n_iter_no_change=10**9,
        random_state=SEED,
    )


def sklearn_mlp(x, y, x_test, epochs: int, batch: int) -> tuple[float, np.ndarray, str]:
    """MLPClassifier.fit: seconds, test scores and the weights' dtype."""
    from sklearn.exceptions import ConvergenceWarning

    clf = sklearn_classifier(epochs, batch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = clock.now()
        clf.fit(x, y)
        seconds = clock.now() - start
    return seconds, clf.predict_proba(x_test)[:, 1], str(clf.coefs_[0].dtype)


def sklearn_epochs(x, y, epochs: int, batch: int) -> list[float]:
    """Seconds of each epoch of the same MLPClassifier, one `partial_fit` (= one epoch) each."""
    clf = sklearn_classifier(epochs, batch)
    classes = np.unique(y)
    laps = []
    for _ in range(epochs):
        start = clock.now()
        clf.partial_fit(x, y, classes=classes)
        laps.append(clock.now() - start)
    return laps
