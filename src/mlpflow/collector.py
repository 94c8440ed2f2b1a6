"""The garbage collector's thresholds in mlpflow's own processes (the console script, the Hydra
entry). Such a process imports torch, Lightning, MLflow, scikit-learn and matplotlib: ~650k
objects that live as long as it does. At CPython's default thresholds (700, 10, 10) the collector
runs ~2,000 times in one training run, and each full collection walks that whole heap again:
~3 s of a default breast-cancer run's 18-20 s of CPU (benchmarks/README.md). Young collections
70x rarer still free every cycle, a finished trial's network included, in a third of that time,
at the same peak memory. Never set on import: a process that imports mlpflow as a library (a
served model) keeps its own."""

from __future__ import annotations

import gc

# allocations between young collections; young collections per middle one; middle per full one
THRESHOLDS = (50_000, 20, 20)


def collect_less_often() -> None:
    gc.set_threshold(*THRESHOLDS)
