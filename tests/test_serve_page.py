"""The page at ``/`` in a real browser: headless Chromium (the system's, driven by Playwright)
types a sentence, reads the translation and the n-best list, and counts the heatmap's cells.

Skipped, with the reason, where Playwright or a Chromium is not installed (``.ci/run``
installs both). Set ``SEQ2SEQ_SCREENSHOT=FILE`` to save a screenshot of the page."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the server needs FastAPI and uvicorn (.[serve])")
pytest.importorskip("playwright", reason="Playwright is not installed (pip install playwright)")

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BROWSER = next((path for name in BROWSERS if (path := shutil.which(name))), None)
if BROWSER is None:
    pytest.skip("no Chromium installed (apt-get install chromium)", allow_module_level=True)

import httpx  # noqa: E402
import uvicorn  # noqa: E402
from playwright.sync_api import expect, sync_playwright  # noqa: E402

from seq2seq.cli.loading import make_translator  # noqa: E402
from seq2seq.config import compose  # noqa: E402
from seq2seq.serving.app import create_app  # noqa: E402
from seq2seq.serving.info import describe_model  # noqa: E402
from seq2seq.serving.server import listen  # noqa: E402

OLD = Path(__file__).resolve().parent / "fixtures" / "format2"
CHECKPOINTS = {
    "transformer": OLD / "transformer" / "checkpoints" / "last.pt",
    "gru": OLD / "gru" / "checkpoints" / "last.pt",
}
SENTENCE = "Ein Mann fährt Fahrrad."


@pytest.fixture(params=sorted(CHECKPOINTS))
def server_url(request):
    """An in-process server of a fixture model on a free port of 127.0.0.1."""
    cfg = compose("serve", [f"checkpoint={CHECKPOINTS[request.param]}", "num_threads=1"])
    translator, train_config = make_translator(cfg)
    app = create_app(translator, cfg, describe_model(translator, train_config, cfg))
    sock = listen("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(30)


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=BROWSER, headless=True, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def test_typing_a_sentence_shows_its_translation_nbest_and_heatmap(server_url, browser):
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(server_url + "/")
    info = httpx.get(server_url + "/v1/model").json()
    expect(page.locator("#facts")).to_contain_text(info["architecture"])
    page.locator("#source").press_sequentially(SENTENCE, delay=15)  # translated as it is typed
    body = {"text": SENTENCE, "options": {"beam_size": 5, "nbest": 3}, "attention": True}
    expected = httpx.post(server_url + "/v1/translate", json=body).json()["translations"][0]
    expect(page.locator("#translation")).to_have_text(expected["text"], timeout=20_000)
    expect(page.locator("#nbest li")).to_have_count(len(expected["nbest"]))
    att = expected["nbest"][0]["attention"]
    cells = page.locator("#heatmap .cell")
    expect(cells).to_have_count(len(att["source"]) * len(att["target"]))
    cells.nth(len(att["source"]) + 1).hover()  # the second target piece over the second source piece
    label = f"{att['target'][1]} → {att['source'][1]}: "
    expect(page.locator("#readout")).to_contain_text(label)
    shown = page.locator("#readout").inner_text().split(label, 1)[1]
    assert abs(float(shown) - att["weights"][1][1]) < 0.0011, shown

    page.locator("#nbest li").nth(1).click()  # another hypothesis: its own text and heatmap
    second = expected["nbest"][1]
    expect(page.locator("#translation")).to_have_text(second["text"])
    expect(cells).to_have_count(len(second["attention"]["source"]) * len(second["attention"]["target"]))

    if info["attention"]["heads"] > 1:  # one head instead of the average: other weights
        page.select_option("#head", "1")
        one = httpx.post(server_url + "/v1/translate", json={**body, "attention_head": 1}).json()
        w = one["translations"][0]["nbest"][0]["attention"]["weights"][0][0]
        first_cell = page.locator("#heatmap .cell").first
        deadline = time.monotonic() + 20
        while abs(float(first_cell.get_attribute("data-weight")) - w) > 1e-9:
            assert time.monotonic() < deadline, "the heatmap did not change to head 1"
            time.sleep(0.05)
    if os.environ.get("SEQ2SEQ_SCREENSHOT") and info["architecture"] == "Transformer":
        page.locator("#nbest li").nth(0).click()
        page.screenshot(path=os.environ["SEQ2SEQ_SCREENSHOT"], full_page=True)
    page.close()
