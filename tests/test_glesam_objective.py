"""GleSAM's released stage-one objective (train.glesam_guidance) with a diffusers U-Net on disk as `--unet`,
so that the real score is that U-Net, frozen: every term logged and finite, the generator updating on every
5th iteration only, exact resume across a generator iteration, the MSE-only flag, and the text-context rule."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

pytest.importorskip("diffusers")
pytest.importorskip("peft")

from diffusers import UNet2DConditionModel  # noqa: E402

from core.errors import InputError  # noqa: E402
from core.glesam import bottleneck, small_unet_config  # noqa: E402
from core.model.default_model import DEFAULT_CHECKPOINT  # noqa: E402
from robustsam_cli.main import cli  # noqa: E402
from train.glesam import GleSamTrainConfig, GleSamTrainer, check_glesam_config  # noqa: E402
from train.loop import StepReport  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
TERMS = ("mse", "dm", "gen_gan", "fake_score", "classifier")


@pytest.fixture(scope="module")
def unet_folder(tmp_path_factory) -> Path:
    """A small 4-channel diffusers U-Net saved as a bare `unet` folder (config.json + weights)."""
    torch.manual_seed(3)
    folder = tmp_path_factory.mktemp("sd") / "unet"
    UNet2DConditionModel.from_config(small_unet_config(sample_size=16, width=16)).save_pretrained(folder)
    return folder


def _config(output: Path, unet: Path, **extra) -> GleSamTrainConfig:
    settings = dict(data="synthetic:4", output=str(output), stage="unet", sam_checkpoint=str(DEFAULT_CHECKPOINT),
                    unet=str(unet), text_context="zero", image_size=64, lora_rank=4, batch_size=2, log_every=1,
                    device="cpu", lr=1e-2, warmup=2, save_every=0)
    return GleSamTrainConfig(**{**settings, **extra})


def _records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]


def _lora(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in module.named_parameters() if ".lora_" in name}


def test_every_term_is_logged_and_the_generator_steps_on_every_fifth_iteration(tmp_path: Path, unet_folder: Path) -> None:
    trainer = GleSamTrainer(_config(tmp_path, unet_folder, max_steps=11))
    real_before = {key: value.clone() for key, value in trainer.guidance.real.state_dict().items()}
    generator, fake = [_lora(trainer.model.enhancer.unet)], [_lora(trainer.guidance.fake)]

    def snapshot(report: StepReport) -> None:
        generator.append(_lora(trainer.model.enhancer.unet))
        fake.append(_lora(trainer.guidance.fake))

    trainer.run(snapshot)
    moved = lambda states, i: any(not torch.equal(states[i][k], states[i + 1][k]) for k in states[i])  # noqa: E731
    # the generator updates on iterations 0, 5, 10; at 0 its learning rate is still 0 (warmup), as released
    assert [i for i in range(11) if moved(generator, i)] == [5, 10]
    assert all(moved(fake, i) for i in range(1, 11))  # the guidance update moves from iteration 1 on
    log = _records(tmp_path)
    assert [r["generator_step"] for r in log] == [1] * 5 + [6] * 5 + [11]
    assert all(math.isfinite(r[term]) for r in log for term in TERMS)
    assert log[5]["dm"] > 0  # the fake score has moved away from the real one by iteration 5
    assert log[0]["lr"] < log[1]["lr"] == log[6]["lr"]  # a 2-iteration warmup, counted in iterations
    # the real score is the U-Net on disk, widened and frozen
    saved = UNet2DConditionModel.from_pretrained(unet_folder).state_dict()
    real = trainer.guidance.real.state_dict()
    assert torch.equal(real["conv_in.base_layer.weight"], saved["conv_in.weight"].repeat(1, 16, 1, 1))
    assert all(torch.equal(real[key], value) for key, value in real_before.items())


def test_resume_across_a_generator_iteration_ends_where_the_whole_run_does(tmp_path: Path, unet_folder: Path) -> None:
    whole = GleSamTrainer(_config(tmp_path / "whole", unet_folder, max_steps=7))
    whole.run()
    GleSamTrainer(_config(tmp_path / "first", unet_folder, max_steps=3, save_every=3)).run()
    resumed = GleSamTrainer(_config(tmp_path / "second", unet_folder, max_steps=7),
                            resume=str(tmp_path / "first" / "checkpoint-0000003.pth"))
    assert resumed.step == 3
    resumed.run()
    for module in ("model", "guidance"):
        expected, got = getattr(whole, module).state_dict(), getattr(resumed, module).state_dict()
        assert all(torch.equal(expected[key], got[key]) for key in expected), module
    for name in ("optimizer", "guidance_optimizer", "scheduler", "guidance_scheduler"):
        assert str(getattr(whole, name).state_dict()) == str(getattr(resumed, name).state_dict()), name
    assert resumed.step == whole.step == 7
    assert _records(tmp_path / "second")[-1] == {**_records(tmp_path / "whole")[-1],
                                                 **{k: _records(tmp_path / "second")[-1][k] for k in ("images_per_s", "seconds")}}
    saved = torch.load(tmp_path / "second" / "final.pth", weights_only=True)
    assert {"guidance", "guidance_optimizer", "guidance_scheduler"} <= set(saved)
    assert saved["guidance"] and all(".lora_" in key or key.startswith("classifier.") for key in saved["guidance"])


def test_mse_only_trains_the_generator_every_step_and_resumes_only_as_mse(tmp_path: Path, unet_folder: Path) -> None:
    trainer = GleSamTrainer(_config(tmp_path / "mse", unet_folder, max_steps=2, objective="mse", save_every=1))
    trainer.run()
    log = _records(tmp_path / "mse")
    assert [set(TERMS) & set(r) for r in log] == [{"mse"}, {"mse"}]
    assert trainer.guidance is None
    with pytest.raises(InputError, match="checkpoint-0000001.pth: a run of the MSE-only objective"):
        GleSamTrainer(_config(tmp_path / "again", unet_folder, max_steps=2), resume=str(tmp_path / "mse" / "checkpoint-0000001.pth"))


def test_a_bare_unet_needs_the_zero_token_asked_for(tmp_path: Path, unet_folder: Path) -> None:
    with pytest.raises(InputError, match="bare U-Net has no CLIP context.*tokenizer/ and text_encoder/, or --text-context zero"):
        check_glesam_config(_config(tmp_path, unet_folder, text_context="clip"))
    output = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", "--method", "glesam", "--stage", "unet", "--data", "synthetic:2", "--unet",
                                      str(unet_folder), "--image-size", "64", "--max-steps", "1", "-o", str(output)])
    assert result.exit_code == 2, result.output
    assert f"--unet {unet_folder}: a bare U-Net" in result.output and len(result.output.strip().splitlines()) == 1
    assert not output.exists()


def test_bottleneck_is_the_mid_block_output_of_the_full_forward(unet_folder: Path) -> None:
    unet = UNet2DConditionModel.from_pretrained(unet_folder)
    sample, timesteps, context = torch.randn(2, 4, 16, 16), torch.tensor([3, 700]), torch.randn(2, 1, 32)
    seen = []
    handle = unet.mid_block.register_forward_hook(lambda module, inputs, output: seen.append(output))
    with torch.no_grad():
        unet(sample, timesteps, context)
        mid = bottleneck(unet, sample, timesteps, context)
    handle.remove()
    assert mid.shape == (2, 32, 8, 8) and torch.equal(mid, seen[0])
