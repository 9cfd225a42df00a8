"""robustsam serve's API against the real server on a loopback port: masks equal `segment`'s, saves
replay byte for byte, paths stay inside the folder, bad requests get JSON 4xx, tokens, concurrency."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import imageio.v3 as iio
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from core import build_robustsam
from core.data.prompt_files import Prompt
from core.glesam import GleSam, build_enhancer, checkpoint_dict
from core.inference import make_predictor, open_model
from core.inference.segment import PromptSegmenter
from core.model.default_model import DEFAULT_CHECKPOINT
import serve
from robustsam_cli.main import cli
from serve import BackgroundServer, Embedding, EmbeddingCache
from tests.serve_support import files, image_folder, rle_mask, run_cli, running, workbench

BOX = [69, 12, 110, 77]


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("serve")
    return image_folder(root), root / "out"


@pytest.fixture(scope="module")
def server(folders):
    folder, out = folders
    with running(workbench(folder, out)) as server:
        yield server


@pytest.fixture()
def client(server):
    with httpx.Client(base_url=server.url, timeout=120) as client:
        yield client


def reference_mask(image: np.ndarray, prompt: Prompt, robust: bool) -> np.ndarray:
    """The mask `segment` computes: a fresh model and predictor, set_image, PromptSegmenter."""
    predictor = make_predictor(open_model(DEFAULT_CHECKPOINT), robust=robust)
    return PromptSegmenter(predictor)(image, [prompt])[0].mask


def test_lists_the_folders_images_and_not_a_link_leading_out(client):
    keys = [entry["key"] for entry in client.get("/api/images").json()["images"]]
    assert keys == ["fog.png", "gauss_noise.png"]
    assert client.get("/api/info").json()["models"] == ["robust", "sam"]


@pytest.mark.parametrize("key", ["../secret.png", "link.png", "images/../../secret.png", "..\\secret.png", "./fog.png", "", "fog.png/"])
def test_paths_outside_the_folder_are_refused(client, folders, key):
    for response in (client.get("/api/image", params={"key": key}),
                     client.post("/api/predict", json={"image": key, "box": BOX})):
        assert response.status_code == 404, (key, response.text)
        assert "error" in response.json()
    absolute = str(folders[0].parent / "secret.png")
    assert client.get("/api/image", params={"key": absolute}).status_code == 404


@pytest.mark.parametrize("model", ["robust", "sam"])
def test_predict_equals_segments_mask(client, folders, model):
    image = iio.imread(folders[0] / "fog.png")[..., :3]
    prompts = [Prompt(box=tuple(BOX)), Prompt(points=((90.0, 40.0), (20.0, 100.0)), labels=(1, 0)),
               Prompt(box=(10.0, 50.0, 60.0, 120.0), points=((30.0, 80.0),), labels=(1,))]
    for prompt in prompts:
        body = {"image": "fog.png", "model": model, "box": list(prompt.box) if prompt.box else None,
                "points": [list(p) for p in prompt.points] or None, "labels": list(prompt.labels) or None}
        answer = client.post("/api/predict", json=body).json()
        mask = rle_mask(answer["mask"]["rle"])
        assert mask.any()
        assert np.array_equal(mask, reference_mask(image, prompt, robust=model == "robust"))
        assert answer["mask"]["area"] == int(mask.sum())
    png = client.post("/api/predict", json={"image": "fog.png", "model": model, "box": BOX, "mask_format": "png"}).json()
    assert np.array_equal(iio.imread(base64.b64decode(png["mask"]["png"])) > 127, reference_mask(image, Prompt(box=tuple(BOX)), model == "robust"))


def test_saved_prompts_replay_byte_for_byte_through_segment(client, folders, tmp_path):
    folder, out = folders
    prompts = {
        "fog.png": [{"box": BOX}, {"points": [[90, 40], [20, 100]], "labels": [1, 0]}, {"box": [10, 50, 60, 120]}],
        "gauss_noise.png": [{"box": [49, 25, 81, 55], "points": [[60, 40]], "labels": [1]}, {"points": [[100, 90]], "labels": [1]}],
    }
    answer = client.post("/api/save", json={"prompts": prompts}).json()
    assert (answer["images"], answer["masks"]) == (2, 5)
    assert json.loads((out / "prompts.json").read_text()) == prompts
    assert client.get("/api/prompts").json() == prompts
    run_cli("segment", str(folder), "--prompts", str(out / "prompts.json"), "-o", str(tmp_path / "replay"))
    saved, replayed = files(out / "masks"), files(tmp_path / "replay")
    assert sorted(saved) == ["fog/0.png", "fog/1.png", "fog/2.png", "fog/metadata.csv",
                             "gauss_noise/0.png", "gauss_noise/1.png", "gauss_noise/metadata.csv"]
    assert saved == replayed
    # A later save with fewer images and prompts leaves what replaying its own prompt file writes.
    fewer = {"fog.png": prompts["fog.png"][:1]}
    assert client.post("/api/save", json={"prompts": fewer}).json()["masks"] == 1
    run_cli("segment", str(folder), "--prompts", str(out / "prompts.json"), "-o", str(tmp_path / "again"))
    assert sorted(files(out / "masks")) == ["fog/0.png", "fog/metadata.csv"]
    assert files(out / "masks") == files(tmp_path / "again")


def test_save_validates_everything_before_writing(client, folders):
    folder, out = folders
    before = files(out) if out.exists() else {}
    for prompts, status in (({"fog.png": [{"box": BOX}], "gauss_noise.png": [{"box": [0, 0, 500, 20]}]}, 400),
                            ({"fog.png": [{"box": BOX}], "../secret.png": [{"box": BOX}]}, 404),
                            ({"fog.png": [{"box": BOX, "mask": 1}]}, 400)):
        response = client.post("/api/save", json={"prompts": prompts})
        assert response.status_code == status, response.text
    assert (files(out) if out.exists() else {}) == before


@pytest.mark.parametrize("request_args, status", [
    (dict(content=b"{not json", headers={"content-type": "application/json"}), 422),
    (dict(json={"box": BOX}), 422),                                          # no image
    (dict(json={"image": "fog.png", "box": BOX, "colour": 1}), 422),         # unknown field
    (dict(json={"image": "fog.png", "box": [110, 12, 69, 77]}), 400),        # x0 > x1
    (dict(json={"image": "fog.png", "box": [0, 0, 500, 20]}), 400),          # outside the image
    (dict(json={"image": "fog.png", "points": [[5, 5]], "labels": [1, 0]}), 400),
    (dict(json={"image": "fog.png", "labels": [1]}), 400),
    (dict(json={"image": "fog.png"}), 400),                                  # no prompt
    (dict(json={"image": "fog.png", "box": BOX, "model": "glesam"}), 404),   # not loaded
    (dict(json={"image": "fog.png", "box": BOX, "model": "medsam"}), 422),
    (dict(json={"image": "fog.png", "box": BOX, "degradation": {"type": "fog", "level": 9}}), 422),
    (dict(json={"image": "fog.png", "box": BOX, "degradation": {"type": "sunburn"}}), 422),
    (dict(json=[1, 2]), 422),
    (dict(content=b"image=fog.png", headers={"content-type": "text/plain"}), 422),
])
def test_malformed_requests_get_a_json_4xx(client, request_args, status):
    response = client.post("/api/predict", **request_args)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert isinstance(response.json()["error"], str) and "Traceback" not in response.text


def test_other_errors_are_json_too(client):
    for response in (client.get("/api/nothing"), client.get("/static/../serve/app.py"), client.put("/api/predict"),
                     client.get("/api/image", params={"key": "fog.png", "level": "high"}),
                     client.get("/", headers={"host": "attacker.example"})):
        assert 400 <= response.status_code < 500, response.text
        assert "error" in response.json()


def test_an_image_over_the_pixel_limit_is_refused_with_413_before_decoding(folders, monkeypatch):
    # the example images are 128 x 128 = 16384 pixels
    bench = workbench(folders[0], None, max_pixels=16383)
    decoded = []
    monkeypatch.setattr(serve.images, "read_image", lambda path: decoded.append(path))
    with running(bench) as server:
        answers = [httpx.post(server.url + "/api/predict", json={"image": "fog.png", "box": BOX}),
                   httpx.get(server.url + "/api/image", params={"key": "fog.png"}),
                   httpx.post(server.url + "/api/everything", json={"image": "fog.png"})]
    for response in answers:
        assert response.status_code == 413, response.text
        assert response.json() == {"error": "image 'fog.png' is 128x128, 16,384 pixels: over this server's limit of 16,383 "
                                            "(robustsam serve --max-megapixels)"}
    assert decoded == []


def test_an_internal_error_is_json_without_a_traceback(folders, monkeypatch):
    bench = workbench(folders[0], None)
    monkeypatch.setattr(bench, "embed", lambda *args: 1 / 0)
    with running(bench) as server:
        response = httpx.post(server.url + "/api/embed", json={"image": "fog.png"})
    assert response.status_code == 500 and response.json() == {"error": "internal error (ZeroDivisionError)"}


def test_degraded_view_equals_robustsam_degrade(client, folders, tmp_path):
    folder = folders[0]
    run_cli("degrade", str(folder), "-o", str(tmp_path), "--types", "fog,LQ-2", "--level", "2", "--seed", "5")
    for kind in ("fog", "LQ-2"):
        shown = client.get("/api/image", params={"key": "fog.png", "type": kind, "level": 2, "seed": 5})
        assert shown.headers["content-type"] == "image/png"
        assert np.array_equal(iio.imread(shown.content), iio.imread(tmp_path / kind / "fog.png"))
    clear = client.get("/api/image", params={"key": "fog.png"}).content
    assert np.array_equal(iio.imread(clear), iio.imread(folder / "fog.png")[..., :3])


def test_predict_on_a_degraded_view_segments_the_degraded_pixels(client, folders, tmp_path):
    run_cli("degrade", str(folders[0]), "-o", str(tmp_path), "--types", "motion_blur", "--seed", "3")
    degraded = iio.imread(tmp_path / "motion_blur" / "gauss_noise.png")
    body = {"image": "gauss_noise.png", "box": [49, 25, 81, 55], "degradation": {"type": "motion_blur", "seed": 3}}
    mask = rle_mask(client.post("/api/predict", json=body).json()["mask"]["rle"])
    assert np.array_equal(mask, reference_mask(degraded, Prompt(box=(49.0, 25.0, 81.0, 55.0)), robust=True))


def test_embedding_is_computed_once_then_cached(client):
    body = {"image": "gauss_noise.png", "model": "sam", "degradation": {"type": "contrast", "level": 1}}
    assert client.post("/api/embed", json=body).json()["computed"] is True
    assert client.post("/api/embed", json=body).json()["computed"] is False
    other_level = dict(body, degradation={"type": "contrast", "level": 2})
    assert client.post("/api/embed", json=other_level).json()["computed"] is True


def test_cache_drops_the_least_recently_used_past_its_bytes():
    def embedding(fill: float) -> Embedding:
        return Embedding(torch.full((1, 4, 8, 8), fill), None, torch.zeros(1, 4, 8, 8), (32, 32), (32, 32))

    size = embedding(0).nbytes
    cache = EmbeddingCache(max_bytes=2 * size)
    cache.put("a", embedding(1))
    cache.put("b", embedding(2))
    assert cache.get("a") is not None  # now "b" is the least recently used
    cache.put("c", embedding(3))
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None
    assert cache.nbytes == 2 * size and len(cache) == 2
    tiny = EmbeddingCache(max_bytes=1)
    tiny.put("x", embedding(4))
    assert tiny.get("x") is not None  # the newest always stays


def test_concurrent_requests_from_two_tabs_get_the_same_masks(client):
    bodies = [{"image": image, "model": model, "box": box}
              for image in ("fog.png", "gauss_noise.png") for model in ("robust", "sam")
              for box in (BOX, [10, 50, 60, 120])]
    alone = [client.post("/api/predict", json=body).json()["mask"]["rle"] for body in bodies]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda body: client.post("/api/predict", json=body).json()["mask"]["rle"], bodies * 2))
    assert together == alone * 2
    assert len({rle["counts"] for rle in alone}) > 4  # the requests really differ


def test_segment_everything_equals_segment_without_prompts(folders, tmp_path):
    folder = folders[0]
    settings = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.3, "box_nms_thresh": 0.7}
    bench = workbench(folder, None)
    bench.generator_options = settings
    with running(bench) as server:
        answer = httpx.post(server.url + "/api/everything", json={"image": "fog.png"}, timeout=120).json()
        refused = httpx.post(server.url + "/api/save", json={"prompts": {"fog.png": [{"box": BOX}]}}, timeout=60)
    assert refused.status_code == 409 and "-o" in refused.json()["error"]
    run_cli("segment", str(folder / "fog.png"), "-o", str(tmp_path), "--points-per-side", "4")
    written = [iio.imread(path) > 127 for path in sorted((tmp_path / "fog").glob("*.png"), key=lambda p: int(p.stem))]
    assert len(answer["masks"]) == len(written) > 0
    for mask, reference in zip(answer["masks"], written):
        assert np.array_equal(rle_mask(mask["rle"]), reference)


def test_openapi_describes_every_route(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/info", "/api/images", "/api/image", "/api/embed", "/api/predict", "/api/everything", "/api/prompts", "/api/save"} <= set(paths)


@pytest.fixture(scope="module")
def glesam_checkpoint(tmp_path_factory) -> Path:
    """A GleSAM checkpoint on the built-in SAM whose decoder is shifted, so its masks differ from SAM's."""
    sam = build_robustsam(None, DEFAULT_CHECKPOINT)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in sam.mask_decoder.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    path = tmp_path_factory.mktemp("glesam") / "glesam.pth"
    torch.save(checkpoint_dict(GleSam(sam, build_enhancer(sam, lora_rank=4))), path)
    return path


