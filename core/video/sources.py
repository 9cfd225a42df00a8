"""Frame sources: video files (decoded by PyAV) and DAVIS-style frame folders, read lazily.

A source knows its frame count, frame rate and size up front and decodes a frame only when it is
asked for, keeping at most `cache_frames` decoded frames, so memory does not grow with the video:

    source = open_source("clip.mp4")
    source.info.num_frames, source.info.fps, source.info.size   # (H, W)
    for index, frame in enumerate(source): ...                  # (H, W, 3) uint8 RGB, in order
    source[40]                                                   # any frame, seeking as needed

A bad source (unreadable or truncated video, frame folder with gaps, frames of another size) is an
InputError naming the file, raised when it is opened where the header tells, else at the frame.
"""

from __future__ import annotations

import bisect
import os
from collections import OrderedDict
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np

from ..data.datasets import IMAGE_EXTENSIONS, is_image_file
from ..io import read_image, read_image_size
from ..errors import InputError

VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".webm", ".mkv")
# Frame folders carry no frame rate; DAVIS was shot at 24 frames/s.
FOLDER_FPS = 24.0
# Decoded frames kept per source: a 480p frame is 0.9 MB, so 32 of them stay under 30 MB.
CACHE_FRAMES = 32


@dataclass(frozen=True)
class VideoInfo:
    """What a source holds: `num_frames` frames of `size` (H, W) at `fps` frames per second."""

    num_frames: int
    fps: float
    size: tuple[int, int]


def is_video_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS


class FrameCache:
    """The last `capacity` decoded frames by index (least recently used dropped first)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._frames: OrderedDict[int, np.ndarray] = OrderedDict()

    def get(self, index: int) -> Optional[np.ndarray]:
        frame = self._frames.get(index)
        if frame is not None:
            self._frames.move_to_end(index)
        return frame

    def put(self, index: int, frame: np.ndarray) -> None:
        self._frames[index] = frame
        self._frames.move_to_end(index)
        while len(self._frames) > self.capacity:
            self._frames.popitem(last=False)


class FrameSource:
    """A sequence of (H, W, 3) uint8 RGB frames; `name` keys its prompts and names its outputs."""

    path: Path
    name: str
    info: VideoInfo

    def __len__(self) -> int:
        return self.info.num_frames

    def __getitem__(self, index: int) -> np.ndarray:
        if not 0 <= index < len(self):
            raise IndexError(f"frame {index} of {len(self)}")
        return self._frame(index)

    def __iter__(self) -> Iterator[np.ndarray]:
        for index in range(len(self)):
            yield self._frame(index)

    def _frame(self, index: int) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        """Releases the decoder (a source reopens it when read again)."""

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FrameFolder(FrameSource):
    """A folder of numbered frames (`00000.jpg`, `00001.jpg`, ...): numbers must follow each other
    without a gap; the first frame's header gives the size every frame must have."""

    def __init__(self, path: str | os.PathLike, fps: float = FOLDER_FPS) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self.files = numbered_frames(self.path)
        self.info = VideoInfo(len(self.files), fps, read_image_size(self.files[0]))

    def _frame(self, index: int) -> np.ndarray:
        frame = read_image(self.files[index])
        if frame.shape[:2] != self.info.size:
            height, width = self.info.size
            raise InputError(
                f"{self.files[index]}: frame is {frame.shape[1]}x{frame.shape[0]}, the first frame is {width}x{height}"
            )
        return frame


def numbered_frames(folder: Path) -> list[Path]:
    """The folder's image files sorted by number; InputError for a name that is not a number, a
    repeated number or a gap."""
    if not folder.is_dir():
        raise InputError(f"{folder}: no such frame folder")
    files = sorted(p for p in folder.iterdir() if is_image_file(p))
    if not files:
        raise InputError(f"{folder}: no frames ({', '.join(IMAGE_EXTENSIONS)})")
    numbered: dict[int, Path] = {}
    for file in files:
        if not file.stem.isdigit():
            raise InputError(f"{file}: frame names must be numbers (00000.jpg, 00001.jpg, ...)")
        number = int(file.stem)
        if number in numbered:
            raise InputError(f"{file}: frame {number} is also {numbered[number].name}")
        numbered[number] = file
    order = sorted(numbered)
    for previous, number in zip(order, order[1:]):
        if number != previous + 1:
            missing = f"frame {previous + 1}" if number == previous + 2 else f"frames {previous + 1}-{number - 1}"
            raise InputError(f"{folder}: gap in the frames: {missing} missing (after {numbered[previous].name})")
    return [numbered[number] for number in order]


