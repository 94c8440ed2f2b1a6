"""The house rules the code keeps: layers that point one way (import-linter's contract in
pyproject.toml), no import cycle inside a package, stage deps by package folder, and no
reference to a file outside the repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import yaml

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "mlpflow"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(src: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=REPO, env=env, capture_output=True, text=True
    )


def test_layers_point_one_way() -> None:
    result = lint_imports(REPO / "src")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Layers point one way KEPT" in result.stdout


def test_an_import_against_the_layers_breaks_the_contract(tmp_path: Path) -> None:
    """The contract is not vacuous: data importing model (a layer above it) is reported."""
    src = tmp_path / "src"
    shutil.copytree(REPO / "src", src, ignore=shutil.ignore_patterns("__pycache__"))
    text = src / "mlpflow" / "data" / "text.py"
    text.write_text(text.read_text() + "\nfrom mlpflow.model import outputs  # noqa\n")
    result = lint_imports(src)
    assert result.returncode != 0
    assert "Layers point one way BROKEN" in result.stdout
    assert "mlpflow.data.text -> mlpflow.model.outputs" in result.stdout


def test_no_import_cycle_inside_a_package() -> None:
    graph = grimp.build_graph("mlpflow")
    cycles = [
        (importer, imported)
        for importer in sorted(graph.modules)
        for imported in graph.find_modules_directly_imported_by(importer)
        if importer.rpartition(".")[0] == imported.rpartition(".")[0]
        and graph.chain_exists(imported=importer, importer=imported)
    ]
    assert cycles == []


def test_dvc_stages_depend_on_source_folders_and_list_no_plot_files() -> None:
    pipeline = yaml.safe_load((REPO / "dvc.yaml").read_text())
    for name, stage in pipeline["stages"].items():
        sources = [dep for dep in stage["deps"] if dep.startswith("src/")]
        assert sources and all((REPO / dep).is_dir() for dep in sources), name
    # evaluate declares the plots it wrote (reports/dvc.yaml, from plot_specs: test_dvc_plots.py);
    # a fixed list here names files some tasks never write, which `dvc plots show` calls failures
    assert "plots" not in pipeline


def test_nothing_cites_a_file_outside_the_repository() -> None:
    found = subprocess.run(
        ["git", "grep", "-l", "-e", "DESIGN" + ".md", "-e", "../" + "shared"],
        cwd=REPO,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert found == []
