"""Tiled segmentation of large images: the grid, windowed TIFF reading, prompts routed to tiles and
stitched, segment-everything merged over seams, tiled TIFF labels, bad tiling options."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner

from core.data.large_scenes import write_large_scene
from core.data.prompt_files import Prompt
from core.inference import RobustAutomaticMaskGenerator
from core.inference.loading import open_predictor
from core.inference.mask_writers import MaskRecord
from core.inference.segment import AutomaticSegmenter, PromptSegmenter
from core.model.default_model import DEFAULT_CHECKPOINT
from core.tiling import (SEAMLESS, ArraySource, PlacedMask, TiffSource, TiledAutomaticSegmenter, TiledPromptSegmenter, TileGrid,
                         Window, merge_seams, write_label_tiff)
from robustsam_cli.main import cli

TILE, OVERLAP = 256, 64


@pytest.fixture(scope="module")
def predictor(one_thread):
    return open_predictor(DEFAULT_CHECKPOINT)


def scene(height: int, width: int, discs: list[tuple[int, int, int]]) -> tuple[np.ndarray, list[np.ndarray]]:
    """A textured grey image with flat-coloured discs (cx, cy, r) and their masks."""
    rng = np.random.default_rng(0)
    image = (np.array([90, 110, 100]) + rng.integers(0, 8, (height, width, 3))).astype(np.uint8)
    yy, xx = np.mgrid[:height, :width]
    colours = [(230, 40, 40), (40, 40, 230), (240, 230, 40), (40, 220, 60), (230, 60, 230)]
    masks = []
    for (cx, cy, r), colour in zip(discs, colours):
        mask = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
        image[mask] = colour
        masks.append(mask)
    return image, masks


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_grid_tiles_are_full_size_and_their_cores_split_the_image_once() -> None:
    grid = TileGrid(700, 1000, TILE, OVERLAP)
    owner = np.zeros((700, 1000), dtype=int)
    for index, window in enumerate(grid):
        assert (window.width, window.height) == (TILE, TILE)
        core = grid.core(index)
        assert window.contains(core.x0, core.y0, core.x1, core.y1)
        owner[core.y0 : core.y1, core.x0 : core.x1] += 1
    assert (owner == 1).all()
    assert grid.shape == (4, 5) and TileGrid(100, 80, TILE, OVERLAP).shape == (1, 1)


@pytest.mark.parametrize("options", [dict(tile=(64, 64)), dict(rowsperstrip=50), dict(tile=(32, 48), bigtiff=True),
                                     dict(tile=(64, 64), subifds=1)])
def test_tiff_windows_equal_the_slices_of_the_whole_image(tmp_path: Path, options: dict) -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 65535, (300, 410, 3), dtype=np.uint16)
    path = tmp_path / "big.tif"
    with tifffile.TiffWriter(path, bigtiff=options.pop("bigtiff", False)) as tiff:
        tiff.write(image, compression="zlib", photometric="rgb", **options)
        if options.get("subifds"):  # a pyramid: the half-size level below the full one
            tiff.write(image[::2, ::2], compression="zlib", photometric="rgb", subfiletype=1, tile=(64, 64))
    source = TiffSource(path)
    expected = np.round(image.astype(np.float32) * (255 / 65535)).astype(np.uint8)
    for window in (Window(0, 0, 410, 300), Window(37, 51, 300, 299), Window(409, 0, 410, 1)):
        assert np.array_equal(source.read(window), expected[window.y0 : window.y1, window.x0 : window.x1])
    source.close()


def test_a_prompt_inside_one_tile_equals_that_tile_segmented_alone(predictor) -> None:
    image, _ = scene(600, 700, [(250, 100, 40), (520, 140, 35)])
    prompts = [Prompt(box=(210.0, 60.0, 290.0, 140.0)), Prompt(points=((520.0, 140.0), (470.0, 120.0)), labels=(1, 0))]
    segmenter = PromptSegmenter(predictor, multimask=True, all_masks=True)
    tiled = TiledPromptSegmenter(segmenter, TILE, OVERLAP)(ArraySource(image), prompts)
    grid = TileGrid(600, 700, TILE, OVERLAP)
    for index, prompt in enumerate(prompts):
        holder = grid.window(grid.best_containing(*prompt.box) if prompt.box else grid.best_containing(470, 120, 520, 140))
        crop = image[holder.y0 : holder.y1, holder.x0 : holder.x1]
        shifted = Prompt(box=None if prompt.box is None else (prompt.box[0] - holder.x0, prompt.box[1] - holder.y0, prompt.box[2] - holder.x0, prompt.box[3] - holder.y0),
                         points=tuple((x - holder.x0, y - holder.y0) for x, y in prompt.points), labels=prompt.labels)
        alone = segmenter(crop, [shifted])
        for record, placed in zip(alone, tiled[3 * index : 3 * index + 3]):
            assert np.array_equal(placed.mask[holder.y0 : holder.y1, holder.x0 : holder.x1], record.mask)
            assert placed.area == record.area
            assert (placed.predicted_iou, placed.stability_score) == (record.predicted_iou, record.stability_score)


def colour_segmenter(image: np.ndarray, prompts: list[Prompt]) -> list[MaskRecord]:
    """A perfect model of `scene` images: the disc-coloured pixels inside each prompt's box."""
    foreground = np.abs(image.astype(int) - (94, 114, 104)).sum(axis=2) > 100
    records = []
    for prompt in prompts:
        x0, y0, x1, y1 = (int(round(v)) for v in prompt.box)
        mask = np.zeros_like(foreground)
        mask[y0:y1, x0:x1] = foreground[y0:y1, x0:x1]
        records.append(MaskRecord(mask, 0.9, 0.8, (0, 0, 0, 0), (0.0, 0.0), (0, 0, image.shape[1], image.shape[0])))
    return records


