"""robustsam serve's page in a real browser: headless Debian chromium driven by Playwright drags a
box, clicks a point, and the masks it draws equal the API's; Save writes prompts that `robustsam
segment` turns into the same masks. Never skipped: without chromium or playwright it fails."""

from __future__ import annotations

from pathlib import Path

import httpx
import imageio.v3 as iio
import numpy as np
import pytest
from playwright.sync_api import Page, sync_playwright

from tests.serve_support import image_folder, rle_mask, run_cli, running, workbench

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def browser():
    assert Path(CHROMIUM).is_file(), f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def drawn_masks(page: Page, path: str) -> np.ndarray:
    """(H, W) bool: the pixels the page tints on `path`'s mask layer."""
    width, height, alpha = page.evaluate(f"""() => {{
        const canvas = document.querySelector('#mask-{path}');
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        return [canvas.width, canvas.height, Array.from(data.filter((_, i) => i % 4 === 3))];
    }}""")
    return np.array(alpha, dtype=np.uint8).reshape(height, width) > 0


def wait_drawn(page: Page, objects: int) -> None:
    page.wait_for_function(f"""() => document.body.dataset.busy === '0' &&
        [...document.querySelectorAll('canvas.mask')].every(c => c.dataset.objects === '{objects}')""", timeout=TIMEOUT_MS)


def screen(page: Page, x: float, y: float) -> tuple[float, float]:
    """Screen position of image pixel (x, y) on the RobustSAM panel."""
    box = page.locator("#image-robust").bounding_box()
    scale = box["width"] / page.evaluate("window.robustsam.state.size[0]")
    return box["x"] + x * scale, box["y"] + y * scale


def test_page_draws_the_apis_masks_and_saves_what_segment_replays(browser, tmp_path):
    folder, out = image_folder(tmp_path), tmp_path / "out"
    with running(workbench(folder, out)) as server:
        page = browser.new_page(viewport={"width": 1300, "height": 720})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(server.url + "/")
        page.wait_for_function("document.body.dataset.busy === '0' && window.robustsam.state.key === 'fog.png'", timeout=TIMEOUT_MS)

        page.mouse.move(*screen(page, 69.2, 12.4))
        page.mouse.down()
        page.mouse.move(*screen(page, 90, 40), steps=4)
        page.mouse.move(*screen(page, 109.8, 76.7), steps=4)
        page.mouse.up()
        wait_drawn(page, 1)
        box = page.evaluate("window.robustsam.state.objects['fog.png'][0].box")
        assert box == [69, 12, 110, 77]
        api = {path: rle_mask(httpx.post(server.url + "/api/predict", json={"image": "fog.png", "model": path, "box": box}).json()["mask"]["rle"])
               for path in ("robust", "sam")}
        for path, mask in api.items():
            assert mask.any() and np.array_equal(drawn_masks(page, path), mask), path
        assert not np.array_equal(api["robust"], api["sam"])  # the panels show two models

        page.click("#new-object")
        page.mouse.click(*screen(page, 30.4, 80.2))
        page.mouse.click(*screen(page, 100.0, 20.0), button="right")
        wait_drawn(page, 2)
        second = page.evaluate("window.robustsam.state.objects['fog.png'][1]")
        assert second == {"box": None, "points": [[30, 80], [100, 20]], "labels": [1, 0]}
        point_mask = rle_mask(httpx.post(server.url + "/api/predict", json={"image": "fog.png", "points": second["points"],
                                                                              "labels": second["labels"]}).json()["mask"]["rle"])
        assert np.array_equal(drawn_masks(page, "robust"), api["robust"] | point_mask)

        page.click("#save")
        page.wait_for_function("document.querySelector('#status').textContent.startsWith('saved')", timeout=TIMEOUT_MS)
        assert not errors, errors

    run_cli("segment", str(folder), "--prompts", str(out / "prompts.json"), "-o", str(tmp_path / "replay"))
    replayed = [iio.imread(tmp_path / "replay" / "fog" / f"{k}.png") > 127 for k in (0, 1)]
    assert np.array_equal(replayed[0], api["robust"]) and np.array_equal(replayed[1], point_mask)
    for k in (0, 1):
        assert (tmp_path / "replay" / "fog" / f"{k}.png").read_bytes() == (out / "masks" / "fog" / f"{k}.png").read_bytes()


def test_undo_degradation_picker_and_segment_everything(browser, tmp_path):
    folder = image_folder(tmp_path)
    bench = workbench(folder, None)
    bench.generator_options = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.3}
    with running(bench) as server:
        page = browser.new_page(viewport={"width": 1300, "height": 720})
        page.goto(server.url + "/")
        page.wait_for_function("document.body.dataset.busy === '0' && window.robustsam.state.key === 'fog.png'", timeout=TIMEOUT_MS)
        assert page.is_disabled("#save")  # no -o: saving is off
        page.mouse.click(*screen(page, 90, 40))
        wait_drawn(page, 1)
        page.click("#undo")
        wait_drawn(page, 0)
        assert page.evaluate("window.robustsam.state.objects['fog.png']") == []

        page.select_option("#degradation", "motion_blur")
        page.select_option("#level", "5")
        page.mouse.click(*screen(page, 90, 40))
        wait_drawn(page, 1)
        degraded = {"type": "motion_blur", "level": 5, "seed": 0}
        expected = httpx.post(server.url + "/api/predict", json={"image": "fog.png", "points": [[90, 40]], "labels": [1],
                                                                  "degradation": degraded}).json()["mask"]["rle"]
        assert np.array_equal(drawn_masks(page, "robust"), rle_mask(expected))
        shown = page.evaluate("""() => { const c = document.querySelector('#image-robust');
            return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data); }""")
        pixels = np.array(shown, dtype=np.uint8).reshape(128, 128, 4)[..., :3]
        served = iio.imread(httpx.get(server.url + "/api/image", params={"key": "fog.png", "type": "motion_blur", "level": 5}).content)
        assert np.array_equal(pixels, served)

        page.click("#everything")
        page.wait_for_function("document.querySelector('#status').textContent.startsWith('segment everything:')", timeout=TIMEOUT_MS)
        masks = httpx.post(server.url + "/api/everything", json={"image": "fog.png", "degradation": degraded}, timeout=60).json()["masks"]
        assert len(masks) > 1
        assert np.array_equal(drawn_masks(page, "robust"), np.logical_or.reduce([rle_mask(mask["rle"]) for mask in masks]))
