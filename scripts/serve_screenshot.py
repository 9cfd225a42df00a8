"""docs/serve.png: the page of `robustsam serve examples/images` with two boxes drawn, taken with
headless Debian chromium (apt-get install chromium) through Playwright.

Run: python3 scripts/serve_screenshot.py [--output docs/serve.png]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.model.default_model import DEFAULT_CHECKPOINT  # noqa: E402
from serve import BackgroundServer, Workbench, create_app, open_workbench  # noqa: E402

IMAGE = "motion_blur.png"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "serve.png")
    args = parser.parse_args()
    boxes = json.loads((ROOT / "examples" / "boxes.json").read_text())[IMAGE][:2]
    with tempfile.TemporaryDirectory() as out:
        bench = open_workbench(ROOT / "examples" / "images", DEFAULT_CHECKPOINT, device="cpu", out=out)  # Save enabled
        shoot(bench, boxes, args.output)
    print(f"wrote {args.output}")


def shoot(bench: Workbench, boxes: list[dict], output: Path) -> None:
    app = create_app(bench, checkpoint="default", replay={})
    with BackgroundServer(app) as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 640})
        page.goto(server.url + "/")
        idle = "document.body.dataset.busy === '0'"
        page.wait_for_function(f"{idle} && window.robustsam.state.key !== null")
        page.click(f"nav button[data-key='{IMAGE}']")
        page.wait_for_function(f"{idle} && window.robustsam.state.key === '{IMAGE}'")
        stage = page.locator("#image-robust").bounding_box()
        scale = stage["width"] / page.evaluate("window.robustsam.state.size[0]")
        for index, entry in enumerate(boxes):
            x0, y0, x1, y1 = entry["box"]
            page.click("#new-object")
            page.mouse.move(stage["x"] + x0 * scale, stage["y"] + y0 * scale)
            page.mouse.down()
            page.mouse.move(stage["x"] + x1 * scale, stage["y"] + y1 * scale, steps=5)
            page.mouse.up()
            page.wait_for_function(f"{idle} && document.querySelector('#mask-robust').dataset.objects === '{index + 1}'")
        page.screenshot(path=str(output))
        browser.close()


if __name__ == "__main__":
    main()
