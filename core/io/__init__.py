"""Files every part of the tool reads and writes: atomic writes, output locations, JSON inputs, the
one image reader and writer, weights-only torch loading, and COCO run-length encoding."""

from .files import atomic_path, read_json, require_output_dir, require_output_file, write_json, write_text
from .images import MASK_PNG_LEVEL, read_image, read_image_size, read_pixels, to_rgb8, write_image, write_mask
from .rle import encode_rle
from .torch_files import load_torch_file

__all__ = [
    "MASK_PNG_LEVEL",
    "atomic_path",
    "encode_rle",
    "load_torch_file",
    "read_image",
    "read_image_size",
    "read_json",
    "read_pixels",
    "require_output_dir",
    "require_output_file",
    "to_rgb8",
    "write_image",
    "write_json",
    "write_mask",
    "write_text",
]
