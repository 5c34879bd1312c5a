"""What a video file says about itself: the variable-frame-rate probe (timestamps judged in display
order, so B-frames reordered in decode order are no false alarm) and the display orientation
(rotation / mirror) applied as FFmpeg's command-line tools apply it."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from lfbtool.data.frames import VideoFile
from lfbtool.data.orientation import display_transform, rotation_degrees
from lfbtool.data.videos import VFR_PROBE_FRAMES, timestamp_problems, variable_rate_warning
from lfbtool.errors import LfbError
from lfbtool.testing.synthetic import synthetic_frames

ONE = 1 << 16  # 1.0 in a display matrix (16.16 fixed point)
W = 1 << 30  # the matrix's w (2.30 fixed point)


def write_bframe_h264(path, rate, count=96) -> None:
    """Constant-rate lossy H.264, x264's default long GOP, two B-frames between P-frames always
    (b-adapt=0): decode order I P B B P B B ..., so 48 packets in decode order end on a P-frame
    whose B-frames are not read yet (the old probe's false alarm)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.pix_fmt, stream.width, stream.height = "yuv420p", 32, 32
        stream.options = {"crf": "30", "preset": "medium", "x264-params": "bframes=2:b-adapt=0"}
        for image in synthetic_frames(count, 32, 32, seed=1):
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_with_pts(path, steps_ms: list[int]) -> None:
    """MPEG-4 part 2 in Matroska (time base 1/1000): frame k+1 comes steps_ms[k] ms after frame k."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.pix_fmt, stream.width, stream.height = "yuv420p", 32, 32
        stream.codec_context.time_base = Fraction(1, 1000)
        pts = 0
        for k, image in enumerate(synthetic_frames(len(steps_ms) + 1, 32, 32, seed=2)):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            pts += steps_ms[k] if k < len(steps_ms) else 0
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def packet_pts(path) -> list[int]:
    with av.open(str(path)) as container:
        return [p.pts for p in container.demux(container.streams.video[0]) if p.size > 0]


@pytest.mark.parametrize(("name", "rate"), [("cam.mp4", Fraction(30000, 1001)), ("cam.mkv", Fraction(30)),
                                            ("cam25.mp4", Fraction(25))])
def test_constant_rate_h264_with_bframes_gets_no_warning(tmp_path, name, rate):
    path = tmp_path / name
    write_bframe_h264(path, rate)
    pts = packet_pts(path)
    assert pts != sorted(pts)  # B-frames really are reordered in decode order
    steps = {b - a for a, b in zip(sorted(pts), sorted(pts)[1:], strict=False)}
    assert max(steps) - min(steps) <= 1  # constant in display order (mkv's 1 ms ticks round 33.37 ms)
    assert variable_rate_warning(path) is None


def test_variable_rate_after_the_first_48_frames_warns(tmp_path):
    path = tmp_path / "phone.mkv"
    write_with_pts(path, [40] * 60 + [80] * 20)  # 25 fps for 2.4 s, then 12.5 fps
    assert sorted(packet_pts(path))[58:63] == [2320, 2360, 2400, 2480, 2560]
    warning = variable_rate_warning(path)
    assert warning is not None and "\n" not in warning
    assert warning.startswith(f"{path}: looks variable-frame-rate")
    assert "timestamp steps of the first 81 frames vary (40..80 ms)" in warning
    assert variable_rate_warning(path, probe_frames=48) is None  # why 48 frames were too few
    assert VFR_PROBE_FRAMES >= 250


def test_timestamp_problems_by_hand():
    ms = Fraction(1, 1000)
    thirty = [round(k * 1000 / 30) for k in range(12)]  # 0, 33, 67, 100, ...: rounded to 1 ms
    assert timestamp_problems(thirty, ms, Fraction(30)) == []
    assert timestamp_problems(thirty[::-1], ms, Fraction(30)) == []  # any order: judged sorted
    ntsc = [k * 1001 for k in range(300)]  # 30000/1001 in 1/30000 ticks, exact
    assert timestamp_problems(ntsc, Fraction(1, 30000), Fraction(30000, 1001)) == []
    # a dropped frame: frame 3 at 160 ms instead of 120 ms
    assert timestamp_problems([0, 40, 80, 160, 200], ms, Fraction(25)) == [
        "timestamp steps of the first 5 frames vary (40..80 ms)", "frame 3 is at 0.16 s, 25 fps puts it at 0.12 s"]
    # even 40 ms steps read at 24 fps: frame k is 40k ms, the rate puts it at 41.67k ms; off by
    # half a frame (20.8 ms) from k = 13 (21.7 ms)
    assert timestamp_problems([40 * k for k in range(21)], ms, Fraction(24)) == [
        "frame 13 is at 0.52 s, 24 fps puts it at 0.5417 s"]
    # jitter of 2 ms (under a tenth of a 33.3 ms frame) is no variable rate; 4 ms is
    jitter = [round(k * 1000 / 30) + (2 if k % 2 else 0) for k in range(30)]
    assert timestamp_problems(jitter, ms, Fraction(30)) == []
    jitter = [round(k * 1000 / 30) + (4 if k % 2 else 0) for k in range(30)]
    assert timestamp_problems(jitter, ms, Fraction(30)) == ["timestamp steps of the first 30 frames vary (29..38 ms)"]
    # the container's average against the stream's rate: half a frame over the video's length
    assert timestamp_problems(thirty, ms, Fraction(30), other_rate=Fraction(2997, 100), total_frames=100) == []
    assert timestamp_problems(thirty, ms, Fraction(30), other_rate=Fraction(2997, 100), total_frames=1000) == [
        "average rate 30 != stream rate 2997/100"]


# -- orientation --------------------------------------------------------------------------------

def test_display_transform_by_hand():
    ccw90 = [0, -ONE, 0, ONE, 0, 0, 0, 0, W]  # what a phone held upright writes, rotated 90 ccw
    assert rotation_degrees(ccw90) == 90
    assert display_transform(None) == ()
    assert display_transform([ONE, 0, 0, 0, ONE, 0, 0, 0, W]) == ()
    assert display_transform(ccw90) == ("cclock",)
    assert display_transform([0, ONE, 0, -ONE, 0, 0, 0, 0, W]) == ("clock",)
    assert display_transform([-ONE, 0, 0, 0, -ONE, 0, 0, 0, W]) == ("hflip", "vflip")
    assert display_transform([-ONE, 0, 0, 0, ONE, 0, 0, 0, W]) == ("hflip",)
    assert display_transform([ONE, 0, 0, 0, -ONE, 0, 0, 0, W]) == ("vflip",)
    assert display_transform(None, "90") == ("clock",)  # the older tag: clockwise degrees
    assert display_transform(None, "-90") == ("cclock",)
    assert display_transform(None, "180") == ("hflip", "vflip")
    assert display_transform(None, "0") == ()
    with pytest.raises(LfbError, match=r"^v\.mp4: the video is shown rotated by 45 degrees clockwise, not a multiple of 90"):
        display_transform(None, "45", where="v.mp4")
    with pytest.raises(LfbError, match="rotate tag 'up' is not a number"):
        display_transform(None, "up", where="v.mp4")
    with pytest.raises(LfbError, match="is not a rotation"):
        display_transform([0] * 9, where="v.mp4")


def ffmpeg_filtered(frames: np.ndarray, chain: list[tuple[str, str | None]]) -> np.ndarray:
    """The reference: FFmpeg's own transpose / hflip / vflip filters on the stored pictures."""
    graph = av.filter.Graph()
    last = graph.add_buffer(width=frames.shape[2], height=frames.shape[1], format="rgb24", time_base=Fraction(1, 25))
    for name, argument in chain:
        step = graph.add(name, argument)
        last.link_to(step)
        last = step
    sink = graph.add("buffersink")
    last.link_to(sink)
    graph.configure()
    out = []
    for image in frames:
        graph.push(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24"))
        out.append(graph.pull().to_ndarray(format="rgb24"))
    return np.stack(out)


# (PyAV's set_display_rotation arguments, the filters `ffmpeg` autorotate inserts for that matrix)
ROTATIONS = [
    ((90, False, False), [("transpose", "cclock")]),
    ((-90, False, False), [("transpose", "clock")]),
    ((180, False, False), [("hflip", None), ("vflip", None)]),
    ((0, True, False), [("hflip", None)]),
    ((0, False, True), [("vflip", None)]),
    ((90, True, False), [("transpose", "clock_flip")]),
]


@pytest.mark.parametrize(("rotation", "chain"), ROTATIONS)
def test_rotated_video_is_read_as_players_show_it(tmp_path, rotation, chain):
    stored = synthetic_frames(6, 32, 48, seed=3)  # landscape 48 x 32 as stored
    path = tmp_path / "rotated.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264rgb", rate=25)
        stream.pix_fmt, stream.width, stream.height = "rgb24", 48, 32
        stream.options = {"crf": "0"}  # lossless: pixels compare exactly
        degrees, hflip, vflip = rotation
        stream.set_display_rotation(degrees, hflip=hflip, vflip=vflip)
        for image in stored:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    expected = ffmpeg_filtered(stored, chain)
    video = VideoFile(path)
    got = video.read([1, 4, 6]).numpy()
    assert got.shape == (3, *expected.shape[1:])
    np.testing.assert_array_equal(got, expected[[0, 3, 5]])
    if degrees == 90 and not (hflip or vflip):
        np.testing.assert_array_equal(got[0], np.rot90(stored[0]))  # 90 ccw, as the matrix says


def test_odd_rotation_is_refused_in_one_line(tmp_path):
    path = tmp_path / "tilted.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264rgb", rate=25)
        stream.pix_fmt, stream.width, stream.height = "rgb24", 32, 32
        stream.set_display_rotation(30)
        for image in synthetic_frames(3, 32, 32, seed=4):
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(LfbError) as error:
        VideoFile(path).read([1])
    assert str(error.value) == (f"{path}: the video is shown rotated by 330 degrees clockwise, not a multiple of 90; "
                                "re-encode it upright (ffmpeg -i IN OUT applies the rotation)")
