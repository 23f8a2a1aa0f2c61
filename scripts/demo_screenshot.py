"""A screenshot of `xlm-hf demo MODEL` after one generation, taken by headless Chromium (docs/demo.md's pictures).

    python scripts/demo_screenshot.py outputs/star_easy_ilm docs/images/demo-ilm.png [--prompt TEXT] [--step N]

The prompt defaults to the checkpoint's first example prompt; the step slider is set to `--step` (default: the
middle step). Needs the demo extra (gradio), playwright and the Debian `chromium` package (scripts/setup.sh).
"""

import argparse
import shutil
import socket

from playwright.sync_api import sync_playwright

from xlm_hf.demo import build_demo, example_prompts, resolve_folder


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model")
    parser.add_argument("output")
    parser.add_argument("--prompt", default=None)
    parser.add_argument("--step", type=int, default=None)
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("error: no Chromium installed: apt-get install -y chromium")
    prompt = args.prompt or example_prompts(resolve_folder(args.model))[0]

    app, options = build_demo(args.model)
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **options)
    try:
        with sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1100, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/")
            page.locator("#prompt textarea").fill(prompt)
            page.locator("#generate").click()
            page.wait_for_selector("#trajectory .xlm-step", timeout=60_000)
            steps = page.locator("#trajectory .xlm-step").count()
            step = args.step or max(1, (steps + 1) // 2)
            number = page.locator("#step input[type=number]")
            number.fill(str(step))
            number.press("Enter")
            page.wait_for_timeout(1000)
            page.screenshot(path=args.output, full_page=True)
            browser.close()
            print(f"{args.output}: {steps} steps, slider at {step}")
    finally:
        app.close()


if __name__ == "__main__":
    main()
