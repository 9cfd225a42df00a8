"""Files and samples: image and mask I/O, prompt files, segmentation datasets, synthetic scenes."""

from .datasets import (
    IMAGE_EXTENSIONS,
    AnnotatedReader,
    CocoInstancesDataset,
    ManifestDataset,
    MaskFolderDataset,
    RobustSegSplit,
    Sample,
    SampleReader,
    dataset_spec,
    is_image_file,
    list_images,
    read_masks,
    split_datasets,
)
from ..io import atomic_path, read_image, read_json, read_pixels, to_rgb8, write_image, write_mask  # their home is core.io
from .prompt_files import Prompt, PromptSet, load_prompts
from .scenes import HELD_OUT_STYLES, SCENE_STYLES, TRAIN_STYLES, SceneDataset, make_scene

__all__ = [
    "HELD_OUT_STYLES",
    "IMAGE_EXTENSIONS",
    "SCENE_STYLES",
    "TRAIN_STYLES",
    "AnnotatedReader",
    "CocoInstancesDataset",
    "ManifestDataset",
    "MaskFolderDataset",
    "Prompt",
    "PromptSet",
    "RobustSegSplit",
    "Sample",
    "SampleReader",
    "SceneDataset",
    "atomic_path",
    "dataset_spec",
    "is_image_file",
    "list_images",
    "load_prompts",
    "make_scene",
    "read_image",
    "read_json",
    "read_masks",
    "read_pixels",
    "split_datasets",
    "to_rgb8",
    "write_image",
    "write_mask",
]
