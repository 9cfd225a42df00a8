"""Segmentation samples and the dataset readers shared by training and evaluation.

Every reader is a sequence of `Sample`s (`len`, indexing) in sorted file-name order and reads files
lazily, one sample per index. Unusable files raise InputError naming the file.
"""

from __future__ import annotations

import os
from contextlib import redirect_stdout
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any, Optional, Protocol

import numpy as np
from pycocotools.coco import COCO

from ..errors import InputError
from ..io import read_image, read_json, read_pixels


@dataclass
class Sample:
    """One image with all its object masks.

    image: (H, W, 3) uint8 RGB, possibly degraded; masks: (M, H, W) bool;
    clear: the clean (H, W, 3) uint8 image when `image` is a degraded copy of it, else None.
    """

    name: str
    image: np.ndarray
    masks: np.ndarray
    clear: Optional[np.ndarray] = None


class SampleReader(Protocol):
    """What training and evaluation read: a sequence of Samples."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Sample: ...


class AnnotatedReader(SampleReader, Protocol):
    """A SampleReader that also gives a sample's name and (M, H, W) bool masks without decoding its
    image (evaluation plans a run with them)."""

    def annotation(self, index: int) -> tuple[str, np.ndarray]: ...


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
CLEAR = "clear"
MASKS = "masks"


def is_image_file(path: Path) -> bool:
    """Whether `path` is a file with one of IMAGE_EXTENSIONS (any case) and not hidden (".name")."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".") and path.is_file()


def list_images(folder: Path, recursive: bool = False) -> list[Path]:
    """The image files in `folder` (in its sub-folders too when `recursive`), sorted by path."""
    return sorted(p for p in (folder.rglob("*") if recursive else folder.iterdir()) if is_image_file(p))


def _check_index(index: int, length: int) -> int:
    if not -length <= index < length:
        raise IndexError(f"sample index {index} out of range for {length} samples")
    return index % length


def label_masks(labels: np.ndarray) -> np.ndarray:
    """(H, W) labels -> (M, H, W) bool: one mask per nonzero label, in increasing order (a binary
    map is one object)."""
    values = np.unique(labels)
    values = values[values != 0]
    return labels[None] == values[:, None, None]