def test_a_box_larger_than_a_tile_is_stitched_from_the_tiles_it_covers() -> None:
    image, discs = scene(600, 700, [(350, 300, 200), (600, 80, 40)])
    prompts = [Prompt(box=(150.0, 100.0, 551.0, 501.0)), Prompt(box=(550.0, 30.0, 651.0, 131.0))]
    stitched = TiledPromptSegmenter(colour_segmenter, TILE, OVERLAP)(ArraySource(image), prompts)  # type: ignore[arg-type]
    assert [np.array_equal(mask.mask, disc) for mask, disc in zip(stitched, discs)] == [True, True]
    assert stitched[0].crop_box == (0, 0, 700, 600) and stitched[0].point == (350.5, 300.5)


def _cut(masks: list[np.ndarray], grid: TileGrid) -> list[list[PlacedMask]]:
    """What a perfect per-tile segmenter sees: each object cut to each tile it enters."""
    size = masks[0].shape
    per_tile = []
    for window in grid:
        records = [MaskRecord(m[window.y0 : window.y1, window.x0 : window.x1], 0.9, 0.9, (0, 0, 0, 0), (0.0, 0.0), (0, 0, window.width, window.height))
                   for m in masks if m[window.y0 : window.y1, window.x0 : window.x1].any()]
        per_tile.append([PlacedMask.from_record(record, window, size) for record in records])
    return per_tile


def test_merging_joins_objects_over_seams_and_removes_overlap_duplicates() -> None:
    _, discs = scene(600, 700, [(192, 200, 60), (350, 330, 140), (640, 40, 30), (100, 500, 20)])
    grid = TileGrid(600, 700, TILE, OVERLAP)
    per_tile = _cut(discs, grid)
    assert sum(map(len, per_tile)) > 2 * len(discs)  # the objects cross seams and lie in overlaps
    merged = merge_seams(per_tile, grid)
    assert len(merged) == len(discs)
    for mask, disc in zip(sorted(merged, key=lambda m: m.window.y0 * 1000 + m.window.x0), sorted(discs, key=lambda d: tuple(np.argwhere(d)[0]))):
        assert np.array_equal(mask.mask, disc)


