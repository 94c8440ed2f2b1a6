"""LightningDataModule over the prepared splits, handing out chunks of whole minibatches.

A per-sample Dataset + DataLoader pays for __getitem__ and collate on every row; gathering a
chunk of a seeded permutation at once costs next to nothing. The features stay memory-mapped,
so a split larger than memory trains and setup copies nothing; targets (and row weights,
with data.weight) are loaded.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor

from mlpflow.data.prepared import (
    EVAL_CHUNK_ROWS,
    load_codes,
    load_meta,
    load_row_weights,
    load_split,
)

STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}


def target_tensor(y: np.ndarray, task: str) -> Tensor:
    """Class indices (int64) or float32 values, in memory (a memory-mapped y is copied)."""
    target_dtype = torch.float32 if task == "regression" else torch.int64
    return torch.as_tensor(np.array(y), dtype=target_dtype)


def take_rows(x: Tensor | np.ndarray, rows: Tensor) -> Tensor:
    """x[rows] as a tensor; from a (memory-mapped) numpy array, a gathered in-memory copy.

    `np.take` rather than `x[rows]`: a memmap's fancy indexing goes through its subclass hooks
    and costs several times the gather itself (benchmarks/README.md)."""
    if isinstance(x, Tensor):
        return x[rows]
    return torch.from_numpy(np.take(x, rows.numpy(), axis=0))


def slice_rows(x: Tensor | np.ndarray, start: int, stop: int) -> Tensor:
    """x[start:stop] as a tensor: a view of a tensor, a copy out of a numpy array."""
    if isinstance(x, Tensor):
        return x[start:stop]
    return torch.from_numpy(np.array(x[start:stop]))


class ShuffledChunks:
    """Iterable of (x, codes, y, w) chunks of `rows_per_chunk` rows; a fresh permutation every
    epoch. w: the chunk's row weights, None when the data is unweighted.

    The permutation is drawn from `seed + epoch()`, so an epoch's order does not depend on how
    many epochs ran before in this process (a resumed run sees the same batches). `x` and `codes`
    are tensors or numpy arrays (memory-mapped splits); each chunk is gathered on its own.
    """

    def __init__(
        self,
        x: Tensor | np.ndarray,
        codes: Tensor | np.ndarray,
        y: Tensor,
        rows_per_chunk: int,
        seed: int,
        epoch: Callable[[], int],
        shuffle: bool = True,
        shard: tuple[int, int] = (0, 1),
        weight: Tensor | None = None,
    ) -> None:
        self.x, self.codes, self.y, self.weight = x, codes, y, weight
        self.rows_per_chunk = rows_per_chunk
        self.seed, self.epoch, self.shuffle = seed, epoch, shuffle
        self.rank, self.world_size = shard

    def __len__(self) -> int:
        return math.ceil(self._rows() / self.rows_per_chunk)

    def _rows(self) -> int:
        """Rows this process sees: under data parallelism, an equal 1/world_size share."""
        return len(self.y) // self.world_size if self.world_size > 1 else len(self.y)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor | None]]:
        x, codes, y, w, step = self.x, self.codes, self.y, self.weight, self.rows_per_chunk
        if not (self.shuffle or self.world_size > 1):
            for start in range(0, len(y), step):
                stop = start + step
                weight = None if w is None else w[start:stop]
                yield (
                    slice_rows(x, start, stop),
                    slice_rows(codes, start, stop),
                    y[start:stop],
                    weight,
                )
            return
        generator = torch.Generator().manual_seed(self.seed + self.epoch())
        order = torch.randperm(len(y), generator=generator)
        if self.world_size > 1:  # the same permutation on every rank, a disjoint slice each
            order = order[self.rank : self._rows() * self.world_size : self.world_size]
        for start in range(0, len(order), step):
            rows = order[start : start + step]
            yield (
                take_rows(x, rows),
                take_rows(codes, rows),
                y[rows],
                None if w is None else w[rows],
            )


class TabularDataModule(pl.LightningDataModule):
    def __init__(
        self,
        prepared_dir: str | Path,
        batch_size: int,
        batches_per_step: int,
        seed: int,
        full_batch: bool = False,
    ) -> None:
        super().__init__()
        self.prepared_dir = Path(prepared_dir)
        self.meta = load_meta(self.prepared_dir)
        self.batch_size = batch_size
        self.batches_per_step = batches_per_step
        self.seed = seed
        self.full_batch = full_batch
        # Rows per validation/test chunk: the training stage sizes it to the network's widest
        # activation (model/outputs.py::eval_chunk_rows), which this module does not know.
        self.eval_rows = EVAL_CHUNK_ROWS
        self.splits: dict[str, tuple[np.ndarray, np.ndarray, Tensor]] = {}
        self.weights: dict[str, Tensor | None] = {}  # row weights per split; None: unweighted

    def __getstate__(self) -> dict:
        """Pickled (ddp_spawn's workers) without the splits: each process maps them itself
        in setup, rather than receiving a copy of the data."""
        return {**self.__dict__, "splits": {}, "weights": {}}

    @property
    def train_batch_size(self) -> int:
        """Minibatch size of one optimizer step (the whole train set for full-batch GD)."""
        if not self.full_batch:
            return self.batch_size
        return len(self.splits["train"][2]) if "train" in self.splits else self.meta.rows["train"]

    def train_on_val_too(self) -> None:
        """Append the val split's rows to train (in memory): a CV fold's refit on all its
        training folds. Validation still reads the val rows; nothing should stop on them."""
        self.setup("fit")
        (x, codes, y), (vx, vcodes, vy) = self.splits["train"], self.splits["val"]
        self.splits["train"] = (
            np.concatenate([x, vx]),
            np.concatenate([codes, vcodes]),
            torch.cat([y, vy]),
        )
        weight, val_weight = self.weights["train"], self.weights["val"]
        if weight is not None and val_weight is not None:
            self.weights["train"] = torch.cat([weight, val_weight])

    def setup(self, stage: str | None = None) -> None:
        """Open the splits the stage uses: evaluate never reads the (largest) train split.

        Features and codes stay memory-mapped (read-only, through the page cache); targets and
        row weights are loaded.
        """
        for split in STAGE_SPLITS.get(stage, ("train", "val", "test")):
            if split not in self.splits:
                x, y = load_split(self.prepared_dir, split, mmap=True)
                codes = load_codes(self.prepared_dir, split, mmap=True)
                self.splits[split] = (x, codes, target_tensor(y, self.meta.task))
                weight = load_row_weights(self.prepared_dir, split)
                self.weights[split] = None if weight is None else torch.from_numpy(weight)

    def target_stats(self) -> tuple[float, float]:
        """Mean and std of the train target (regression) after data.target_transform: the
        model learns the transformed target standardized."""
        if self.meta.task != "regression":
            return 0.0, 1.0
        y = self.meta.target_transform.forward(self.splits["train"][2])
        return float(y.mean()), float(y.std()) or 1.0

    def _current_epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def _shard(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> ShuffledChunks:
        rows = self.train_batch_size * (1 if self.full_batch else self.batches_per_step)
        return ShuffledChunks(
            *self.splits["train"],
            rows,
            self.seed,
            self._current_epoch,
            shard=self._shard(),
            weight=self.weights["train"],
        )

    def val_dataloader(self) -> ShuffledChunks:
        return self._in_order("val")

    def test_dataloader(self) -> ShuffledChunks:
        return self._in_order("test")

    def _in_order(self, split: str) -> ShuffledChunks:
        return ShuffledChunks(
            *self.splits[split],
            self.eval_rows,
            self.seed,
            int,
            shuffle=False,
            weight=self.weights[split],
        )
