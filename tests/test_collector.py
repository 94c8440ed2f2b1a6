"""mlpflow's own processes collect garbage at mlpflow's thresholds, set before their heavy
imports; importing mlpflow as a library leaves the host process's thresholds alone."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

from mlpflow.collector import THRESHOLDS

from conftest import subprocess_env

DEFAULT = str(gc.get_threshold())  # this test process's: CPython's own


def python(code: str, cwd: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_the_hydra_entry_sets_the_thresholds_before_it_imports_the_pipeline(tmp_path) -> None:
    # The pipeline's import brings torch, Lightning and MLflow: a stand-in pipeline records the
    # thresholds in force when it is imported and when its main is called (nothing trains).
    shown = python(
        "import gc, importlib.abc, importlib.util, runpy, sys\n"
        "class StandIn(importlib.abc.MetaPathFinder, importlib.abc.Loader):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'mlpflow.stages.pipeline':\n"
        "            return importlib.util.spec_from_loader(name, self)\n"
        "    def exec_module(self, module):\n"
        "        print('import', gc.get_threshold())\n"
        "        module.main = lambda: print('main', gc.get_threshold())\n"
        "sys.meta_path.insert(0, StandIn())\n"
        "print('start', gc.get_threshold())\n"
        "runpy.run_module('mlpflow.train', run_name='__main__')\n",
        tmp_path,
    )
    assert str(THRESHOLDS) != DEFAULT
    assert shown.splitlines() == [
        f"start {DEFAULT}",
        f"import {THRESHOLDS}",
        f"main {THRESHOLDS}",
    ]


def test_the_console_script_sets_the_thresholds_and_a_library_import_does_not(tmp_path) -> None:
    shown = python(
        "import gc\n"
        "import mlpflow.cli, mlpflow.serving.pyfunc\n"
        "print(gc.get_threshold())\n"
        "mlpflow.cli.main(['compose', '--output', 'params.yaml'])\n"
        "print(gc.get_threshold())\n",
        tmp_path,
    )
    assert str(THRESHOLDS) != DEFAULT
    assert shown.splitlines() == [DEFAULT, "wrote params.yaml", str(THRESHOLDS)]
