"""Prompt sampling and `robustsam eval` end to end on a tiny synthetic Robust-Seg layout with vit_micro."""

import importlib.util
import json

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from click.testing import CliRunner

import core
import core.evaluation.protocol
from core.model.checkpoint import is_robust_key
from core.errors import InputError
from core.evaluation.metrics import ApInstance, boundary_iou, dice, iou, mask_ap, pixel_accuracy
from core.io import encode_rle
from core.evaluation.prompt_sampling import PromptBook, mask_box, sample_prompts
from robustsam_cli.main import cli

HEIGHT, WIDTH = 96, 128


def _scene(index):
    """An image with a rectangle and a disc, their masks, and an empty third mask."""
    image = np.full((HEIGHT, WIDTH, 3), 40, np.uint8)
    rectangle = np.zeros((HEIGHT, WIDTH), bool)
    rectangle[10 + 5 * index : 50, 20 : 60 + 5 * index] = True
    rows, cols = np.mgrid[:HEIGHT, :WIDTH]
    disc = (rows - 60) ** 2 + (cols - 90) ** 2 < (15 + index) ** 2
    image[rectangle] = (200, 50, 50)
    image[disc] = (50, 200, 80)
    return image, np.stack([rectangle, disc, np.zeros_like(disc)])


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """<root>/MSRA10K in the Robust-Seg layout (3 images; dark and noise degradations) and checkpoints:
    two vit_micro models and a plain-SAM checkpoint (the first one without its robust modules)."""
    root = tmp_path_factory.mktemp("eval")
    split = root / "data" / "MSRA10K"
    for folder in ("clear", "masks", "dark", "noise"):
        (split / folder).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index in range(3):
        image, masks = _scene(index)
        iio.imwrite(split / "clear" / f"im{index}.png", image)
        np.save(split / "masks" / f"im{index}.npy", masks)
        iio.imwrite(split / "dark" / f"im{index}.png", (image // 2).astype(np.uint8))
        noisy = np.clip(image + rng.normal(0, 25, image.shape), 0, 255).astype(np.uint8)
        iio.imwrite(split / "noise" / f"im{index}.png", noisy)
    torch.manual_seed(0)
    state = core.build_robustsam("vit_micro").state_dict()
    torch.save(state, root / "robust_a.pth")
    torch.save({k: v for k, v in state.items() if not is_robust_key(k)}, root / "plain_sam.pth")
    torch.manual_seed(1)
    torch.save(core.build_robustsam("vit_micro").state_dict(), root / "robust_b.pth")
    return root


def _run(*args):
    result = CliRunner().invoke(cli, ["eval", *map(str, args)])
    return result


def _table(document, dataset):
    return next(t for t in document["tables"] if t["dataset"] == dataset)


def _direct_means(checkpoint, robust, images, prompts, prompt_type="points"):
    """Mean metrics over objects, predicting one object at a time with the predictor's numpy API."""
    predictor = core.RobustPredictor(core.build_robustsam(None, checkpoint), robust=robust)
    values = {"iou": [], "dice": [], "pixel_accuracy": [], "boundary_iou": []}
    instances = []
    for name, image, masks in images:
        predictor.set_image(image)
        for index, mask in enumerate(masks):
            prompt = prompts[name][index]
            if prompt is None:
                continue
            if prompt_type == "points":
                points = np.asarray(prompt["points"], np.float32)
                pred, score, _ = predictor.predict(points, np.ones(len(points)), multimask_output=False)
            else:
                pred, score, _ = predictor.predict(box=np.asarray(prompt["box"], np.float32), multimask_output=False)
            for key, metric in (("iou", iou), ("dice", dice), ("pixel_accuracy", pixel_accuracy), ("boundary_iou", boundary_iou)):
                values[key].append(metric(pred[0], mask))
            gt_rle, pred_rle = encode_rle(np.stack([mask, pred[0]]))
            instances.append(ApInstance(name, gt_rle, pred_rle, float(score[0])))
    return {key: float(np.mean(v)) for key, v in values.items()}, instances


def _read_condition(workspace, condition, limit):
    split = workspace / "data" / "MSRA10K"
    folder = "clear" if condition == "clear" else condition
    return [
        (f"im{i}", iio.imread(split / folder / f"im{i}.png"), np.load(split / "masks" / f"im{i}.npy")) for i in range(limit)
    ]


def test_prompts_are_seeded_per_image_name():
    _, masks = _scene(0)
    first = sample_prompts(masks, "im0", seed=0)
    assert first[2] is None  # empty mask: no prompt
    again = sample_prompts(masks, "im0", seed=0)
    for a, b in zip(first[:2], again[:2]):
        np.testing.assert_array_equal(a.points, b.points)
    assert not np.array_equal(first[0].points, sample_prompts(masks, "im1", seed=0)[0].points)
    assert not np.array_equal(first[0].points, sample_prompts(masks, "im0", seed=1)[0].points)
    for prompt, mask in zip(first[:2], masks):
        assert prompt.points.shape == (3, 2) and len({tuple(p) for p in prompt.points}) == 3
        assert mask[prompt.points[:, 1], prompt.points[:, 0]].all()  # xy inside the object
    np.testing.assert_array_equal(first[0].box, [20, 10, 59, 49])
    np.testing.assert_array_equal(mask_box(masks[1]), first[1].box)
    # A one-pixel object repeats its only pixel.
    tiny = np.zeros((1, 5, 5), bool)
    tiny[0, 2, 3] = True
    np.testing.assert_array_equal(sample_prompts(tiny, "t", 0)[0].points, [[3, 2]] * 3)


def test_prompt_book_round_trip_and_bad_files(tmp_path):
    _, masks = _scene(1)
    book = PromptBook(seed=3)
    # The order in which images are met does not change their prompts.
    other = PromptBook(seed=3)
    other.prompts_for("d", "im9", _scene(2)[1])
    expected = book.prompts_for("d", "im1", masks)
    np.testing.assert_array_equal(other.prompts_for("d", "im1", masks)[0].points, expected[0].points)
    book.save(tmp_path / "prompts.json")
    loaded = PromptBook.load(tmp_path / "prompts.json")
    assert loaded.seed == 3 and loaded.num_points == 3
    read_back = loaded.prompts_for("d", "im1", masks)
    assert read_back[2] is None
    np.testing.assert_array_equal(read_back[1].points, expected[1].points)
    np.testing.assert_array_equal(read_back[1].box, expected[1].box)
    with pytest.raises(InputError, match="has prompts for 3 objects, the image has 2"):
        loaded.prompts_for("d", "im1", masks[:2])
    with pytest.raises(InputError, match="outside its 10x10 image"):
        loaded.prompts_for("d", "im1", np.zeros((3, 10, 10), bool))

    document = json.loads((tmp_path / "prompts.json").read_text())
    document["datasets"]["d"]["im1"][0] = {"points": [[1, 2, 3]], "box": [0, 0, 1, 1]}
    (tmp_path / "bad.json").write_text(json.dumps(document))
    with pytest.raises(InputError, match="bad.json: d/im1: points must be"):
        PromptBook.load(tmp_path / "bad.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(InputError, match="bad.json: not a JSON prompts file"):
        PromptBook.load(tmp_path / "bad.json")


def test_eval_tables_equal_direct_metrics(workspace, tmp_path):
    out = tmp_path / "out"
    result = _run(
        # One prompt per decoder call, as in the direct computation: batched matrix products round
        # differently and can flip a pixel whose logit is within 1e-7 of the threshold.
        "--split", "seen", "--data", workspace / "data", "--limit", 2, "--batch-size", 1, "--out", out,
        "--model", f"robust={workspace / 'robust_a.pth'}",
        "--model", f"sam={workspace / 'robust_a.pth'}:sam",
        "--model", f"plain={workspace / 'plain_sam.pth'}",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "LVIS: skipped" in result.output  # only MSRA10K is present
    assert "plain_sam.pth has no RobustSAM modules; evaluating it on SAM's path" in result.output
    if importlib.util.find_spec("matplotlib") is None:
        assert "Bar charts skipped: matplotlib is not installed" in result.output
    else:
        charts = sorted(path.name for path in (out / "charts").iterdir())
        assert charts == ["MSRA10K_iou.png"] and iio.imread(out / "charts" / "MSRA10K_iou.png").ndim == 3
    document = json.loads((out / "results.json").read_text())
    assert document["skipped"][0]["dataset"] == "LVIS"
    assert [m["path"] for m in document["models"]] == ["robust", "sam", "robust"]
    assert [t["dataset"] for t in document["tables"]] == ["MSRA10K"]
    rows = _table(document, "MSRA10K")["rows"]
    assert [(r["label"], r["kind"]) for r in rows] == [
        ("dark", "condition"), ("noise", "condition"), ("Degrade", "degrade"), ("Clear", "clear"), ("Average", "average")
    ]  # fmt: skip
    # 2 images with 2 non-empty objects each per condition.
    assert [(r["images"], r["objects"]) for r in rows] == [(2, 4), (2, 4), (4, 8), (2, 4), (6, 12)]

    prompts = json.loads((out / "prompts.json").read_text())["datasets"]["MSRA10K"]
    by_label = {row["label"]: row["values"] for row in rows}
    for model, checkpoint, robust in (("robust", "robust_a.pth", True), ("sam", "robust_a.pth", False)):
        for condition, label in (("dark", "dark"), ("noise", "noise"), ("clear", "Clear")):
            expected, _ = _direct_means(workspace / checkpoint, robust, _read_condition(workspace, condition, 2), prompts)
            assert by_label[label][model] == pytest.approx(expected, abs=1e-9)
    for metric, value in by_label["Degrade"]["robust"].items():
        assert value == pytest.approx((by_label["dark"]["robust"][metric] + by_label["noise"]["robust"][metric]) / 2)
        three = [by_label[label]["robust"][metric] for label in ("dark", "noise", "Clear")]
        assert by_label["Average"]["robust"][metric] == pytest.approx(np.mean(three))
    # The robust and SAM paths differ; a checkpoint without robust modules runs SAM's path.
    assert by_label["Clear"]["robust"]["iou"] != by_label["Clear"]["sam"]["iou"]
    assert by_label["Clear"]["plain"] == by_label["Clear"]["sam"]

    table_md = (out / "results.md").read_text()
    assert "### MSRA10K" in table_md and "| **Degrade** | 4 | 8 |" in table_md
    assert "| Condition | Images | Objects | robust IoU | robust Dice | robust PA | robust BIoU | sam IoU" in table_md


def test_eval_resumes_from_cache_and_replays_prompts(workspace, tmp_path, monkeypatch):
    data = workspace / "data" / "MSRA10K"
    model = f"a={workspace / 'robust_b.pth'}"
    first = _run("--data", data, "--model", model, "--limit", 1, "--out", tmp_path / "first")
    assert first.exit_code == 0, first.output
    tables = json.loads((tmp_path / "first" / "results.json").read_text())["tables"]
    # Everything is cached: a second run builds no model. A line cut short by an interruption is ignored.
    with (tmp_path / "first" / "cache" / "a.jsonl").open("a") as handle:
        handle.write('{"dataset": "MSRA10K", "cond')

    def no_model(*args, **kwargs):
        raise AssertionError("the cache should have answered")

    with monkeypatch.context() as patch:
        patch.setattr(core.evaluation.protocol, "load_predictor", no_model)
        again = _run("--data", data, "--model", model, "--limit", 1, "--out", tmp_path / "first")
    assert again.exit_code == 0, again.output
    assert json.loads((tmp_path / "first" / "results.json").read_text())["tables"] == tables

    # Another seed gives other prompts, unless the first run's prompts file is replayed.
    prompts_file = tmp_path / "first" / "prompts.json"
    other = _run("--data", data, "--model", model, "--limit", 1, "--seed", 7, "--out", tmp_path / "other")
    assert other.exit_code == 0, other.output
    assert (tmp_path / "other" / "prompts.json").read_text() != prompts_file.read_text()
    replay = _run("--data", data, "--model", model, "--limit", 1, "--seed", 7, "--prompts-file", prompts_file, "--out", tmp_path / "replay")
    assert replay.exit_code == 0, replay.output
    assert json.loads((tmp_path / "replay" / "prompts.json").read_text()) == json.loads(prompts_file.read_text())
    assert json.loads((tmp_path / "replay" / "results.json").read_text())["tables"] == tables


def test_eval_box_prompts_report_coco_ap(workspace, tmp_path):
    out = tmp_path / "out"
    data = workspace / "data" / "MSRA10K"
    result = _run("--data", data, "--prompt", "box", "--model", f"a={workspace / 'robust_a.pth'}", "--limit", 3, "--out", out)
    assert result.exit_code == 0, result.output
    document = json.loads((out / "results.json").read_text())
    assert document["metrics"] == ["iou", "dice", "pixel_accuracy", "boundary_iou", "ap", "ap_s", "ap_m", "ap_l"]
    clear = next(r for r in _table(document, "MSRA10K")["rows"] if r["label"] == "Clear")["values"]["a"]
    prompts = json.loads((out / "prompts.json").read_text())["datasets"]["MSRA10K"]
    expected, instances = _direct_means(workspace / "robust_a.pth", True, _read_condition(workspace, "clear", 3), prompts, "box")
    ap = mask_ap(instances)
    # All prompts of an image are decoded in one batch here: a pixel at the threshold may flip
    # (one pixel of an object moves its IoU by about 1e-4).
    assert clear["iou"] == pytest.approx(expected["iou"], abs=1e-3)
    assert clear["ap"] == pytest.approx(ap["ap"], abs=0.02) and clear["ap_m"] == pytest.approx(ap["ap_m"], abs=0.02)
    assert clear["ap_l"] is None  # no large object: NaN, written as null


def test_eval_bad_input(workspace, tmp_path):
    data = workspace / "data" / "MSRA10K"
    checkpoint = workspace / "robust_a.pth"
    cases = [
        (["--data", data, "--model", "nocheckpoint"], "--model nocheckpoint: expected NAME=CHECKPOINT[:sam]"),
        (["--data", data, "--model", f"a={tmp_path / 'none.pth'}"], "none.pth: no such checkpoint file"),
        (["--data", data, "--model", f"a={checkpoint}", "--model", f"a={checkpoint}:sam"], "model names must differ"),
        (["--split", "real", "--data", tmp_path, "--model", f"a={checkpoint}"], "none of the datasets of split real was found"),
    ]
    (tmp_path / "prompts.json").write_text('{"format": "other"}')
    cases.append((["--data", data, "--model", f"a={checkpoint}", "--prompts-file", tmp_path / "prompts.json"], "prompts.json: not a robustsam prompts file"))
    for args, message in cases:
        result = _run(*args, "--out", tmp_path / "out")
        assert result.exit_code == 2, result.output
        assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "results.json").exists()


def test_eval_several_datasets_add_an_all_table(workspace, tmp_path):
    # MSRA10K (clear, dark, noise) and an LVIS with other images and only the dark degradation.
    source = workspace / "data" / "MSRA10K"
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "MSRA10K").symlink_to(source)
    for folder in ("clear", "masks", "dark"):
        (tmp_path / "data" / "lvis" / folder).mkdir(parents=True)
        for path in (source / folder).glob("im2.*"):
            (tmp_path / "data" / "lvis" / folder / path.name).write_bytes(path.read_bytes())
    out = tmp_path / "out"
    result = _run("--split", "seen", "--data", tmp_path / "data", "--model", f"a={workspace / 'robust_a.pth'}", "--limit", 1, "--out", out)
    assert result.exit_code == 0, result.output
    document = json.loads((out / "results.json").read_text())
    assert [t["dataset"] for t in document["tables"]] == ["MSRA10K", "LVIS", "all"]
    rows = {name: {r["label"]: r for r in _table(document, name)["rows"]} for name in ("MSRA10K", "LVIS", "all")}
    merged = rows["all"]
    assert list(merged) == ["dark", "noise", "Degrade", "Clear", "Average"]
    # Each condition row is the mean over the datasets that have the condition.
    assert rows["MSRA10K"]["dark"]["values"] != rows["LVIS"]["dark"]["values"]
    assert merged["noise"]["values"] == rows["MSRA10K"]["noise"]["values"]
    for label in ("dark", "Clear"):
        assert merged[label]["images"] == 2
        for metric, value in merged[label]["values"]["a"].items():
            mean = (rows["MSRA10K"][label]["values"]["a"][metric] + rows["LVIS"][label]["values"]["a"][metric]) / 2
            assert value == pytest.approx(mean)
    assert merged["Degrade"]["values"]["a"]["iou"] == pytest.approx(
        (merged["dark"]["values"]["a"]["iou"] + merged["noise"]["values"]["a"]["iou"]) / 2
    )
    assert "### all" in (out / "results.md").read_text()


def test_python_evaluate_writes_the_clis_files(workspace, tmp_path):
    """`core.evaluation.evaluate` writes the run's document itself: the same files as `robustsam eval`."""
    from core.data.datasets import split_datasets
    from core.evaluation import EvalPlan, EvalSettings, ModelSpec, PromptBook, evaluate

    cli_out, api_out = tmp_path / "cli", tmp_path / "api"
    models = [f"robust={workspace / 'robust_a.pth'}", f"sam={workspace / 'robust_a.pth'}:sam"]
    result = _run("--split", "custom", "--data", workspace / "data" / "MSRA10K", "--limit", 2, "--device", "cpu",
                  "--out", cli_out, *[arg for model in models for arg in ("--model", model)])
    assert result.exit_code == 0, result.output
    datasets = split_datasets("custom", workspace / "data" / "MSRA10K", None)
    plan = EvalPlan(datasets, PromptBook(0), limit=2)
    run = evaluate([ModelSpec.parse(text) for text in models], plan, api_out, EvalSettings(limit=2, device="cpu"),
                   data=str(workspace / "data" / "MSRA10K"))
    assert run.files == [api_out / "results.json", api_out / "results.md", api_out / "prompts.json"]
    for name in ("results.json", "results.md", "prompts.json"):
        assert (api_out / name).read_text() == (cli_out / name).read_text(), name
    assert [path.name for path in run.charts] == sorted(path.name for path in (cli_out / "charts").glob("*.png"))
