"""`dvc plots show`: evaluate declares the plots it wrote (reports/dvc.yaml), so DVC loads every
declared file for any task, and the page it writes renders with no network (.dvc/config points
DVC at vendor/dvc_plots/template.html, which inlines the vega libraries DVC loads from a CDN).
The slow tests run the real pipeline and open the page in headless Chromium, network off."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

from mlpflow.evaluation.plot_specs import DVC_FILE, PLOTS, dvc_plots, write_dvc_plots
from mlpflow.evaluation.plots import write_plots

from conftest import REPO, copy_project, sh

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(os.environ.get("MLPFLOW_TEST_ARTIFACTS", REPO / "test-artifacts")) / "dvc_plots"
TASKS = {  # task: (mlpflow compose overrides, the plots evaluate writes)
    "binary": ([], {"roc", "precision_recall", "confusion", "calibration", "importance"}),
    "regression": (["experiment=diabetes"], {"predicted_vs_true", "importance"}),
}


def declared(reports: Path) -> list[str]:
    """The plot files reports/dvc.yaml declares, relative to reports/."""
    section = yaml.safe_load((reports / DVC_FILE).read_text())
    return [next(iter(entry)) for entry in section["plots"]]


def template_path() -> Path:
    config = (REPO / ".dvc" / "config").read_text()
    (relative,) = re.findall(r"^\s*html_template\s*=\s*(\S+)\s*$", config, re.MULTILINE)
    return (REPO / ".dvc" / relative).resolve()  # DVC resolves it from .dvc/


@pytest.mark.parametrize(
    ("task", "scores"),
    [
        ("binary", np.linspace(0.1, 0.9, 8)),
        ("multiclass", np.tile([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]], (4, 1))),
        ("regression", np.linspace(-1.0, 1.0, 8)),
    ],
)
def test_evaluate_declares_exactly_the_plot_files_it_wrote(tmp_path: Path, task, scores):
    target = np.array([0, 1, 0, 1, 2, 1, 0, 2]) if task == "multiclass" else np.arange(8) % 2
    written = write_plots(task, target, scores, tmp_path / "plots", class_names=None)
    write_dvc_plots(tmp_path, written)
    files = declared(tmp_path)
    assert sorted(files) == sorted(str(p.relative_to(tmp_path)) for p in written)
    assert yaml.safe_load((tmp_path / DVC_FILE).read_text())["plots"] == dvc_plots(
        Path(f).stem for f in files
    )


def test_the_declaration_is_the_spec() -> None:
    entries = {name: props for entry in dvc_plots() for name, props in entry.items()}
    assert list(entries) == [spec.file for spec in PLOTS.values()]
    for spec in PLOTS.values():
        props = entries[spec.file]
        assert (props["title"], props["x"], props["y"]) == (spec.title, spec.x, spec.y)
        assert (props["x_label"], props["y_label"]) == (spec.x_label, spec.y_label)
        assert props.get("template") == spec.template
    with pytest.raises(ValueError, match="unknown plots"):
        dvc_plots(["roc", "lift"])


def test_the_page_template_inlines_the_vega_versions_dvc_loads_from_its_cdn() -> None:
    from dvc_render.vega import VegaRenderer

    page = template_path().read_text(encoding="utf-8")
    cdn = dict(re.findall(r"cdn\.jsdelivr\.net/npm/([a-z-]+)@([\d.]+)", VegaRenderer.SCRIPTS))
    assert set(cdn) == {"vega", "vega-lite", "vega-embed"}
    inlined = dict(re.findall(r"<script>/\* ([a-z-]+)@([\d.]+) \*/", page))
    assert inlined == cdn  # a DVC upgrade that moves them: rerun vendor/dvc_plots/build.py
    assert "{plot_divs}" in page
    assert "{scripts}" not in page  # dvc_render would put its CDN <script src> tags there
    assert "<script src" not in page
    assert all((template_path().parent / "licenses" / f"{n}.LICENSE").exists() for n in cdn)


@pytest.fixture
def browser() -> Iterator:
    if not CHROMIUM.exists():
        pytest.skip("needs chromium at /usr/bin/chromium: `sudo apt-get install chromium`")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        try:
            yield browser
        finally:
            browser.close()


def open_offline(browser, url: str) -> tuple:
    """The page with the network off, every request that is not a local file aborted; also the
    URLs it asked for and its errors."""
    context = browser.new_context(offline=True, viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    blocked: list[str] = []
    errors: list[str] = []

    def route(request_route) -> None:
        if request_route.request.url.startswith("file:"):
            request_route.continue_()
        else:
            blocked.append(request_route.request.url)
            request_route.abort()

    page.route("**/*", route)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(url)
    return page, blocked, errors


# Every vega-embed container holds a drawn chart (vega-embed draws on a canvas by default).
DRAWN = """n => {
    const embeds = [...document.querySelectorAll('.vega-embed')];
    const drawn = e => {
        const chart = e.querySelector('canvas, svg');
        const box = chart && chart.getBoundingClientRect();
        return box && box.width > 100 && box.height > 100;
    };
    return embeds.length === n && embeds.every(drawn);
}"""


@pytest.mark.slow
@pytest.mark.parametrize("task", list(TASKS))
def test_plots_show_loads_every_plot_and_the_page_renders_offline(
    tmp_path: Path, browser, task: str
) -> None:
    overrides, expected = TASKS[task]
    project = copy_project(tmp_path / "project")
    if overrides:
        sh("mlpflow", "compose", *overrides, cwd=project)
    sh("dvc", "repro", cwd=project)
    files = declared(project / "reports")
    assert {Path(f).stem for f in files} == expected
    assert {f"plots/{p.name}" for p in (project / "reports" / "plots").iterdir()} == set(files)

    shown = sh("dvc", "plots", "show", cwd=project).splitlines()
    index = project / "dvc_plots" / "index.html"
    assert index.as_uri() in shown  # the page's line; no other line may report a problem
    others = "\n".join(line for line in shown if line != index.as_uri())
    assert not re.search(r"fail|error|warning", others, re.IGNORECASE), others
    html = index.read_text(encoding="utf-8")
    assert "cdn.jsdelivr.net" not in html and "<script src" not in html

    page, blocked, errors = open_offline(browser, index.as_uri())
    page.wait_for_function(DRAWN, arg=len(files), timeout=30_000)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / f"{task}.png", full_page=True)
    assert blocked == []  # nothing asked for the network
    assert errors == []
    assert "failed" not in page.inner_text("body").lower()