def read_mask_array(path: str | os.PathLike) -> np.ndarray:
    """A `.npy` file of object masks as (M, H, W) bool: (M, H, W) with nonzero foreground, or
    (H, W) labels (see `label_masks`)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such mask file")
    try:
        masks = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: not a readable .npy mask array ({error})".splitlines()[0]) from None
    if masks.ndim not in (2, 3) or not (masks.dtype == np.bool_ or np.issubdtype(masks.dtype, np.number)):
        raise InputError(f"{path}: masks must be a numeric (M, H, W) or (H, W) array, got {masks.dtype} {masks.shape}")
    if masks.ndim == 2:
        return label_masks(masks)
    return masks.astype(bool) if masks.dtype != np.bool_ else masks


def read_mask_image(path: str | os.PathLike) -> np.ndarray:
    """A mask PNG as (M, H, W) bool.

    A two-valued image (0/255, 0/1, ...) is one object: its nonzero pixels. Otherwise it is a label
    map: one object per nonzero gray level, or per non-black colour for RGB, in increasing order.
    """
    image = read_pixels(path, "mask image")
    if image.ndim == 3 and image.shape[2] in (1, 2):  # gray, or gray + alpha
        image = image[..., 0]
    elif image.ndim == 3 and image.shape[2] in (3, 4):
        # Colour label maps (alpha dropped): fold each RGB triple into one integer label.
        image = image[..., :3].astype(np.int64)
        image = (image[..., 0] << 32) | (image[..., 1] << 16) | image[..., 2]
    if image.ndim != 2:
        raise InputError(f"{path}: a mask image must be gray or RGB, got shape {image.shape}")
    return label_masks(image)


def read_masks(path: str | os.PathLike) -> np.ndarray:
    """Object masks as (M, H, W) bool from a `.npy` array, a mask image, or a folder of binary mask
    images (one object each, nonzero inside, in sorted file-name order)."""
    path = Path(path)
    if path.is_dir():
        files = list_images(path)
        if not files:
            raise InputError(f"{path}: no mask images in the folder")
        planes = [read_pixels(file, "mask image") for file in files]
        if len({plane.shape[:2] for plane in planes}) > 1:
            raise InputError(f"{path}: its mask images differ in size")
        return np.stack([(plane if plane.ndim == 2 else plane[..., :3].max(axis=2)) != 0 for plane in planes])
    return read_mask_array(path) if path.suffix.lower() == ".npy" else read_mask_image(path)


def _checked_sample(
    name: str, image: np.ndarray, masks: np.ndarray, mask_path: Path, clear: Optional[np.ndarray] = None
) -> Sample:
    if masks.shape[1:] != image.shape[:2]:
        raise InputError(f"{mask_path}: masks are {masks.shape[2]}x{masks.shape[1]}, the image is {image.shape[1]}x{image.shape[0]}")
    return Sample(name=name, image=image, masks=masks, clear=clear)


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise InputError(f"{path}: no such {what} folder")
    return path


class RobustSegSplit:
    """One split of the published Robust-Seg layout: `<root>/<split>/clear/*.jpg`,
    `<split>/masks/*.npy` ((M, H, W) bool per image) and `<split>/<degradation>/*.jpg`.

    Files pair by sorted file name and must share their stems. Sample.image is the degraded image
    (the clear one when degradation == "clear") and Sample.clear the clear image otherwise.
    """

    def __init__(self, root: str | os.PathLike, split: str, degradation: str = CLEAR) -> None:
        self.folder = _require_dir(Path(root) / split, "Robust-Seg split")
        self.degradation = degradation
        self.clear_paths = list_images(_require_dir(self.folder / CLEAR, "clear-image"))
        mask_folder = _require_dir(self.folder / MASKS, "mask")
        self.mask_paths = sorted(p for p in mask_folder.iterdir() if p.suffix.lower() == ".npy")
        self.image_paths = (
            self.clear_paths
            if degradation == CLEAR
            else list_images(_require_dir(self.folder / degradation, "degradation"))
        )
        for paths in (self.mask_paths, self.image_paths):
            self._check_pairs(paths)

    def _check_pairs(self, paths: list[Path]) -> None:
        if len(paths) != len(self.clear_paths):
            raise InputError(
                f"{paths[0].parent if paths else self.folder}: {len(paths)} files for {len(self.clear_paths)} clear images"
            )
        for path, clear in zip(paths, self.clear_paths):
            if path.stem != clear.stem:
                raise InputError(f"{path}: pairs with {clear} by sorted order but the names differ")

    @staticmethod
    def degradations(root: str | os.PathLike, split: str) -> list[str]:
        """Names of the degradation folders present in `<root>/<split>` (every folder but clear/masks), sorted."""
        folder = _require_dir(Path(root) / split, "Robust-Seg split")
        return sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name not in (CLEAR, MASKS))

    def __len__(self) -> int:
        return len(self.clear_paths)

    def annotation(self, index: int) -> tuple[str, np.ndarray]:
        index = _check_index(index, len(self))
        return self.clear_paths[index].stem, read_mask_array(self.mask_paths[index])

    def __getitem__(self, index: int) -> Sample:
        index = _check_index(index, len(self))
        image = read_image(self.image_paths[index])
        clear = None if self.degradation == CLEAR else read_image(self.clear_paths[index])
        if clear is not None and clear.shape != image.shape:
            raise InputError(
                f"{self.image_paths[index]}: {image.shape[1]}x{image.shape[0]} differs from the clear image's "
                f"{clear.shape[1]}x{clear.shape[0]}"
            )
        masks = read_mask_array(self.mask_paths[index])
        return _checked_sample(self.clear_paths[index].stem, image, masks, self.mask_paths[index], clear)


class MaskFolderDataset:
    """Images in `image_dir` with one mask PNG each in `mask_dir` under the same stem
    (MSRA10K, FSS-1000, NDD20, STREETS style); see `read_mask_image` for how masks are read."""

    def __init__(self, image_dir: str | os.PathLike, mask_dir: str | os.PathLike) -> None:
        self.image_paths = list_images(_require_dir(Path(image_dir), "image"))
        # Masks share their image's stem, so one folder cannot hold both.
        if Path(image_dir).resolve() == Path(mask_dir).resolve():
            raise InputError(f"{image_dir}: images and masks must be in separate folders")
        masks = {p.stem: p for p in list_images(_require_dir(Path(mask_dir), "mask"))}
        missing = [p for p in self.image_paths if p.stem not in masks]
        if missing:
            raise InputError(f"{missing[0]}: no mask named {missing[0].stem}.* in {mask_dir} ({len(missing)} images lack one)")
        self.mask_paths = [masks[p.stem] for p in self.image_paths]

    def __len__(self) -> int:
        return len(self.image_paths)

    def annotation(self, index: int) -> tuple[str, np.ndarray]:
        index = _check_index(index, len(self))
        return self.image_paths[index].stem, read_mask_image(self.mask_paths[index])

    def __getitem__(self, index: int) -> Sample:
        index = _check_index(index, len(self))
        image, mask_path = read_image(self.image_paths[index]), self.mask_paths[index]
        return _checked_sample(self.image_paths[index].stem, image, read_mask_image(mask_path), mask_path)


class CocoInstancesDataset:
    """Images of a COCO instances JSON that have non-crowd annotations, masks from polygons / RLE.

    `categories(index)` gives each mask's category id, in the order of Sample.masks.
    """

    def __init__(self, image_dir: str | os.PathLike, annotation_json: str | os.PathLike) -> None:
        self.image_dir = _require_dir(Path(image_dir), "image")
        path = Path(annotation_json)
        if not path.is_file():
            raise InputError(f"{path}: no such annotation file")
        try:
            with redirect_stdout(StringIO()):  # pycocotools prints progress
                self.coco = COCO(str(path))
        except (ValueError, KeyError, TypeError, AssertionError) as error:
            raise InputError(f"{path}: not a COCO instances file ({type(error).__name__}: {error})".splitlines()[0]) from None
        self.annotation_path = path
        self.annotations = {
            image_id: [a for a in self.coco.imgToAnns[image_id] if not a.get("iscrowd", 0)]
            for image_id in self.coco.getImgIds()
        }
        records = [self.coco.imgs[i] for i, anns in self.annotations.items() if anns]
        self.images = sorted(records, key=lambda record: record["file_name"])

    def __len__(self) -> int:
        return len(self.images)

    def categories(self, index: int) -> list[int]:
        """Category id of each mask of sample `index`."""
        return [a["category_id"] for a in self.annotations[self.images[_check_index(index, len(self))]["id"]]]

    def annotation(self, index: int) -> tuple[str, np.ndarray]:
        record = self.images[_check_index(index, len(self))]
        try:
            masks = np.stack([self.coco.annToMask(a).astype(bool) for a in self.annotations[record["id"]]])
        except (ValueError, KeyError, TypeError, IndexError) as error:
            raise InputError(f"{self.annotation_path}: bad segmentation for image {record['file_name']} ({error})") from None
        return Path(record["file_name"]).stem, masks

    def __getitem__(self, index: int) -> Sample:
        record = self.images[_check_index(index, len(self))]
        image = read_image(self.image_dir / record["file_name"])
        name, masks = self.annotation(index)
        return _checked_sample(name, image, masks, self.annotation_path)


class ManifestDataset:
    """Samples listed in a JSON manifest (real-degradation sets such as BDD-100k and LIS).

    The manifest is a list of {"image": path, "masks": .npy or mask image, "condition": name
    (default "real"), "clear": optional clean image}; paths are relative to the manifest's folder.
    Only the entries of `condition` are read (all when None).
    """

    def __init__(self, manifest: str | os.PathLike, condition: Optional[str] = None) -> None:
        self.path = Path(manifest)
        entries = self.read_entries(self.path)
        self.entries = [e for e in entries if condition is None or e["condition"] == condition]

    @staticmethod
    def read_entries(path: Path) -> list[dict[str, Any]]:
        """The manifest's entries with absolute paths and a condition, checked for shape."""
        raw = read_json(path, "manifest file")
        if not isinstance(raw, list):
            raise InputError(f"{path}: a manifest must be a JSON list of samples")
        entries = []
        for number, entry in enumerate(raw):
            if not isinstance(entry, dict) or not isinstance(entry.get("image"), str) or not isinstance(entry.get("masks"), str):
                raise InputError(f"{path}: entry {number} needs string fields 'image' and 'masks'")
            clear = entry.get("clear")
            entries.append(
                {
                    "image": path.parent / entry["image"],
                    "masks": path.parent / entry["masks"],
                    "clear": path.parent / clear if isinstance(clear, str) else None,
                    "condition": str(entry.get("condition", "real")),
                    "name": str(entry.get("name", Path(entry["image"]).stem)),
                }
            )
        return entries

    @staticmethod
    def conditions(manifest: str | os.PathLike) -> list[str]:
        """The conditions present in the manifest, sorted."""
        return sorted({e["condition"] for e in ManifestDataset.read_entries(Path(manifest))})

    def __len__(self) -> int:
        return len(self.entries)

    def annotation(self, index: int) -> tuple[str, np.ndarray]:
        entry = self.entries[_check_index(index, len(self))]
        return entry["name"], read_masks(entry["masks"])

    def __getitem__(self, index: int) -> Sample:
        entry = self.entries[_check_index(index, len(self))]
        image = read_image(entry["image"])
        clear = read_image(entry["clear"]) if entry["clear"] is not None else None
        return _checked_sample(entry["name"], image, read_masks(entry["masks"]), entry["masks"], clear)