def test_segment_everything_in_tiles_finds_each_object_crossing_a_seam_once(predictor) -> None:
    image, discs = scene(448, 448, [(192, 120, 45), (300, 300, 50), (110, 330, 35)])
    generator = RobustAutomaticMaskGenerator(predictor.model, predictor=predictor, points_per_side=8, pred_iou_thresh=0.0, stability_score_thresh=0.3)
    masks = TiledAutomaticSegmenter(AutomaticSegmenter(generator), TILE, OVERLAP)(ArraySource(image))
    for disc in discs:
        matches = [mask for mask in masks if iou(mask.mask, disc) > 0.5]
        assert len(matches) == 1 and iou(matches[0].mask, disc) > 0.65  # the tiny model: 0.70 untiled on the middle disc


def test_label_tiff_keeps_the_most_confident_mask_where_masks_overlap(tmp_path: Path) -> None:
    size = (300, 520)
    a, b = np.zeros(size, bool), np.zeros(size, bool)
    a[10:200, 20:400], b[100:290, 300:510] = True, True
    masks = [PlacedMask.from_mask(m, (0, 0), size, score, 1.0, (0.0, 0.0), (0, 0, 520, 300)) for m, score in ((a, 0.7), (b, 0.9))]
    write_label_tiff(tmp_path / "labels.tif", masks, *size)
    labels = tifffile.imread(tmp_path / "labels.tif")
    expected = np.zeros(size, np.uint16)
    expected[a], expected[b] = 1, 2
    assert labels.dtype == np.uint16 and np.array_equal(labels, expected)
    assert tifffile.TiffFile(tmp_path / "labels.tif").pages[0].is_tiled


def test_tiled_cli_label_output_matches_the_tiles_and_writes_a_tiled_tiff(tmp_path: Path) -> None:
    image, discs = scene(600, 700, [(250, 100, 40), (420, 300, 35)])
    tifffile.imwrite(tmp_path / "big.tif", image, tile=(128, 128), photometric="rgb")
    (tmp_path / "prompts.json").write_text(json.dumps({"big.tif": [{"box": [210, 60, 290, 140]}, {"box": [385, 265, 455, 335]}]}))
    result = CliRunner().invoke(cli, ["segment", str(tmp_path / "big.tif"), "--prompts", str(tmp_path / "prompts.json"), "-o", str(tmp_path / "out"),
                                      "--format", "label", "--tile", str(TILE), "--tile-overlap", str(OVERLAP)])
    assert result.exit_code == 0, result.output
    labels = tifffile.imread(tmp_path / "out" / "big.tif")
    assert labels.shape == (600, 700)
    for k, disc in enumerate(discs):
        assert iou(labels == k + 1, disc) > 0.8


def test_tiled_geojson_without_crs_equals_the_untiled_geojson_when_one_tile_covers_the_image(tmp_path: Path) -> None:
    image, _ = scene(200, 240, [(60, 70, 30), (150, 120, 35)])
    tifffile.imwrite(tmp_path / "small.tif", image, photometric="rgb")
    (tmp_path / "prompts.json").write_text(json.dumps({"small.tif": [{"box": [30, 40, 90, 100]}, {"box": [110, 80, 190, 160]}]}))
    collections = []
    for name, flags in (("untiled", []), ("tiled", ["--tile", "256", "--tile-overlap", "0"])):
        result = CliRunner().invoke(cli, ["segment", str(tmp_path / "small.tif"), "--prompts", str(tmp_path / "prompts.json"),
                                          "-o", str(tmp_path / name), "--format", "geojson", *flags])
        assert result.exit_code == 0, result.output
        collections.append(json.loads((tmp_path / name / "small.geojson").read_text()))
    untiled, tiled = collections
    assert len(untiled["features"]) == 2 and "crs" not in tiled
    assert tiled == untiled