def test_glesam_runs_beside_robustsam_and_sam_and_its_saves_replay(folders, glesam_checkpoint, tmp_path):
    folder, out = folders[0], tmp_path / "out"
    with running(workbench(folder, out, glesam_checkpoint=glesam_checkpoint)) as server:
        assert httpx.get(server.url + "/api/info").json()["models"] == ["robust", "sam", "glesam"]
        masks = {path: rle_mask(httpx.post(server.url + "/api/predict", json={"image": "fog.png", "model": path, "box": BOX},
                                           timeout=60).json()["mask"]["rle"]) for path in ("sam", "glesam")}
        saved = httpx.post(server.url + "/api/save", json={"prompts": {"fog.png": [{"box": BOX}]}, "model": "glesam"}, timeout=60)
    assert saved.status_code == 200 and not np.array_equal(masks["sam"], masks["glesam"])
    run_cli("segment", str(folder), "--prompts", str(out / "prompts.json"), "-o", str(tmp_path / "replay"), "--checkpoint", str(glesam_checkpoint))
    assert files(out / "masks") == files(tmp_path / "replay")
    assert np.array_equal(iio.imread(out / "masks" / "fog" / "0.png") > 127, masks["glesam"])


def _start_cli(folder: Path, *args: str) -> tuple[subprocess.Popen, list[str]]:
    """`robustsam serve folder --port 0 ...` in a subprocess, and its lines up to 'Ctrl-C'."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1]))
    process = subprocess.Popen([sys.executable, "-m", "robustsam_cli", "serve", str(folder), "--port", "0", "--device", "cpu", *args],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines = []
    for line in process.stdout:
        lines.append(line.strip())
        if line.startswith("Ctrl-C"):
            return process, lines
    process.wait()
    raise AssertionError("\n".join(lines))


def test_serve_on_all_interfaces_requires_a_token(folders):
    process, lines = _start_cli(folders[0], "--host", "0.0.0.0")
    try:
        url = next(line.split()[1] for line in lines if line.startswith("open "))
        base, token = url.split("/#token=")
        assert len(token) >= 24
        base = base.replace("0.0.0.0", "127.0.0.1")
        assert httpx.get(base + "/api/images").status_code == 401
        wrong = httpx.get(base + "/api/images", headers={"Authorization": "Bearer " + token[:-1]})
        assert wrong.status_code == 401 and "token" in wrong.json()["error"]
        assert httpx.post(base + "/api/save", json={"prompts": {}}).status_code == 401
        good = httpx.get(base + "/api/images", headers={"Authorization": "Bearer " + token})
        assert good.status_code == 200 and len(good.json()["images"]) == 2
        assert httpx.get(base + "/").status_code == 200  # the page holds no data; it reads the token from the address
    finally:
        process.terminate()
        process.wait(30)


def test_serve_on_loopback_by_default_and_refuses_a_bad_folder(folders, tmp_path, monkeypatch):
    served = {}
    monkeypatch.setattr(serve, "serve_forever", lambda app, sock: served.update(app=app, sock=sock))
    output = run_cli("serve", str(folders[0]), "--port", "0", "--device", "cpu").output
    url = next(line.split()[1] for line in output.splitlines() if line.startswith("open "))
    assert url.startswith("http://127.0.0.1:") and "token" not in url
    with BackgroundServer(served["app"], served["sock"]) as server:
        assert server.url + "/" == url
        assert httpx.get(url + "api/images").status_code == 200
        assert httpx.get(url + "api/images", headers={"host": "rebound.example"}).status_code == 400
    missing = CliRunner().invoke(cli, ["serve", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "nowhere" in missing.output
    with socket.socket() as busy:  # a port in use: one line, exit 2
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        refused = CliRunner().invoke(cli, ["serve", str(folders[0]), "--port", str(busy.getsockname()[1]), "--device", "cpu"])
    assert refused.exit_code == 2 and "cannot listen" in refused.output