# The published test splits and, by default, where each dataset lies under the data root.
SPLITS: dict[str, tuple[str, ...]] = {
    "seen": ("MSRA10K", "LVIS"),
    "zeroshot": ("NDD20", "STREETS", "FSS-1000", "COCO"),
    "real": ("BDD-100k", "LIS"),
}
DEFAULT_LOCATIONS: dict[str, dict[str, str]] = {
    "MSRA10K": {"format": "robustseg", "path": "MSRA10K"},
    "LVIS": {"format": "robustseg", "path": "lvis"},
    "NDD20": {"format": "robustseg", "path": "NDD20"},
    "STREETS": {"format": "robustseg", "path": "STREETS"},
    "FSS-1000": {"format": "robustseg", "path": "FSS-1000"},
    "COCO": {"format": "robustseg", "path": "coco"},
    "BDD-100k": {"format": "manifest", "path": "BDD-100k/manifest.json"},
    "LIS": {"format": "manifest", "path": "LIS/manifest.json"},
}
# Each format's path fields, all relative to the data root.
DATASET_FORMATS: dict[str, tuple[str, ...]] = {
    "robustseg": ("path",),
    "folder": ("images", "masks"),
    "coco": ("images", "annotations"),
    "manifest": ("path",),
}


@dataclass
class DatasetSpec:
    """Where one evaluation dataset lies and in which format (see DATASET_FORMATS)."""

    name: str
    format: str
    paths: dict[str, Path]

    def missing(self) -> Optional[str]:
        """Why the dataset cannot be read (the first absent path), or None when it is present."""
        for field, path in self.paths.items():
            exists = path.is_file() if (self.format, field) in (("manifest", "path"), ("coco", "annotations")) else path.is_dir()
            if not exists:
                return f"{path} not found"
        return None

    def conditions(self) -> list[str]:
        """The image conditions the dataset holds: "clear" first when present, then degradations sorted."""
        if self.format == "robustseg":
            path = self.paths["path"]
            return [CLEAR, *RobustSegSplit.degradations(path.parent, path.name)]
        if self.format == "manifest":
            found = ManifestDataset.conditions(self.paths["path"])
            return [CLEAR] * (CLEAR in found) + [c for c in found if c != CLEAR]
        return [CLEAR]

    def reader(self, condition: str) -> AnnotatedReader:
        """The sequence of Samples of one condition."""
        if self.format == "robustseg":
            path = self.paths["path"]
            return RobustSegSplit(path.parent, path.name, condition)
        if self.format == "folder":
            return MaskFolderDataset(self.paths["images"], self.paths["masks"])
        if self.format == "coco":
            return CocoInstancesDataset(self.paths["images"], self.paths["annotations"])
        return ManifestDataset(self.paths["path"], condition)