@pytest.mark.parametrize("flags, message", [
    (["--tile", "64", "--tile-overlap", "64"], "tile size 64 is not larger than the tile overlap 64: tiles would not advance"),
    (["--tile", "256", "--tile-overlap", "-1"], "tile overlap -1: must not be negative"),
])
def test_bad_tiling_is_one_line_and_exit_2(tmp_path: Path, flags: list[str], message: str) -> None:
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((64, 64, 3), np.uint8))
    result = CliRunner().invoke(cli, ["segment", str(tmp_path / "a.tif"), "-o", str(tmp_path / "out"), *flags])
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert errors == [f"Error: {message}"] and not (tmp_path / "out").exists()


# Runs `robustsam` commands one after another in one process, printing its peak RSS (KiB) after each.
PEAK_RSS_AFTER_EACH = """
import json, resource, sys
from robustsam_cli.main import cli
for args in json.loads(sys.argv[1]):
    try:
        cli(args, standalone_mode=False)
    finally:
        print("peak_rss_kib", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, flush=True)
"""
# What a 10,000 x 10,000 tiled run may add to the peak memory of the same run on a 1,000 x 1,000
# image: a third of the decoded image (300 MB), half of its 16-bit label image (200 MB).
BOUNDED_GROWTH_MB = 100