class VideoFile(FrameSource):
    """A video file decoded by PyAV. Opening it reads the container's packets (no decoding) to
    count the frames and find the keyframes, so a truncated file is refused before any output;
    frames are then decoded in order, and a frame behind the decoder is reached by seeking to the
    keyframe before it (the frames decoded on the way are cached: backward passes stay cheap)."""

    def __init__(self, path: str | os.PathLike, cache_frames: int = CACHE_FRAMES) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self._cache = FrameCache(cache_frames)
        self._container = None
        self._decoded: Optional[Iterator] = None
        self._next_index = 0
        container = self._open()
        try:
            stream = container.streams.video[0]
            timestamps, keyframes = _scan_packets(self.path, container, stream)
            fps = float(stream.average_rate or stream.guessed_rate or FOLDER_FPS)
            size = (stream.codec_context.height, stream.codec_context.width)
        finally:
            container.close()
        if not timestamps:
            raise InputError(f"{self.path}: not a readable video (no frames)")
        if stream.frames and len(timestamps) < stream.frames:
            raise InputError(f"{self.path}: truncated video ({len(timestamps)} of the {stream.frames} frames its header lists)")
        self._timestamps = timestamps
        self._index_of = {pts: index for index, pts in enumerate(timestamps)}
        self._keyframes = keyframes
        self.info = VideoInfo(len(timestamps), fps, size)

    def _open(self):
        av = _pyav()
        if not self.path.is_file():
            raise InputError(f"{self.path}: no such video file")
        try:
            container = av.open(str(self.path))
        except (av.error.FFmpegError, ValueError) as error:
            raise InputError(f"{self.path}: not a readable video ({_first_line(error)})") from None
        if not container.streams.video:
            container.close()
            raise InputError(f"{self.path}: no video stream")
        return container

    def _frame(self, index: int) -> np.ndarray:
        frame = self._cache.get(index)
        if frame is not None:
            return frame
        if self._decoded is None or index < self._next_index or index - self._next_index > self._cache.capacity:
            self._seek(index)
        while True:
            decoded_index, frame = self._decode_next(index)
            self._cache.put(decoded_index, frame)
            if decoded_index == index:
                return frame

    def _seek(self, index: int) -> None:
        """Positions the decoder at the last keyframe at or before `index`."""
        if self._container is None:
            self._container = self._open()
        keyframe = self._keyframes[bisect.bisect_right(self._keyframes, index) - 1]
        stream = self._container.streams.video[0]
        self._container.seek(self._timestamps[keyframe], stream=stream, backward=True, any_frame=False)
        self._decoded = self._container.decode(stream)
        self._next_index = keyframe

    def _decode_next(self, wanted: int) -> tuple[int, np.ndarray]:
        av = _pyav()
        try:
            frame = next(self._decoded)
        except StopIteration:
            raise InputError(f"{self.path}: truncated video (frame {wanted} of {len(self)} cannot be decoded)") from None
        except av.error.FFmpegError as error:
            raise InputError(f"{self.path}: frame {wanted} cannot be decoded ({_first_line(error)})") from None
        # Frames are numbered by their timestamps (decoders may start before the keyframe asked for).
        index = self._index_of.get(frame.pts, self._next_index)
        self._next_index = index + 1
        return index, frame.to_ndarray(format="rgb24")

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
        self._container, self._decoded = None, None


