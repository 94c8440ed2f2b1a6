"""The default pipeline's results are pinned: a refactor that changes a number fails here.

tests/golden/default_pipeline.json holds what the default config (breast cancer, seed 42)
gives; the same code on the same machine reproduces it bit for bit. A deliberate change of a
default rewrites the file (and says so in its commit). The tolerance only absorbs float
differences between CPUs (other SIMD kernels), not a change of behaviour, which moves these
numbers by far more.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlpflow.stages import evaluate, prepare, train

GOLDEN = Path(__file__).parent / "golden" / "default_pipeline.json"


@pytest.mark.slow
def test_default_pipeline_gives_the_pinned_metrics(cfg_factory):
    cfg = cfg_factory(tracking=False)
    prepare.run(cfg)
    report = train.run(cfg)
    metrics = evaluate.run(cfg)
    golden = json.loads(GOLDEN.read_text())
    assert report["best_epoch"] == golden["best_epoch"]
    assert report["best_score"] == pytest.approx(golden["best_score"], rel=1e-4)
    assert metrics == pytest.approx(golden["test"], rel=1e-4, abs=1e-6)
