"""The logged model outside the training environment: it imports only what its own
requirements.txt installs, and loads and predicts raw rows in a virtualenv built from that file
alone (mlflow models serve --env-manager virtualenv, build-docker and serving platforms do so).
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from mlpflow.cli import main
from mlpflow.serving import export

from conftest import make_cfg, subprocess_env

# What the dev environment has and a served model must never need (the issue named them).
NEVER = ("omegaconf", "hydra", "torchmetrics", "rich", "pytorch_lightning", "lightning",
         "lightning_utilities", "matplotlib")  # fmt: skip


@dataclass(frozen=True)
class Logged:
    model_dir: Path  # the logged model's files, downloaded
    run_id: str
    uri: str
    rows: Path  # raw rows as a user's CSV holds them


def table(n: int = 240, seed: int = 0) -> pd.DataFrame:
    """An int, a float with missing cells and a text categorical column with missing cells."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "count": rng.integers(0, 50, n),
            "size": rng.normal(size=n),
            "color": rng.choice(["red", "green", "blue"], n),
        }
    )
    frame["y"] = frame["count"] / 10 + 2 * frame["size"] + (frame["color"] == "red") > 3
    frame["y"] = frame["y"].astype(int)
    frame.loc[::7, "size"] = np.nan
    frame.loc[3::11, "color"] = None
    return frame


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Logged:
    """A model logged by train on data=csv, as a user's run logs it, and its files."""
    import mlflow

    from mlpflow.serving.registry import model_uri
    from mlpflow.stages import prepare, train
    from mlpflow.tracking.store import open_store, use_tracking_uri

    root = tmp_path_factory.mktemp("model_env")
    table().to_csv(root / "table.csv", index=False)
    cfg = make_cfg(
        root,
        "data=csv",
        f"data.path={root / 'table.csv'}",
        "data.target=y",
        "data.numeric_transform=quantile",  # scikit-learn's transform, rebuilt when it loads
        "data.min_category_count=1",
        "trainer.max_epochs=2",
    )
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        prepare.run(cfg)
        run_id = train.run(cfg)["run_id"]
        uri = str(cfg.tracking.uri)
        with use_tracking_uri(uri):
            model_dir = mlflow.artifacts.download_artifacts(
                model_uri(open_store(uri), run_id), dst_path=str(root / "downloaded")
            )
    rows = pd.DataFrame(
        {
            "count": [3, 41, np.nan, 8, 25],
            "size": [0.5, np.nan, -1.25, 2.0, 0.0],
            "color": ["red", "blue", None, "purple", "green"],  # missing, and a level not seen
        }
    )
    rows.to_csv(root / "rows.csv", index=False)
    return Logged(Path(model_dir), run_id, uri, root / "rows.csv")


def requirement_closure(requirements: list[str]) -> set[str]:
    """The distributions pip installs for `requirements`: them and their dependencies, as this
    environment's metadata declares them (extras left out)."""
    todo, seen = [Requirement(line) for line in requirements], set()
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in seen or (requirement.marker and not requirement.marker.evaluate({"extra": ""})):
            continue
        try:
            todo.extend(Requirement(line) for line in md.requires(name) or [])
        except md.PackageNotFoundError:
            continue
        seen.add(name)
    return seen


def uninstalled_modules(requirements: list[str]) -> list[str]:
    """Top-level modules installed here that a virtualenv from `requirements` would not have
    (mlpflow itself travels with the model as code)."""
    allowed = requirement_closure(requirements)
    return sorted(
        module
        for module, dists in md.packages_distributions().items()
        if module != "mlpflow" and not any(canonicalize_name(d) in allowed for d in dists)
    )


# Loads the model and predicts with every module the model's environment lacks uninstalled:
# importing one raises ModuleNotFoundError, as it would there. Prints the top-level modules used.
AS_IF_UNINSTALLED = """
import importlib.abc, json, sys

blocked = set(json.loads(sys.argv[1]))


class Uninstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, Uninstalled())
import mlflow.pyfunc
import pandas as pd

model = mlflow.pyfunc.load_model(sys.argv[2])
model.predict(pd.read_csv(sys.argv[3]))
print(json.dumps(sorted({name.partition(".")[0] for name in sys.modules})))
"""


