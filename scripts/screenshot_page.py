"""A screenshot of the page of ``python -m seq2seq.serve`` with a sentence typed in: the image
in the README (docs/serve_page.png).

    python scripts/screenshot_page.py checkpoint=RUN/checkpoints/best.pt [output=docs/serve_page.png]
        [sentence="..."] [key=value ...]

Starts the server on a free port of 127.0.0.1 with the ``key=value`` overrides that are not this
script's, opens its page in headless Chromium (the system's, driven by Playwright: ``apt-get
install chromium``, ``pip install playwright``), types the sentence, waits for the translation
and its heatmap, saves the page and stops the server.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from bench_serve import start_server  # noqa: E402

OWN = {"output": str(ROOT / "docs" / "serve_page.png"), "sentence": "Zwei Hunde spielen im Schnee."}
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def main() -> None:
    own, overrides = dict(OWN), []
    for arg in sys.argv[1:]:
        key, sep, value = arg.partition("=")
        if sep and key in OWN:
            own[key] = value
        else:
            overrides.append(arg)
    browser_path = next((p for name in BROWSERS if (p := shutil.which(name))), None)
    if browser_path is None:
        sys.exit("error: no Chromium installed (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    proc, address = start_server(overrides)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=browser_path, headless=True, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto(f"http://{address}/")
            page.locator("#source").press_sequentially(own["sentence"], delay=15)
            expect(page.locator("#translation")).not_to_be_empty(timeout=30_000)
            expect(page.locator("#heatmap .cell").first).to_be_visible(timeout=30_000)
            page.wait_for_timeout(500)  # the last keystroke's translation settles
            page.screenshot(path=own["output"], full_page=True)
            browser.close()
        print(f"{own['output']}: the page translating {own['sentence']!r}")
    finally:
        proc.terminate()
        proc.wait(60)


if __name__ == "__main__":
    main()
