"""Ablations of the robust path (the paper's Table 7): each removed part stops influencing the
output, the rest still does, and training leaves the unused parameters untouched."""

from __future__ import annotations

import pytest
import torch

from core.model.checkpoint import is_robust_key
from core.model.decoder import ABLATIONS, ablated_parameters
from train.config import TrainConfig
from train.trainer import Trainer

# The modules each ablation takes off the robust path.
PARTS = {
    "fourier": (
        "fourier_mask_features.fgm_block",
        "fourier_first_layer_features.fgm_block",
        "fourier_last_layer_features.fgm_block",
    ),
    "aotg": ("custom_token_block",),
    "rot": ("custom_robust_token", "robust_mlp"),
}


def robust_masks(model, seed: int = 0) -> torch.Tensor:
    config = model.config
    size = config.embedding_size
    g = torch.Generator().manual_seed(seed)
    embedding = torch.randn(1, config.prompt_embed_dim, size, size, generator=g)
    early = torch.randn(1, config.encoder_embed_dim, size, size, generator=g)
    sparse = torch.randn(2, 2, config.prompt_embed_dim, generator=g)
    dense = torch.randn(2, config.prompt_embed_dim, size, size, generator=g)
    decoder = model.mask_decoder
    with torch.inference_mode():
        feature = decoder.image_feature(embedding, early)
        return decoder.decode(embedding, model.prompt_encoder.get_dense_pe(), sparse, dense, feature).masks


def perturb(model, prefix: str) -> None:
    with torch.no_grad():
        for name, parameter in model.mask_decoder.named_parameters():
            if name.startswith(prefix):
                parameter.add_(torch.randn_like(parameter))


@pytest.mark.parametrize("part", ABLATIONS)
def test_a_removed_part_no_longer_changes_the_masks(micro_model, part: str) -> None:
    micro_model.eval()
    full = robust_masks(micro_model)
    micro_model.mask_decoder.ablate([part])
    ablated = robust_masks(micro_model)
    assert not torch.allclose(full, ablated)
    for prefix in PARTS[part]:
        perturb(micro_model, prefix)
    assert torch.equal(robust_masks(micro_model), ablated)
    micro_model.mask_decoder.ablate([])
    assert not torch.allclose(robust_masks(micro_model), full)  # the perturbed part is back in use


def test_ablated_parameters_and_unknown_names(micro_model) -> None:
    decoder = micro_model.mask_decoder
    decoder.ablate(["aotg", "rot"])
    unused = ablated_parameters(decoder)
    assert unused and all(is_robust_key(name) for name in unused)
    assert {name.split(".")[1] for name in unused} == {"custom_token_block", "custom_robust_token", "robust_mlp"}
    decoder.ablate(["fourier"])
    unused = ablated_parameters(decoder)
    assert {name.rsplit(".", 1)[0] for name in unused} == {
        f"mask_decoder.{block}.conv_layer" for block in PARTS["fourier"]
    }
    with pytest.raises(ValueError, match="unknown ablation"):
        decoder.ablate(["tokens"])


def test_training_an_ablation_leaves_the_unused_modules_untouched(tmp_path, micro_checkpoint) -> None:
    config = TrainConfig(data="synthetic:2", output=str(tmp_path), checkpoint=str(micro_checkpoint), batch_size=2,
                         max_steps=2, epochs=1, save_every=0, image_size=64, prompt="box", val_every=0,
                         device="cpu", lr=1e-3, ablate=("fourier", "rot"))
    trainer = Trainer(config)
    before = {name: value.clone() for name, value in trainer.model.state_dict().items()}
    final = trainer.run()
    after = trainer.model.state_dict()
    unused = ablated_parameters(trainer.model.mask_decoder)
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert unused and changed and not unused & changed
    assert list(torch.load(final, weights_only=True)["config"]["ablate"]) == ["fourier", "rot"]
