"""The demo in a real browser: headless Chromium (Debian's package, no download) loads the page, submits a prompt,
waits for the result and reads the trajectory and the output off the page."""

import shutil
import socket

import pytest
import torch
from demo_models import STAR_PROMPT, export_tiny

pytest.importorskip("gradio", reason="the demo needs gradio: pip install 'xlm_hf[demo]'")
playwright = pytest.importorskip(
    "playwright.sync_api", reason="the browser test needs playwright (the dev extra)"
)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip(
        "no Chromium installed: `apt-get install -y chromium` (Debian; scripts/setup.sh does it as root)",
        allow_module_level=True,
    )

from xlm_hf.demo import build_demo  # noqa: E402


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("browser") / "ilm"
    model, tokenizer = export_tiny("ilm", folder)
    app, options = build_demo(str(folder))
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **options)
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser.new_page(), f"http://127.0.0.1:{port}/", model, tokenizer
        browser.close()
    app.close()


def test_page_shows_the_trajectory_and_the_models_output(served):
    page, url, model, tokenizer = served
    page.goto(url)
    page.locator("#prompt textarea").fill(STAR_PROMPT)
    page.get_by_text("Generation options").click()  # opens the accordion
    page.locator("#opt-other textarea").fill("max_new_tokens=5")
    page.locator("#generate").click()
    page.wait_for_selector("#trajectory .xlm-step", timeout=30_000)
    ids = tokenizer([STAR_PROMPT], return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        output = model.generate(**ids, max_new_tokens=5, output_history=True)
    sequence = output.sequences[0][output.sequences[0].ne(tokenizer.pad_token_id)]
    assert page.locator("#trajectory .xlm-step").count() == output.history_positions.shape[1]
    text = page.locator("#output textarea").input_value()
    assert text == tokenizer.decode(sequence, skip_special_tokens=True).strip()
    assert "Valid path" in page.locator("#metrics").inner_text()


def test_bad_input_is_a_message_on_the_page(served):
    page, url, _, _ = served
    page.goto(url)
    page.locator("#prompt textarea").fill("3 seven 7")
    page.locator("#generate").click()
    error = page.locator("#xlm-error")
    error.wait_for(state="visible", timeout=15_000)
    assert "seven" in error.inner_text() and "Traceback" not in page.content()
