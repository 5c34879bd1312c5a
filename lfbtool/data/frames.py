"""Clip readers: a frame directory or a video file, both addressed by frame *number*.

A video is read as its frame directory would be: with ``start_index=1`` file number ``k`` is the
``k``-th decoded frame, so one config (fps, timestamp_start, start_index) serves both inputs.
Readers open lazily and drop open handles when pickled, so they work in DataLoader workers.
"""

from __future__ import annotations

import os
import re
import string
import warnings
import weakref
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torchvision.io import ImageReadMode, decode_image

from lfbtool.data.orientation import UPRIGHT, Transform, apply_transform, frame_transform
from lfbtool.errors import LfbError
from lfbtool.keys import video_id_problem

#: Continue decoding instead of seeking when the next clip starts at most this many frames ahead.
_MAX_FORWARD_DECODE = 96
#: Decoded frames kept between reads, at most (the last read's span, capped): a clip's span is
#: (clip_len - 1) * interval + 1 frames, 63 for 32x2 and 49 for 4x16 clips.
MAX_WINDOW = 128
#: Containers inherited through fork(): never used or freed in the child (FFmpeg's decoder threads
#: did not survive the fork, so decoding or freeing them can hang); kept here so GC leaves them be.
_INHERITED: list[Any] = []
_OPEN_VIDEOS: weakref.WeakSet[VideoFile] = weakref.WeakSet()


def _park_inherited_containers() -> None:
    """In a forked child (a DataLoader worker), set every open VideoFile to reopen its file."""
    for video in list(_OPEN_VIDEOS):
        video._park()
    _OPEN_VIDEOS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_park_inherited_containers)


@runtime_checkable
class ClipSource(Protocol):
    """Frames of one video, addressed by frame number."""

    path: Path

    def count_frames(self) -> int: ...

    def read(self, numbers: Sequence[int]) -> torch.Tensor: ...


def _template_regex(template: str) -> re.Pattern[str]:
    """``img_{:05d}.jpg`` -> a regex matching the names the template produces for any number."""
    parts = []
    for literal, field, _spec, _conv in string.Formatter().parse(template):
        parts.append(re.escape(literal))
        if field is not None:
            parts.append(r"(\d+)")
    return re.compile("".join(parts) + r"\Z")


def _stack(frames: list[torch.Tensor], numbers: Sequence[int], where: Path) -> torch.Tensor:
    if not frames:
        return torch.empty((0, 0, 0, 3), dtype=torch.uint8)
    shapes = {tuple(frame.shape) for frame in frames}
    if len(shapes) > 1:
        raise LfbError(f"{where}: frames {list(numbers)} differ in size {sorted(shapes)}")
    return torch.stack(frames)


