"""The link `initlab compare` prints, opened in a real headless Chromium on a real `mlflow ui`.

Needs Debian's ``chromium`` (``apt-get install chromium``; `.ci/run` installs it), driven by
Playwright from PyPI through its ``executable_path``: no browser download.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import free_port, wait_until_healthy, write_spec
from initlab.cli import main
from initlab.tracking.ui import LAYER_CHARTS, LEARNING_CURVES, UI_PORT, watched_layers

pytestmark = pytest.mark.integration  # an MLflow UI and a browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As root (CI), without a GPU, and with no connection attempts beyond the page under test.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def mlflow_ui(tmp_path, store):
    """`mlflow ui` on a new SQLite store, on 127.0.0.1 and a free port, without MLflow's job runner (as
    `initlab serve` starts it), started at once so that it loads while `comparison` trains; yields ``(store uri,
    address, ready)``, ``ready()`` returning once it answers."""
    uri = store("mlflow.db")
    port = free_port()
    log = tmp_path / "ui.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "mlflow"),
                "ui",
                "--backend-store-uri",
                uri,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    address = f"http://127.0.0.1:{port}"
    try:
        yield uri, address, lambda: wait_until_healthy(address, process, log)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


@pytest.fixture
def comparison(tmp_path, capsys, mlflow_ui):
    """A finished comparison in `mlflow_ui`'s store, and that UI answering: ``(printed link, UI address)``."""
    uri, address, ready = mlflow_ui
    assert main(["compare", str(write_spec(tmp_path, epochs=3)), "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    command = re.search(r"^look: (mlflow ui .*)$", out, re.M).group(1)
    assert command == f"mlflow ui --backend-store-uri {uri} --port {UI_PORT}"
    ready()
    return re.search(r"then open (http://\S+)$", out, re.M).group(1), address


def test_the_printed_link_opens_the_grouped_learning_curves(tmp_path, comparison):
    from playwright.sync_api import expect, sync_playwright

    assert Path(CHROMIUM).is_file(), "the UI test needs Debian's chromium: apt-get install chromium"
    link, address = comparison
    link = link.replace(f"http://127.0.0.1:{UI_PORT}", address)  # the same link, on this test's port
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1800, "height": 1000})
            page.goto(link)
            cards = page.get_by_test_id("experiment-view-compare-runs-card")
            expect(cards.first).to_contain_text("val_accuracy", timeout=90_000)  # no click: the view is restored
            titles = [cards.nth(i).inner_text().split("\n")[0] for i in range(len(LEARNING_CURVES))]
            assert titles == list(LEARNING_CURVES)
            # The second section, open: the watched layers' charts (TINY has two layers: the first and the last).
            expect(page.get_by_text("Layers", exact=True)).to_be_visible(timeout=60_000)
            layer_charts = [f"layers/layer{k}/{stat}" for stat in LAYER_CHARTS for k in watched_layers(2)]
            expect(cards.nth(len(LEARNING_CURVES))).to_contain_text(layer_charts[0], timeout=60_000)
            shown = [cards.nth(i).inner_text().split("\n")[0] for i in range(len(LEARNING_CURVES), cards.count())]
            assert shown == layer_charts[: len(shown)]  # in order; the UI renders the cards that come into view
            expect(page.get_by_text("Group by: scheme")).to_be_visible()
            # The runs table renders after the charts' section headers: on a busy 2-core machine (CI) more than
            # the default 5 s later.
            for scheme in ("nielsen-default", "nielsen-large"):  # one group per scheme, its child runs listed
                expect(page.get_by_text(f"Group: {scheme}", exact=True)).to_be_visible(timeout=60_000)
                for seed in (0, 1):
                    expect(page.get_by_role("link", name=f"{scheme}/seed={seed}")).to_be_visible(timeout=60_000)
            for i in range(len(LEARNING_CURVES)):  # drawn: the screenshot shows curves, not spinners
                expect(cards.nth(i).locator(".js-plotly-plot")).to_be_visible(timeout=60_000)
            page.screenshot(path=tmp_path / "mlflow-ui.png")
        finally:
            browser.close()
