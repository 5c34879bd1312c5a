"""Any constant frame rate: fps parsing, the centre-frame rule, a 29.97 fps video whose frames encode
their own index, whole-clip seconds and the variable-frame-rate warning."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from lfbtool.data.clips import ClipSettings
from lfbtool.data.frames import VideoFile
from lfbtool.data.sampling import (
    centre_index,
    keyframe_clip_numbers,
    keyframe_frame_number,
    parse_fps,
    whole_clip,
)
from lfbtool.data.videos import list_videos, read_video_list, variable_rate_warning, whole_clip_seconds
from lfbtool.errors import LfbError
from lfbtool.testing.synthetic import write_video

BITS = 10  # frames encode their index in 10 blocks of 4x4 pixels (black 0, white 1)


def index_frames(count: int) -> np.ndarray:
    frames = np.zeros((count, 8, 4 * BITS, 3), dtype=np.uint8)
    for i in range(count):
        for bit in range(BITS):
            if (i >> bit) & 1:
                frames[i, 2:6, bit * 4:bit * 4 + 4] = 255
    return frames


def decoded_index(frame) -> int:
    frame = np.asarray(frame)
    return sum(1 << bit for bit in range(BITS) if frame[2:6, bit * 4:bit * 4 + 4].mean() > 127)


def test_parse_fps():
    assert parse_fps("30") == 30 and isinstance(parse_fps("30"), Fraction)
    assert parse_fps("29.97") == Fraction(2997, 100)
    assert parse_fps("30000/1001") == Fraction(30000, 1001)
    assert parse_fps(" AUTO ") == "auto"
    assert parse_fps(25) == 25
    for bad in ("fast", "0", "-30", "1/0", "nan"):
        with pytest.raises(LfbError, match="fps"):
            parse_fps(bad)


@pytest.mark.parametrize("fps", [25, 30])
def test_whole_rates_equal_the_integer_formula(fps):
    # MMAction2: centre = fps * (t - start) + start_index; indices centre - 2*16 .. step 16; clip; + start_index
    for t in range(900, 1000):
        centre = fps * (t - 900) + 1
        expected = np.clip(np.arange(centre - 32, centre + 32, 16), 0, 2999) + 1
        for rate in (fps, Fraction(fps), parse_fps(str(fps))):
            got = keyframe_clip_numbers(t, fps=rate, timestamp_start=900, start_index=1, clip_len=4, interval=16,
                                        total=3000)
            assert got.tolist() == expected.tolist()


def test_rounding_is_half_up_and_exact():
    assert centre_index(1, fps=Fraction(25, 2), timestamp_start=0) == 13  # 12.5 -> 13
    assert centre_index(3, fps=Fraction(25, 2), timestamp_start=0) == 38  # 37.5 -> 38
    ntsc = Fraction(30000, 1001)
    assert [centre_index(t, fps=ntsc, timestamp_start=0) for t in (0, 1, 33, 34)] == [0, 30, 989, 1019]
    # 33 s: 989.01 -> 989; 34 s: 1018.98 -> 1019


@pytest.mark.parametrize("start_index", [0, 1])
def test_ntsc_video_clip_frames_land_within_half_a_frame(tmp_path, start_index):
    rate = Fraction(30000, 1001)
    count = 660  # 22 s: past 17 s a 30 fps rule would be off by more than half a frame
    path = write_video(tmp_path / "ntsc.mp4", index_frames(count), rate)  # lossless: indices survive
    source = VideoFile(path, start_index=start_index)
    settings = ClipSettings(frames_root=None, videos_root=tmp_path, frame_template="", video_ext="mp4", fps="auto",
                            timestamp_start=0, start_index=start_index, clip_len=4, frame_interval=8, short_side=8)
    assert source.read_frame_rate() == rate and settings.fps_of(source) == rate
    seconds = whole_clip_seconds(count, fps=rate, timestamp_start=0, start_index=start_index, clip_len=4, interval=8)
    assert seconds == list(range(1, 22))
    for t in seconds:
        numbers = keyframe_clip_numbers(t, fps=rate, timestamp_start=0, start_index=start_index, clip_len=4,
                                        interval=8, total=count)
        frames = source.read(numbers.tolist())
        for j, frame in enumerate(frames):
            # true time of clip position j; MMAction2's second start_index shifts the clip by start_index frames
            true_time = t + Fraction((j - 2) * 8 + start_index) / rate
            shown_time = Fraction(decoded_index(frame)) / rate
            assert abs(shown_time - true_time) <= Fraction(1, 2) / rate, (t, j)
        centre = keyframe_frame_number(t, fps=rate, timestamp_start=0, start_index=start_index, total=count)
        assert centre == numbers[2]


def test_whole_clip_seconds_by_hand():
    # 48 frames at 8 fps, start_index 1, clip 4 x 2: centre 8t + 1, indices 8t-3 .. 8t+3: t = 1..5
    kwargs = dict(fps=8, timestamp_start=0, start_index=1, clip_len=4, interval=2)
    assert whole_clip_seconds(48, **kwargs) == [1, 2, 3, 4, 5]
    assert whole_clip_seconds(48, stride=2, **kwargs) == [2, 4]
    assert whole_clip_seconds(3, **kwargs) == []
    # the definition, brute force: every index of the unclipped clip inside [0, total - 1]
    for total in (40, 47, 48, 55):
        brute = [t for t in range(0, 20)
                 if all(0 <= 8 * t + 1 + d <= total - 1 for d in (-4, -2, 0, 2))]
        assert whole_clip_seconds(total, **kwargs) == brute
        assert [t for t in range(20) if whole_clip(t, total=total, **kwargs)] == brute
    assert whole_clip_seconds(48, fps=8, timestamp_start=900, start_index=1, clip_len=4, interval=2) == [
        901, 902, 903, 904, 905]


def test_list_videos_and_video_list(tmp_path):
    (tmp_path / "videos").mkdir()
    for name in ("b.mp4", "a.mp4", "notes.txt"):
        (tmp_path / "videos" / name).write_bytes(b"x")
    (tmp_path / "frames" / "c").mkdir(parents=True)
    (tmp_path / "frames" / "c" / "img_00001.jpg").write_bytes(b"x")
    (tmp_path / "frames" / "empty").mkdir()
    assert list_videos(videos_root=tmp_path / "videos") == ["a", "b"]
    assert list_videos(frames_root=tmp_path / "frames") == ["c"]
    with pytest.raises(LfbError, match="no videos found"):
        list_videos(videos_root=tmp_path / "videos", video_ext="avi")
    listing = tmp_path / "list.txt"
    listing.write_text("# mine\nb\n\na  # first\n")
    assert read_video_list(listing) == ["b", "a"]
    listing.write_text("a,b\n")
    with pytest.raises(LfbError, match=r"list\.txt: row 1: video id 'a,b'"):
        read_video_list(listing)


def test_variable_frame_rate_warning(tmp_path):
    import av

    frames = index_frames(40)
    assert variable_rate_warning(write_video(tmp_path / "cfr.mp4", frames, 30)) is None
    path = tmp_path / "vfr.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264rgb", rate=30)
        stream.pix_fmt, stream.width, stream.height = "rgb24", 4 * BITS, 8
        stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
        pts = 0
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            pts += 33 if i % 2 else 50
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    warning = variable_rate_warning(path)
    assert warning is not None and "vfr.mp4" in warning and "variable-frame-rate" in warning
    assert "\n" not in warning