class FrameDirectory:
    """A directory of frame images ``template.format(number)`` (MMAction2 rawframes)."""

    def __init__(self, directory: str | os.PathLike[str], *, template: str = "img_{:05d}.jpg",
                 start_index: int = 1) -> None:
        self.path = Path(directory)
        self.template = template
        self.start_index = start_index
        self._num_frames: int | None = None

    def count_frames(self) -> int:
        """Count of files matching the template (one directory scan, cached)."""
        if self._num_frames is None:
            if not self.path.is_dir():
                raise LfbError(f"{self.path}: no such frame directory")
            pattern = _template_regex(self.template)
            with os.scandir(self.path) as entries:
                self._num_frames = sum(1 for entry in entries if pattern.match(entry.name))
        return self._num_frames

    def read(self, numbers: Sequence[int]) -> torch.Tensor:
        """Decode frames ``numbers`` -> uint8 ``[T, H, W, 3]`` RGB; repeated numbers decode once."""
        if not self.path.is_dir():
            raise LfbError(f"{self.path}: no such frame directory")
        decoded: dict[int, torch.Tensor] = {}
        for number in numbers:
            number = int(number)
            if number not in decoded:
                decoded[number] = self._decode(self.path / self.template.format(number))
        return _stack([decoded[int(n)] for n in numbers], numbers, self.path)

    @staticmethod
    def _decode(file: Path) -> torch.Tensor:
        try:
            data = file.read_bytes()
        except FileNotFoundError:
            raise LfbError(f"{file}: no such frame file") from None
        except OSError as exc:
            raise LfbError(f"{file}: cannot read frame ({exc.strerror or exc})") from exc
        try:
            with warnings.catch_warnings():  # torchvision 0.29 deprecates its image codecs; they still work
                warnings.simplefilter("ignore", DeprecationWarning)
                image = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
        except Exception as exc:  # torchvision raises RuntimeError/ValueError for bad images
            raise LfbError(f"{file}: cannot decode image ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from exc
        return image.permute(1, 2, 0).contiguous()

    def __repr__(self) -> str:
        return f"FrameDirectory({str(self.path)!r}, template={self.template!r}, start_index={self.start_index})"


class VideoFile:
    """A video file decoded with PyAV; number ``n`` is decoded frame ``n - start_index`` (0-based).

    ``read`` seeks to the keyframe before the first wanted frame and decodes forward only to the
    last one; decoded frames are placed by their pts (constant frame rate assumed) and turned
    upright as players show them (display matrix, :mod:`lfbtool.data.orientation`). Reads in
    keyframe order decode each frame once: the frames of the last read's span (at most
    ``MAX_WINDOW``, kept as decoded, not converted to RGB) are reused by the next read, which then
    continues the same decode instead of seeking back to a key frame. The container stays open
    between calls and is dropped when the object is pickled. ``frames_decoded`` counts every frame
    the decoder produced for this object (tests and benchmarks read it).
    """

    def __init__(self, path: str | os.PathLike[str], *, start_index: int = 1) -> None:
        self.path = Path(path)
        self.start_index = start_index
        self.frames_decoded = 0
        self._num_frames: int | None = None
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._container: Any = None
        self._stream: Any = None
        self._first_pts: int | None = None
        self.orientation: Transform = UPRIGHT  # display steps (docs/inputs.md), read when opened
        self._frames: Iterator[tuple[int, Any]] | None = None  # live decode position, for reuse
        self._next_index = 0
        self.release_frames()

    def release_frames(self) -> None:
        """Drop the decoded frames kept for the next read (the container stays open)."""
        self._window: dict[int, Any] = {}  # frame index -> decoded av.VideoFrame of the last span
        self._rgb: dict[int, torch.Tensor] = {}  # the window's frames already converted (requested)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for name in ("_container", "_stream", "_frames"):
            state[name] = None
        state["_window"], state["_rgb"] = {}, {}
        return state

    def close(self) -> None:
        """Close the container now (it is reopened on the next read)."""
        if self._container is not None and self._pid == os.getpid():
            self._frames = None
            self._container.close()
        self._park()

    def _park(self) -> None:
        """Forget the open container; one inherited through fork is kept alive, never touched."""
        if self._container is not None and self._pid != os.getpid():
            _INHERITED.append((self._container, self._stream, self._frames, self._window))
        self._reset()

    def _error(self, what: str, exc: BaseException | None = None) -> LfbError:
        detail = f" ({type(exc).__name__}: {exc})" if exc is not None else ""
        return LfbError(f"{self.path}: {what}{detail}")

    def _open(self) -> Any:
        if self._container is not None and self._pid != os.getpid():
            self._park()  # forked without the at-fork hook: reopen in this process
        if self._container is not None:
            return self._stream
        import av

        if not self.path.is_file():
            raise LfbError(f"{self.path}: no such video file")
        try:
            container = av.open(str(self.path))
        except (av.FFmpegError, OSError) as exc:
            raise self._error("cannot open video (corrupt or truncated?)", exc) from exc
        if not container.streams.video:
            container.close()
            raise LfbError(f"{self.path}: no video stream")
        stream = container.streams.video[0]
        # No FFmpeg threads (decoder here, scaler in to_ndarray): DataLoader workers are the
        # parallelism, and FFmpeg threads alive when the main process forks workers hung them.
        stream.thread_type = "NONE"
        stream.thread_count = 1
        if not (stream.average_rate or stream.guessed_rate):
            container.close()
            raise LfbError(f"{self.path}: video stream has no frame rate; cannot place frames by time")
        self._container, self._stream, self._pid = container, stream, os.getpid()
        _OPEN_VIDEOS.add(self)
        try:  # the first frame's pts anchors the pts -> index mapping (edit lists may shift it)
            first = next(iter(container.decode(stream)), None)
            self.frames_decoded += first is not None
        except Exception as exc:
            self.close()
            raise self._error("cannot decode the first frame (corrupt or truncated?)", exc) from exc
        if first is None or first.pts is None:
            self.close()
            raise LfbError(f"{self.path}: no decodable frame with a timestamp")
        self._first_pts = first.pts
        try:
            self.orientation = frame_transform(first, stream.metadata, where=str(self.path))
        except LfbError:
            self.close()
            raise
        return stream

    @property
    def _rate(self) -> Fraction:
        return Fraction(self._stream.average_rate or self._stream.guessed_rate)

    def read_frame_rate(self) -> Fraction:
        """The stream's average frame rate (frames per second, exact), what ``fps="auto"`` takes;
        opens the file (and decodes its first frame) when it is not open yet."""
        self._open()
        return self._rate

    def count_frames(self) -> int:
        """Frames in the stream: the container's count, else one demux pass counting packets (cached)."""
        if self._num_frames is None:
            stream = self._open()
            count = int(stream.frames or 0)
            if count <= 0:
                try:
                    self._container.seek(0)
                    count = sum(1 for p in self._container.demux(stream) if p.size > 0)
                except Exception as exc:
                    self.close()
                    raise self._error("cannot read video packets (corrupt or truncated?)", exc) from exc
                self._frames = None
            if count <= 0:
                raise LfbError(f"{self.path}: video has no frames")
            self._num_frames = count
        return self._num_frames

    def _decode_from(self, index: int | None) -> Iterator[tuple[int, Any]]:
        """Seek to the keyframe at or before frame ``index`` (None: the start); iterate from there."""
        stream, container, first_pts = self._stream, self._container, self._first_pts
        if index is None:
            container.seek(0)
        else:
            target = first_pts + int(Fraction(index) / (self._rate * stream.time_base))
            container.seek(max(target, 0), backward=True, any_frame=False, stream=stream)
        return _indexed_frames(container, stream, first_pts, self._rate, self.path)

    def read(self, numbers: Sequence[int]) -> torch.Tensor:
        """Decode frames ``numbers`` -> uint8 ``[T, H, W, 3]`` RGB, decoding each span once."""
        total = self.count_frames()
        wanted = sorted({int(n) - self.start_index for n in numbers})
        if not wanted:
            return _stack([], numbers, self.path)
        bad = [i + self.start_index for i in wanted if not 0 <= i < total]
        if bad:
            raise LfbError(f"{self.path}: frame number {bad[0]} out of range (video has {total} frames, "
                           f"numbers {self.start_index}..{total - 1 + self.start_index})")
        try:
            found = self._collect(wanted)
        except LfbError:
            self.close()
            raise
        except Exception as exc:  # av.FFmpegError and friends from a damaged stream
            self.close()
            raise self._error(f"cannot decode frames {wanted[0] + self.start_index}..{wanted[-1] + self.start_index}"
                              " (corrupt or truncated?)", exc) from exc
        return _stack([found[int(n) - self.start_index] for n in numbers], numbers, self.path)

    def _collect(self, wanted: list[int]) -> dict[int, torch.Tensor]:
        self._open()
        first, last = wanted[0], wanted[-1]
        keep_from = max(first, last - MAX_WINDOW + 1)
        window = {i: f for i, f in self._window.items() if keep_from <= i <= last}
        rgb = {i: t for i, t in self._rgb.items() if i in window}
        self.release_frames()  # the old window goes before decoding more: the bound holds
        missing = [i for i in wanted if i not in window]
        if missing:
            self._decode_into(window, missing[0], last, keep_from, set(missing))
        found: dict[int, torch.Tensor] = {}
        for index in wanted:
            if index not in window:
                self._frames = None
                raise LfbError(f"{self.path}: frame number {index + self.start_index} could not be decoded "
                               f"(video claims {self.count_frames()} frames; truncated or corrupt file?)")
            if index not in rgb:
                picture = torch.from_numpy(window[index].to_ndarray(format="rgb24", threads=1))
                rgb[index] = apply_transform(picture, self.orientation)  # shown as players show it
            found[index] = rgb[index]
        self._window = {i: f for i, f in window.items() if i >= keep_from}
        self._rgb = {i: t for i, t in rgb.items() if i >= keep_from}
        return found

    def _decode_into(self, window: dict[int, Any], start: int, last: int, keep_from: int,
                     missing: set[int]) -> None:
        """Decode frames ``start..last`` into ``window`` (those from ``keep_from`` on, and the
        ``missing`` ones), continuing the live decode when ``start`` lies at most
        ``_MAX_FORWARD_DECODE`` frames ahead of it."""
        reuse = self._frames is not None and 0 <= start - self._next_index <= _MAX_FORWARD_DECODE
        frames = self._frames if reuse else self._decode_from(start)
        assert frames is not None
        retried = reuse  # a continued decode needs no retry: it has seen everything before
        while True:
            seen_first = None
            for index, frame in frames:
                self.frames_decoded += 1
                self._next_index = index + 1
                if seen_first is None:
                    seen_first = index
                if keep_from <= index <= last or index in missing:
                    window[index] = frame
                if index >= last:
                    break
            else:
                frames = None  # the decoder ran out: no live position to reuse
            if (seen_first is None or seen_first > start) and not retried:
                # The seek landed past the first wanted frame (keyframe indexed by dts): start over.
                retried = True
                frames = self._decode_from(None)
                continue
            break
        self._frames = frames

    def __repr__(self) -> str:
        return f"VideoFile({str(self.path)!r}, start_index={self.start_index})"


def _indexed_frames(container: Any, stream: Any, first_pts: int, rate: Fraction,
                    path: Path) -> Iterator[tuple[int, Any]]:
    """Yield ``(frame index, frame)`` in decode order, the index from the pts (constant rate).

    A plain function, not a method: the live generator is stored on the VideoFile, and a
    generator holding ``self`` would make a reference cycle that only the cyclic GC frees.
    """
    for frame in container.decode(stream):
        if frame.pts is None:
            raise LfbError(f"{path}: frames carry no timestamps; cannot seek this file")
        yield int(round((frame.pts - first_pts) * stream.time_base * rate)), frame


def close_source(source: ClipSource) -> None:
    """Close a reader that holds an open file (a VideoFile's container); frame directories hold none."""
    close = getattr(source, "close", None)
    if close is not None:
        close()


def open_source(
    video_id: str,
    *,
    frames_root: str | os.PathLike[str] | None = None,
    videos_root: str | os.PathLike[str] | None = None,
    template: str = "img_{:05d}.jpg",
    video_ext: str = "mp4",
    start_index: int = 1,
) -> ClipSource:
    """The reader for ``video_id``: ``frames_root/video_id/`` if it exists, else ``videos_root/video_id.ext``."""
    if frames_root is None and videos_root is None:
        raise LfbError("no input frames: give a frames root (--frames-root) or a videos root (--videos-root)")
    problem = video_id_problem(video_id)
    if problem:
        raise LfbError(f"video id {video_id!r} {problem}")
    tried = []
    if frames_root is not None:
        directory = Path(frames_root) / video_id
        if directory.is_dir():
            return FrameDirectory(directory, template=template, start_index=start_index)
        tried.append(f"no frame directory {directory}")
    if videos_root is not None:
        file = Path(videos_root) / f"{video_id}.{video_ext.lstrip('.')}"
        if file.is_file():
            return VideoFile(file, start_index=start_index)
        tried.append(f"no file {file}")
    raise LfbError(f"unknown video id {video_id}: {' and '.join(tried)}")


__all__ = ["ClipSource", "FrameDirectory", "VideoFile", "close_source", "open_source"]
