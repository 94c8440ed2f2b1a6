"""The MLflow UI in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright, no
browser download): our run's page shows our metrics and a figure."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from mlflow_helpers import Trained, free_port, serving, trained_runs

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
FIGURE_WIDTH = 600  # px: evaluate's figures are 6 in at 100 dpi


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return trained_runs(tmp_path_factory)


@pytest.fixture
def ui(trained: Trained, tmp_path: Path) -> Iterator[str]:
    """`mlpflow ui` over the trained store, on a free loopback port (its default host)."""
    command = ["mlpflow", "ui", "--uri", trained.uri, "--port", str(free_port())]
    with serving(command, tmp_path / "ui.log", timeout=60) as url:
        assert "--host 127.0.0.1" in (tmp_path / "ui.log").read_text()
        yield url


@pytest.fixture
def page() -> Iterator:
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (.ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 1000})
        finally:
            browser.close()


def test_run_page_shows_our_metrics_and_figure(trained: Trained, ui: str, page, tmp_path: Path):
    run = MlflowClient(trained.uri).get_run(trained.run_id)
    run_url = f"{ui}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"

    page.goto(run_url)
    page.get_by_text(run.info.run_name).first.wait_for(timeout=30_000)
    for metric in ("test/roc_auc", "val/loss", "train/loss"):
        page.get_by_text(metric, exact=True).first.wait_for(timeout=15_000)
    page.screenshot(path=tmp_path / "run.png", full_page=True)

    page.goto(f"{run_url}/artifacts/figures/roc.png")
    page.wait_for_function(
        f"[...document.images].some(i => i.complete && i.naturalWidth === {FIGURE_WIDTH})",
        timeout=30_000,
    )
    page.screenshot(path=tmp_path / "figure.png", full_page=True)
    assert (tmp_path / "run.png").stat().st_size > 10_000
    assert (tmp_path / "figure.png").stat().st_size > 10_000
