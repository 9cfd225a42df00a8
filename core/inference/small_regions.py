"""Small-region removal for masks without OpenCV: 8-connected components by union-find on row runs."""

from __future__ import annotations

import numpy as np


def _row_runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Horizontal runs of True in an (H, W) bool mask: row, start column, end column (exclusive)."""
    padded = np.pad(mask, ((0, 0), (1, 1))).astype(np.int8)
    edges = np.diff(padded, axis=1)
    rows, starts = np.nonzero(edges == 1)
    _, ends = np.nonzero(edges == -1)
    return rows, starts, ends


def _find_roots(parent: np.ndarray) -> np.ndarray:
    while True:
        grand = parent[parent]
        if np.array_equal(grand, parent):
            return parent
        parent = grand


def connected_components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """8-connected components of an (H, W) bool mask.

    Returns labels (H, W) int64 (0 = background, components numbered 1.. in raster order of their
    first pixel) and sizes (K,) int64, the pixel count of component k+1.
    """
    rows, starts, ends = _row_runs(mask)
    count = len(rows)
    # Pair each run with the runs of the next row that touch it, diagonals included:
    # run b in row r+1 touches run a in row r when b.start <= a.end and b.end >= a.start.
    row_first = np.searchsorted(rows, np.arange(mask.shape[0] + 1))
    pairs_a, pairs_b = [], []
    for row in range(mask.shape[0] - 1):
        a = np.arange(row_first[row], row_first[row + 1])
        b = np.arange(row_first[row + 1], row_first[row + 2])
        if len(a) == 0 or len(b) == 0:
            continue
        touch = (starts[b][None, :] <= ends[a][:, None]) & (ends[b][None, :] >= starts[a][:, None])
        ia, ib = np.nonzero(touch)
        pairs_a.append(a[ia])
        pairs_b.append(b[ib])
    parent = np.arange(count)
    if pairs_a:
        a, b = np.concatenate(pairs_a), np.concatenate(pairs_b)
        # Hook every root onto the smallest root it touches until each pair shares a root; the
        # number of roots drops every round, and parent[i] <= i keeps the forest acyclic.
        while True:
            root_a, root_b = parent[a], parent[b]
            differ = root_a != root_b
            if not differ.any():
                break
            low, high = np.minimum(root_a, root_b)[differ], np.maximum(root_a, root_b)[differ]
            np.minimum.at(parent, high, low)
            parent = _find_roots(parent)
    roots, run_labels = np.unique(parent, return_inverse=True)
    # Runs never overlap, so +label at each run start and -label at its end, summed along the
    # flattened image, paint every run with its label.
    width = mask.shape[1]
    steps = np.zeros(mask.size + 1, dtype=np.int64)
    np.add.at(steps, rows * width + starts, run_labels + 1)
    np.add.at(steps, rows * width + ends, -(run_labels + 1))
    labels = np.cumsum(steps[:-1]).reshape(mask.shape)
    sizes = np.bincount(run_labels, weights=ends - starts, minlength=len(roots)).astype(np.int64)
    return labels, sizes


def remove_small_regions(mask: np.ndarray, area_thresh: float, mode: str) -> tuple[np.ndarray, bool]:
    """`segment_anything.utils.amg.remove_small_regions` without OpenCV: fills holes ('holes') or
    drops islands ('islands') smaller than `area_thresh` pixels in an (H, W) bool mask; keeps the
    largest island when all are small. Returns the mask and whether it changed."""
    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', not {mode!r}")
    fill_holes = mode == "holes"
    labels, sizes = connected_components(np.logical_xor(mask, fill_holes))
    small = np.nonzero(sizes < area_thresh)[0] + 1
    if len(small) == 0:
        return mask, False
    if fill_holes:
        return mask | np.isin(labels, small), True
    keep = np.setdiff1d(np.arange(1, len(sizes) + 1), small)
    if len(keep) == 0:
        keep = np.array([int(np.argmax(sizes)) + 1])
    return np.isin(labels, keep), True
