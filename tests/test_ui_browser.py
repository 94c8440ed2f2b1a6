"""The MLflow UI in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright, no
browser download), looked at as a user does: the run page with its metrics and datasets, the
system-metric charts, the experiment's Models tab, the logged model with its linked test metric,
and evaluate's figures. The screenshots are kept (SHOTS below)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient

from conftest import REPO, make_cfg
from mlflow_helpers import free_port, serving, train_and_evaluate

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
FIGURE_WIDTH = 600  # px: evaluate's figures are 6 in at 100 dpi
ML_VIEW = "workflowType=machine_learning"  # what mlpflow's links add: the model-training view
# Screenshots are kept for a look after the run: $MLPFLOW_TEST_ARTIFACTS, else test-artifacts/.
SHOTS = Path(os.environ.get("MLPFLOW_TEST_ARTIFACTS", REPO / "test-artifacts")) / "ui"


@dataclass(frozen=True)
class Run:
    uri: str
    experiment_id: str
    run_id: str
    run_name: str
    model_id: str
    test_digest: str


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    cfg = make_cfg(tmp_path_factory.mktemp("ui"), "trainer.max_epochs=8")
    cfg.tracking.system_metrics_interval = 0.1  # charts from a short run
    run_id = train_and_evaluate(cfg)
    client = MlflowClient(cfg.tracking.uri)
    found = client.get_run(run_id)
    (test,) = [
        i.dataset
        for i in found.inputs.dataset_inputs
        if any(t.value == "test" for t in i.tags)
    ]  # fmt: skip
    return Run(
        cfg.tracking.uri,
        found.info.experiment_id,
        run_id,
        found.info.run_name,
        found.outputs.model_outputs[0].model_id,
        test.digest,
    )


@pytest.fixture(scope="module")
def ui(run: Run, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mlpflow ui` over the store, on a free loopback port (its default host)."""
    log = tmp_path_factory.mktemp("ui-server") / "ui.log"
    command = ["mlpflow", "ui", "--uri", run.uri, "--port", str(free_port())]
    with serving(command, log, timeout=60) as url:
        assert "--host 127.0.0.1" in log.read_text()
        yield url


@pytest.fixture
def page() -> Iterator:
    if not CHROMIUM.exists():
        pytest.skip(
            "needs chromium at /usr/bin/chromium: `sudo apt-get install chromium` "
            "(what .ci/run does), then `make test` runs the browser test too"
        )
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 1000})
        finally:
            browser.close()


@pytest.fixture(autouse=True)
def shots_dir() -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)


def see(page, text: str, timeout: int = 30_000) -> None:
    page.get_by_text(text, exact=False).first.wait_for(timeout=timeout)


def run_url(ui: str, run: Run, tab: str = "") -> str:
    return f"{ui}/#/experiments/{run.experiment_id}/runs/{run.run_id}{tab}?{ML_VIEW}"


def test_run_page_shows_metrics_and_datasets(run: Run, ui: str, page):
    page.goto(run_url(ui, run))
    see(page, run.run_name)
    for metric in ("test/roc_auc", "val/loss", "train/loss"):
        page.get_by_text(metric, exact=True).first.wait_for(timeout=15_000)
    see(page, "Datasets")
    see(page, "breast_cancer (")  # name (digest), with its context
    page.get_by_text(re.compile(r"^training$", re.IGNORECASE)).first.wait_for(timeout=15_000)
    page.screenshot(path=SHOTS / "run.png", full_page=True)
    assert (SHOTS / "run.png").stat().st_size > 10_000


def test_system_metrics_tab_draws_charts(run: Run, ui: str, page):
    page.goto(run_url(ui, run, "/system-metrics"))
    see(page, "cpu_utilization_percentage")
    page.wait_for_function("document.querySelectorAll('svg, canvas').length > 10", timeout=30_000)
    page.screenshot(path=SHOTS / "system.png", full_page=True)


def test_models_tab_lists_the_logged_model_with_its_test_metric(run: Run, ui: str, page):
    page.goto(f"{ui}/#/experiments/{run.experiment_id}/models?{ML_VIEW}")
    see(page, run.run_name)  # the model's source run, in the experiment's Models tab
    page.screenshot(path=SHOTS / "models.png", full_page=True)

    page.goto(f"{ui}/#/experiments/{run.experiment_id}/models/{run.model_id}?{ML_VIEW}")
    see(page, "Datasets used")
    see(page, f"breast_cancer (#{run.test_digest})")
    page.get_by_text("test/roc_auc", exact=True).first.wait_for(timeout=15_000)
    page.screenshot(path=SHOTS / "model.png", full_page=True)


@pytest.mark.parametrize("figure", ["roc.png", "importance.png"])
def test_figures_render(run: Run, ui: str, page, figure: str):
    page.goto(run_url(ui, run, f"/artifacts/figures/{figure}"))
    page.wait_for_function(
        f"[...document.images].some(i => i.complete && i.naturalWidth === {FIGURE_WIDTH})",
        timeout=30_000,
    )
    page.screenshot(path=SHOTS / figure, full_page=True)
    assert (SHOTS / figure).stat().st_size > 10_000
