"""matplotlib, set up once for every PNG mlpflow draws (evaluate's figures and importance chart,
a sweep's optimization history, `mlpflow compare`): the Agg backend, chosen before pyplot is
imported, because the stages run headless (DVC, CI, queued experiments); and one resolution."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

DPI = 100

__all__ = ["DPI", "Axes", "plt", "saved_figure"]


@contextmanager
def saved_figure(path: str | Path, size: tuple[float, float]) -> Iterator[tuple[Figure, Axes]]:
    """A figure of `size` inches and its axes to draw on; saved to `path` at DPI when the block
    ends without an error, and always closed."""
    fig, ax = plt.subplots(figsize=size, dpi=DPI)
    try:
        yield fig, ax
        fig.savefig(path, dpi=DPI)
    finally:
        plt.close(fig)