def dataset_spec(name: str, location: Any, root: Path, where: str) -> DatasetSpec:
    """A DatasetSpec from a location entry {"format": ..., <path fields>: ...} relative to `root`."""
    if not isinstance(location, dict) or location.get("format") not in DATASET_FORMATS:
        raise InputError(f"{where}: {name} needs a 'format' among {', '.join(DATASET_FORMATS)}")
    fields = DATASET_FORMATS[location["format"]]
    if not all(isinstance(location.get(field), str) for field in fields):
        raise InputError(f"{where}: {name} ({location['format']}) needs string fields {', '.join(fields)}")
    return DatasetSpec(name, location["format"], {field: root / location[field] for field in fields})


def split_datasets(split: str, root: str | os.PathLike, config: Optional[str | os.PathLike] = None) -> list[DatasetSpec]:
    """The datasets of a published split under the data root.

    `config` is an optional JSON file {dataset name: location} overriding DEFAULT_LOCATIONS, paths
    relative to `root`. Split "custom" treats `root` itself as one dataset: a Robust-Seg split
    folder (with clear/ and masks/) or a manifest JSON file.
    """
    root = Path(root)
    if split == "custom":
        if root.suffix.lower() == ".json":
            return [DatasetSpec(root.stem, "manifest", {"path": root})]
        return [DatasetSpec(root.name, "robustseg", {"path": root})]
    if split not in SPLITS:
        raise InputError(f"--split: unknown split {split!r} (choose from {', '.join([*SPLITS, 'custom'])})")
    locations: dict[str, Any] = dict(DEFAULT_LOCATIONS)
    where = "data locations"
    if config is not None:
        config = Path(config)
        where = str(config)
        overrides = read_json(config, "data config file")
        if not isinstance(overrides, dict):
            raise InputError(f"{config}: must map dataset names to locations")
        locations.update(overrides)
    return [dataset_spec(name, locations[name], root, where) for name in SPLITS[split]]