def _scan_packets(path: Path, container, stream) -> tuple[list[int], list[int]]:
    """(sorted frame timestamps, indices of keyframes) from the video stream's packets."""
    av = _pyav()
    packets = []
    try:
        for packet in container.demux(stream):
            if packet.size and packet.pts is not None:
                packets.append((packet.pts, packet.is_keyframe))
    except av.error.FFmpegError as error:
        raise InputError(f"{path}: truncated or corrupt video ({_first_line(error)})") from None
    packets.sort()
    timestamps = [pts for pts, _ in packets]
    keyframes = [index for index, (_, key) in enumerate(packets) if key] or [0]
    if keyframes[0] != 0:
        keyframes.insert(0, 0)
    return timestamps, keyframes


def _pyav():
    """PyAV (the `video` extra), imported when a video file is first touched."""
    try:
        import av
    except ModuleNotFoundError:
        raise ModuleNotFoundError("video files need PyAV: pip install 'robustsam[video]'") from None
    return av


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def open_source(path: str | os.PathLike, cache_frames: int = CACHE_FRAMES) -> FrameSource:
    """A video file (by extension) or a frame folder; InputError for anything else."""
    path = Path(path)
    if path.is_dir():
        return FrameFolder(path)
    if path.suffix.lower() in VIDEO_EXTENSIONS:
        return VideoFile(path, cache_frames)
    if not path.exists():
        raise InputError(f"{path}: no such video file or frame folder")
    raise InputError(f"{path}: not a video ({', '.join(VIDEO_EXTENSIONS)}) or a folder of frames")


def holds_videos(path: str | os.PathLike) -> bool:
    """Whether `path` is a video file, or a folder of video files and frame folders with no image
    of its own (a folder of images is a folder of images unless the caller says it is a video)."""
    path = Path(path)
    if path.is_file():
        return path.suffix.lower() in VIDEO_EXTENSIONS
    if not path.is_dir() or any(is_image_file(p) for p in path.iterdir()):
        return False
    return any(is_video_file(p) or (p.is_dir() and any(is_image_file(f) for f in p.iterdir())) for p in path.iterdir())


def find_sources(path: str | os.PathLike) -> list[Path]:
    """The videos INPUT names: a video file or a frame folder itself, or a folder whose entries
    are video files and frame folders (sorted by name). InputError when there are none."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such video file or folder")
    if path.is_file() or any(is_image_file(p) for p in path.iterdir()):
        return [path]
    found = sorted(p for p in path.iterdir() if is_video_file(p) or (p.is_dir() and any(is_image_file(f) for f in p.iterdir())))
    if not found:
        raise InputError(f"{path}: no videos ({', '.join(VIDEO_EXTENSIONS)}) or frame folders")
    return found


def output_name(source: FrameSource | Path) -> str:
    """The name a video's outputs are filed under: a file's stem, a frame folder's name."""
    path = source.path if isinstance(source, FrameSource) else source
    return path.stem if path.is_file() else path.name


def write_video(path: str | os.PathLike, frames: Sequence[np.ndarray] | Iterator[np.ndarray], fps: float) -> None:
    """Encodes (H, W, 3) uint8 frames as H.264 (MP4/MOV/MKV), VP9 (WebM) or MPEG-4 (AVI) into
    `path`, as given (callers write to a temporary name and rename). Odd sizes are padded by one
    pixel, which yuv420p needs. MP4 and MOV put their index first (faststart): players can start
    before the end, and a cut file is told apart from a whole one by its header."""
    av = _pyav()
    suffix = Path(path).suffix.lower()
    codec = {".webm": "libvpx-vp9", ".avi": "mpeg4"}.get(suffix, "libx264")
    options = {"movflags": "faststart"} if suffix in (".mp4", ".mov") else {}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", options=options) as container:
        stream = None
        for frame in frames:
            if stream is None:
                height, width = frame.shape[:2]
                stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
                stream.width, stream.height, stream.pix_fmt = width + width % 2, height + height % 2, "yuv420p"
            padded = np.pad(frame, ((0, stream.height - frame.shape[0]), (0, stream.width - frame.shape[1]), (0, 0)), mode="edge")
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(padded), format="rgb24")):
                container.mux(packet)
        if stream is not None:
            for packet in stream.encode():
                container.mux(packet)
