"""Gray coding, segment partition and Mask Average Pooling against brute-force definitions."""

import numpy as np
import pytest
import torch

from priors.encoding import gray_coded_map, mask_gray_value, masks_from_records, segment_partition
from priors.map_pool import MaskAveragePool, drop_segments, labels_from_partition, mask_average_pool
from priors.restorer import gray_labels


def test_gray_values_follow_both_branches():
    assert [mask_gray_value(i) for i in (0, 1, 126)] == [2, 4, 254]
    # i >= 127: 2 (255 - i) - 1, odd values counting down from 255
    assert [mask_gray_value(i) for i in (127, 128, 254, 255, 300)] == [255, 253, 1, -1, -91]
    even = [mask_gray_value(i) for i in range(127)]
    odd = [mask_gray_value(i) for i in range(127, 255)]
    assert len(set(even + odd)) == 255 and set(even + odd) == set(range(1, 256))


def test_gray_map_adds_overlaps_and_clips():
    masks = np.zeros((130, 4, 5), dtype=bool)
    masks[0, 0, :2] = True  # value 2
    masks[1, 0, 1:3] = True  # value 4; pixel (0, 1) overlaps -> 6
    masks[127, 1, 0] = True  # value 255
    masks[126, 1, 0] = True  # value 254; 509 clipped to 255
    masks[129, 2, 2] = True  # value 2 * (255 - 129) - 1 = 251
    masks[128, 3, 3] = True  # 253
    masks[5, 3, 3] = True  # + 12 = 265 -> 255
    gray = gray_coded_map(masks)
    expected = np.zeros((4, 5), dtype=np.uint8)
    expected[0, :4] = [2, 6, 4, 0]
    expected[1, 0] = 255
    expected[2, 2] = 251
    expected[3, 3] = 255
    assert gray.dtype == np.uint8
    np.testing.assert_array_equal(gray, expected)


def test_gray_map_matches_formula_on_random_masks():
    rng = np.random.default_rng(0)
    masks = rng.random((300, 6, 7)) < 0.02
    total = np.zeros((6, 7), dtype=np.int64)
    for i, mask in enumerate(masks):
        total += mask * (2 * (i + 1) if i < 127 else 2 * (255 - i) - 1)
    np.testing.assert_array_equal(gray_coded_map(masks), np.clip(total, 0, 255))


def test_gray_map_without_masks_and_records_order():
    assert not gray_coded_map([], shape=(3, 2)).any()
    records = [{"segmentation": np.eye(3, dtype=bool)}, {"segmentation": np.ones((3, 3), dtype=bool)}]
    gray = gray_coded_map(masks_from_records(records, (3, 3)))
    np.testing.assert_array_equal(gray, np.where(np.eye(3, dtype=bool), 6, 4))


def test_partition_tiles_image_one_mask_per_gray_value():
    gray = np.array([[0, 2, 2], [6, 0, 255], [6, 6, 2]], dtype=np.uint8)
    parts = segment_partition(gray)
    assert parts.dtype == np.uint8 and set(np.unique(parts)) == {0, 1}
    assert parts.shape == (4, 3, 3)
    np.testing.assert_array_equal(parts.sum(0), np.ones((3, 3)))
    for part, value in zip(parts, [0, 2, 6, 255]):
        np.testing.assert_array_equal(part, gray == value)
    np.testing.assert_array_equal(labels_from_partition(parts), gray_labels(torch.from_numpy(gray)[None])[0].numpy())


def _brute_force_map(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    out = np.zeros_like(features)
    for b in range(features.shape[0]):
        for value in np.unique(labels[b]):
            where = labels[b] == value
            out[b][:, where] = features[b][:, where].mean(axis=1, keepdims=True)
    return out


def test_map_equals_brute_force_with_uncovered_pixels_and_variable_counts():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(3, 4, 9, 11)).astype(np.float64)
    labels = np.stack([rng.integers(-1, m, size=(9, 11)) for m in (1, 5, 12)])
    labels[1, 0, 0] = 4  # make sure every label value is present in image 1
    out = mask_average_pool(torch.from_numpy(features), torch.from_numpy(labels)).numpy()
    np.testing.assert_allclose(out, _brute_force_map(features, labels), rtol=1e-12, atol=1e-12)


def test_map_without_uncovered_pixels_is_exact_partition_means():
    features = torch.arange(8, dtype=torch.float64).reshape(1, 1, 2, 4)
    labels = torch.tensor([[[0, 0, 1, 1], [2, 2, 2, 1]]])
    out = mask_average_pool(features, labels)
    np.testing.assert_allclose(out[0, 0].numpy(), [[0.5, 0.5, 4, 4], [5, 5, 5, 4]])


@pytest.mark.parametrize("segments", [1, 2, 7, 10])
def test_mask_dropout_drops_half_the_segments_rounded_down(segments):
    rng = np.random.default_rng(segments)
    labels = torch.from_numpy(rng.permutation(np.arange(40) % segments).reshape(1, 5, 8))
    dropped = drop_segments(labels, 0.5, torch.Generator().manual_seed(0))
    gone = set(labels.unique().tolist()) - set(dropped[dropped >= 0].unique().tolist())
    assert len(gone) == int(0.5 * segments)
    kept = dropped >= 0
    np.testing.assert_array_equal(dropped[kept], labels[kept])  # surviving pixels keep their label


def test_map_module_dropout_only_in_training():
    rng = np.random.default_rng(2)
    labels = torch.from_numpy(np.repeat(np.arange(6), 6).reshape(1, 6, 6))
    features = torch.from_numpy(rng.normal(size=(1, 3, 6, 6)))
    pool = MaskAveragePool(0.5)
    pool.eval()
    np.testing.assert_allclose(pool(features, labels).numpy(), _brute_force_map(features.numpy(), labels.numpy()))
    pool.train()
    out = pool(features, labels, torch.Generator().manual_seed(3)).numpy()
    exact = _brute_force_map(features.numpy(), labels.numpy())
    changed = [m for m in range(6) if not np.allclose(out[0][:, labels[0] == m], exact[0][:, labels[0] == m])]
    assert len(changed) == 3
    dropped = np.isin(labels[0].numpy(), changed)
    expected = features.numpy()[0][:, dropped].mean(axis=1)  # dropped segments share one uncovered mean
    np.testing.assert_allclose(out[0][:, dropped], np.repeat(expected[:, None], dropped.sum(), axis=1))


def test_map_resizes_labels_to_feature_size():
    labels = torch.zeros(1, 8, 8, dtype=torch.int64)
    labels[:, :, 4:] = 1
    features = torch.arange(16, dtype=torch.float64).reshape(1, 1, 4, 4)
    out = mask_average_pool(features, labels)
    np.testing.assert_allclose(out[0, 0, :, :2].numpy(), np.full((4, 2), 6.5))
    np.testing.assert_allclose(out[0, 0, :, 2:].numpy(), np.full((4, 2), 8.5))