def test_the_model_imports_only_what_its_requirements_install(logged: Logged):
    requirements = (logged.model_dir / "requirements.txt").read_text().split()
    assert requirements == export.requirements()
    blocked = uninstalled_modules(requirements)
    assert {"omegaconf", "hydra", "torchmetrics", "rich"} <= set(blocked)  # the dev env has them
    script = [sys.executable, "-c", AS_IF_UNINSTALLED, json.dumps(blocked)]
    result = subprocess.run(
        [*script, str(logged.model_dir), str(logged.rows)],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    used = json.loads(result.stdout.splitlines()[-1])
    assert "mlpflow" in used and "torch" in used and "sklearn" in used
    # In the closure (mlflow depends on matplotlib) but never on the serving path:
    assert not set(used) & set(NEVER), sorted(set(used) & set(NEVER))


PREDICT = """
import sys
import mlflow.pyfunc
import pandas as pd

model = mlflow.pyfunc.load_model(sys.argv[1])
model.predict(pd.read_csv(sys.argv[2])).to_csv(sys.argv[3], index=False)
print(sys.modules["mlpflow"].__file__)  # the copy the model carries (code_paths)
"""


def pip(venv: Path, *args: str) -> None:
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-compile", *args],
        env={k: v for k, v in subprocess_env().items() if k != "VIRTUAL_ENV"},
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, f"pip install {' '.join(args)}:\n{result.stderr[-3000:]}"


@pytest.mark.slow
def test_the_logged_model_predicts_in_a_virtualenv_from_its_own_requirements(
    logged: Logged, tmp_path: Path, capsys
):
    """As `mlflow models serve --env-manager virtualenv` builds it: torch the way the README
    installs it (TORCH_INDEX as make takes it), then the model's requirements.txt; no mlpflow."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    requirements = logged.model_dir / "requirements.txt"
    (torch,) = [line for line in requirements.read_text().split() if line.startswith("torch==")]
    index = os.environ.get("TORCH_INDEX")  # as `make setup` takes it, e.g. a CPU wheel index
    pip(venv, torch, *(("--index-url", index) if index else ()))
    pip(venv, "-r", str(requirements))
    python = str(venv / "bin" / "python")
    installed = subprocess.run(
        [python, "-m", "pip", "list", "--format=json"], capture_output=True, text=True, check=True
    )
    names = {canonicalize_name(p["name"]) for p in json.loads(installed.stdout)}
    # What made the model fail to load here; matplotlib comes in with mlflow, unused.
    assert not names & {"mlpflow", "omegaconf", "hydra-core", "torchmetrics", "pytorch-lightning"}
    cuda = sorted(name for name in names if name.startswith("nvidia-"))
    assert not cuda, f"pip chose a CUDA torch ({cuda}): set TORCH_INDEX to a CPU wheel index"

    served = tmp_path / "venv.csv"
    result = subprocess.run(
        [python, "-c", PREDICT, str(logged.model_dir), str(logged.rows), str(served)],
        env={k: v for k, v in subprocess_env().items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")},
        cwd=tmp_path,  # not the repo: nothing of mlpflow importable but the model's own copy
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert Path(result.stdout.splitlines()[-1]).is_relative_to(logged.model_dir)

    expected = tmp_path / "cli.csv"
    argv = ["predict", "--model", logged.run_id, "--uri", logged.uri]
    main([*argv, "--input", str(logged.rows), "--output", str(expected)])
    capsys.readouterr()
    ours, theirs = pd.read_csv(expected), pd.read_csv(served)
    assert list(theirs.columns) == ["label", "proba_0", "proba_1"] and len(theirs) == 5
    pd.testing.assert_frame_equal(theirs, ours)