@pytest.mark.slow
def test_a_10k_image_is_segmented_in_bounded_memory(tmp_path: Path) -> None:
    commands = []
    for size in (1000, 10_000):
        discs = [(300, 300, 60), (size - 400, size - 300, 50), (size // 2, size // 2, 70)]
        write_large_scene(tmp_path / f"scene{size}.tif", size, size, discs)
        prompts = {f"scene{size}.tif": [{"box": [cx - r - 5, cy - r - 5, cx + r + 5, cy + r + 5]} for cx, cy, r in discs]}
        (tmp_path / f"prompts{size}.json").write_text(json.dumps(prompts))
        commands.append(["segment", str(tmp_path / f"scene{size}.tif"), "--prompts", str(tmp_path / f"prompts{size}.json"),
                         "-o", str(tmp_path / "out"), "--format", "label", "--tile", "512", "--tile-overlap", "64"])
    done = subprocess.run([sys.executable, "-c", PEAK_RSS_AFTER_EACH, json.dumps(commands)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    small, large = [int(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("peak_rss_kib")]
    assert (large - small) / 1024 < BOUNDED_GROWTH_MB
    with tifffile.TiffFile(tmp_path / "out" / "scene10000.tif") as labels:
        assert labels.pages[0].shape == (10_000, 10_000) and labels.pages[0].is_tiled
        window = labels.pages[0].asarray()[5000 - 80 : 5000 + 80, 5000 - 80 : 5000 + 80]
    yy, xx = np.mgrid[-80:80, -80:80]
    assert iou(window == 3, xx**2 + yy**2 < 70**2) > 0.8


def _write_geotiff(path: Path, image: np.ndarray, crs: str | None) -> tuple[float, float, float]:
    """Writes `image` as a GeoTIFF with 0.5 m pixels whose top-left corner is at (500000, 4100000)
    (in `crs`, UTM zone 33N: EPSG:32633); returns (x origin, y origin, pixel size)."""
    import rasterio
    from affine import Affine  # rasterio's transform type

    x_origin, y_origin, pixel = 500_000.0, 4_100_000.0, 0.5
    profile = dict(driver="GTiff", height=image.shape[0], width=image.shape[1], count=3, dtype="uint8", tiled=True,
                   blockxsize=128, blockysize=128, transform=Affine(pixel, 0.0, x_origin, 0.0, -pixel, y_origin))
    if crs is not None:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(np.moveaxis(image, -1, 0))
    return x_origin, y_origin, pixel


def test_geotiff_prompts_in_map_coordinates_give_the_masks_of_the_same_prompts_in_pixels(tmp_path: Path) -> None:
    image, _ = scene(600, 700, [(250, 100, 40), (420, 300, 35)])
    x_origin, y_origin, pixel = _write_geotiff(tmp_path / "geo.tif", image, "EPSG:32633")
    boxes = [[210, 60, 290, 140], [385, 265, 455, 335]]
    to_map = lambda x, y: [x_origin + x * pixel, y_origin - y * pixel]  # noqa: E731
    (tmp_path / "pixels.json").write_text(json.dumps({"geo.tif": [{"box": box} for box in boxes]}))
    (tmp_path / "map.json").write_text(json.dumps({"geo.tif": [{"box": to_map(x0, y1) + to_map(x1, y0)} for x0, y0, x1, y1 in boxes]}))
    for name, coords in (("pixels", "pixel"), ("map", "map")):
        result = CliRunner().invoke(cli, ["segment", str(tmp_path / "geo.tif"), "--prompts", str(tmp_path / f"{name}.json"), "-o", str(tmp_path / name),
                                          "--tile", str(TILE), "--tile-overlap", str(OVERLAP), "--prompt-coords", coords])
        assert result.exit_code == 0, result.output
    for k in range(len(boxes)):
        assert (tmp_path / "map" / "geo" / f"{k}.png").read_bytes() == (tmp_path / "pixels" / "geo" / f"{k}.png").read_bytes()


def test_map_prompts_on_a_tiff_without_crs_are_one_line_and_exit_2(tmp_path: Path) -> None:
    image, _ = scene(200, 200, [(100, 100, 30)])
    _write_geotiff(tmp_path / "plain.tif", image, None)
    (tmp_path / "map.json").write_text(json.dumps({"plain.tif": [{"box": [500010, 4099950, 500040, 4099980]}]}))
    result = CliRunner().invoke(cli, ["segment", str(tmp_path / "plain.tif"), "--prompts", str(tmp_path / "map.json"), "-o", str(tmp_path / "out"),
                                      "--tile", "128", "--tile-overlap", "16", "--prompt-coords", "map"])
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert errors == [f"Error: {tmp_path / 'plain.tif'}: has no CRS, so prompts in map coordinates cannot be placed"]
    assert not (tmp_path / "out").exists()


def test_degrading_tile_by_tile_equals_the_whole_image_for_the_seamless_types(tmp_path: Path) -> None:
    image, _ = scene(300, 420, [(100, 100, 60), (250, 200, 80)])
    image = (image.astype(int) + np.linspace(0, 60, 420)[None, :, None]).clip(0, 255).astype(np.uint8)
    (tmp_path / "clear").mkdir()
    tifffile.imwrite(tmp_path / "clear" / "big.tif", image, tile=(64, 64), photometric="rgb")
    kinds = ",".join(SEAMLESS + ("gauss_noise",))
    for name, extra in (("whole", []), ("tiled", ["--tile", "128"])):
        result = CliRunner().invoke(cli, ["degrade", str(tmp_path / "clear"), "-o", str(tmp_path / name), "--types", kinds, "--device", "cpu", *extra])
        assert result.exit_code == 0, result.output
    for kind in SEAMLESS:
        tiled = tifffile.TiffFile(tmp_path / "tiled" / kind / "big.tif")
        assert tiled.pages[0].is_tiled
        assert np.array_equal(tiled.asarray(), tifffile.imread(tmp_path / "whole" / kind / "big.tif")), kind
    noisy = tifffile.imread(tmp_path / "tiled" / "gauss_noise" / "big.tif").astype(int)
    assert np.abs(noisy - image).mean() > 5  # degraded, only not equal to the whole image


def test_degrade_tile_not_a_multiple_of_16_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "clear").mkdir()
    tifffile.imwrite(tmp_path / "clear" / "a.tif", np.zeros((64, 64, 3), np.uint8))
    result = CliRunner().invoke(cli, ["degrade", str(tmp_path / "clear"), "-o", str(tmp_path / "out"), "--types", "fog", "--tile", "100"])
    assert result.exit_code == 2 and not (tmp_path / "out").exists()
    assert [line for line in result.output.splitlines() if line.startswith("Error")] == [
        "Error: tile size 100: must be a positive multiple of 16 pixels (TIFF tiles)"]


def test_eval_scores_tiled_segmentation_against_the_full_size_masks(tmp_path: Path, predictor) -> None:
    from core.evaluation.metrics import iou as mask_iou

    image, discs = scene(600, 700, [(250, 100, 40), (420, 300, 35), (150, 420, 50)])
    for folder in ("clear", "masks"):
        (tmp_path / "data" / folder).mkdir(parents=True)
    tifffile.imwrite(tmp_path / "data" / "clear" / "big.tif", image, photometric="rgb")
    np.save(tmp_path / "data" / "masks" / "big.npy", np.stack(discs))
    result = CliRunner().invoke(cli, ["eval", "--split", "custom", "--data", str(tmp_path / "data"), "--model", "a=default", "--prompt", "box",
                                      "--tile", str(TILE), "--tile-overlap", str(OVERLAP), "--batch-size", "1", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "out" / "results.json").read_text())
    clear = next(row for row in document["tables"][0]["rows"] if row["label"] == "Clear")["values"]["a"]
    boxes = next(iter(json.loads((tmp_path / "out" / "prompts.json").read_text())["datasets"].values()))["big"]
    masks = TiledPromptSegmenter(PromptSegmenter(predictor, batch_size=1), TILE, OVERLAP)(
        ArraySource(image), [Prompt(box=tuple(float(v) for v in prompt["box"])) for prompt in boxes])
    assert clear["iou"] == pytest.approx(np.mean([mask_iou(mask.mask, disc) for mask, disc in zip(masks, discs)]), abs=1e-9)
    assert document["tiling"] == [TILE, OVERLAP]


def test_geotiff_round_trip_gives_geojson_in_its_crs_that_maps_back_onto_the_masks(tmp_path: Path) -> None:
    import imageio.v3 as iio

    from core.geometry import polygons_to_mask

    image, _ = scene(600, 700, [(250, 100, 40), (420, 300, 35)])
    x_origin, y_origin, pixel = _write_geotiff(tmp_path / "geo.tif", image, "EPSG:32633")
    (tmp_path / "prompts.json").write_text(json.dumps({"geo.tif": [{"box": [210, 60, 290, 140]}, {"box": [385, 265, 455, 335]}]}))
    for output_format in ("png", "geojson"):
        result = CliRunner().invoke(cli, ["segment", str(tmp_path / "geo.tif"), "--prompts", str(tmp_path / "prompts.json"), "-o", str(tmp_path / "out"),
                                          "--tile", str(TILE), "--tile-overlap", str(OVERLAP), "--format", output_format])
        assert result.exit_code == 0, result.output
    collection = json.loads((tmp_path / "out" / "geo.geojson").read_text())
    assert collection["crs"]["properties"]["name"] == "EPSG:32633" and len(collection["features"]) == 2
    for k, feature in enumerate(collection["features"]):
        polygons = [[np.array([((x - x_origin) / pixel, (y_origin - y) / pixel) for x, y in ring[:-1]]) for ring in polygon]
                    for polygon in feature["geometry"]["coordinates"]]
        exterior = np.array(feature["geometry"]["coordinates"][0][0])
        assert 0.5 * np.sum(exterior[:-1, 0] * exterior[1:, 1] - exterior[1:, 0] * exterior[:-1, 1]) > 0  # counter-clockwise in map coordinates
        assert np.array_equal(polygons_to_mask(polygons, 600, 700), iio.imread(tmp_path / "out" / "geo" / f"{k}.png") > 0)
