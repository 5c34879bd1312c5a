"""Frame-directory and video readers: identical pixels, seeking == sequential decode, clear errors."""

import pickle

import av
import numpy as np
import pytest
import torch

from lfbtool.data.frames import ClipSource, FrameDirectory, VideoFile, open_source
from lfbtool.errors import LfbError
from lfbtool.testing.synthetic import read_frame_dir, synthetic_frames, write_frame_dir, write_video

N, H, W, FPS = 40, 24, 32, 8


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("frames")
    paths = write_frame_dir(root / "frames" / "vid", synthetic_frames(N, H, W, seed=3))
    decoded = read_frame_dir(paths)
    (root / "frames" / "vid" / "notes.txt").write_text("not a frame")
    lossless = write_video(root / "videos" / "vid.mp4", decoded, FPS, lossless=True, gop=6)
    lossy = write_video(root / "lossy.mp4", decoded, FPS, lossless=False, gop=8)  # B-frames, dts < pts
    with av.open(str(lossy)) as container:  # reference: one full sequential decode
        sequential = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    return {"root": root, "decoded": decoded, "lossless": lossless, "lossy": lossy, "sequential": sequential}


def test_frame_directory_reads_numbers(data):
    source = FrameDirectory(data["root"] / "frames" / "vid")
    assert isinstance(source, ClipSource)
    assert source.count_frames() == N  # notes.txt does not match the template
    clip = source.read([1, 5, 5, 40])
    assert clip.dtype == torch.uint8 and clip.shape == (4, H, W, 3)
    np.testing.assert_array_equal(clip.numpy(), data["decoded"][[0, 4, 4, 39]])


def test_frame_directory_decodes_repeats_once(data, monkeypatch):
    calls = []
    original = FrameDirectory._decode
    monkeypatch.setattr(FrameDirectory, "_decode", staticmethod(lambda f: calls.append(f.name) or original(f)))
    FrameDirectory(data["root"] / "frames" / "vid").read([3, 3, 3, 4])
    assert calls == ["img_00003.jpg", "img_00004.jpg"]


def test_frame_directory_errors(data, tmp_path):
    with pytest.raises(LfbError, match=r"nowhere: no such frame directory"):
        _ = FrameDirectory(tmp_path / "nowhere").count_frames()
    source = FrameDirectory(data["root"] / "frames" / "vid")
    with pytest.raises(LfbError, match=r"img_00041\.jpg: no such frame file"):
        source.read([40, 41])
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "img_00001.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(LfbError, match=r"broken/img_00001\.jpg: cannot decode image"):
        FrameDirectory(broken).read([1])


def test_lossless_video_equals_frame_directory(data):
    frames = FrameDirectory(data["root"] / "frames" / "vid")
    video = VideoFile(data["lossless"])
    assert video.count_frames() == frames.count_frames() == N
    everything = list(range(1, N + 1))
    assert torch.equal(video.read(everything), frames.read(everything))
    assert torch.equal(video.read([10, 14, 18, 22]), frames.read([10, 14, 18, 22]))


@pytest.mark.parametrize("name", ["lossy", "lossless"])
def test_seeking_reads_what_sequential_decode_gives(data, name):
    reference = data["sequential"] if name == "lossy" else data["decoded"]
    video = VideoFile(data[name])
    rng = np.random.default_rng(7)
    sets = [[40], [1], [33, 1], [17, 17, 18], [39, 40, 40, 40], [8, 9, 16, 24, 25]]
    sets += [sorted(rng.integers(1, N + 1, size=4).tolist()) for _ in range(6)]
    sets += [rng.integers(1, N + 1, size=3).tolist() for _ in range(4)]  # unsorted too
    for numbers in sets:
        clip = video.read(numbers)
        np.testing.assert_array_equal(clip.numpy(), reference[np.array(numbers) - 1], err_msg=str(numbers))


def test_read_decodes_only_a_span(data):
    video = VideoFile(data["lossy"])
    counted = []
    original = video._decode_from

    def counting(index):
        for item in original(index):
            counted.append(item[0])
            yield item

    video._decode_from = counting
    video.read([33, 35])
    # seek to the keyframe at or before 32 (gop 8): decoding stops at 34, never from frame 0
    assert counted and min(counted) >= 24 and max(counted) == 34
    counted.clear()
    video.read([37, 38])  # just ahead: continues the same decode, no seek
    assert counted == [35, 36, 37]


def test_start_index_zero_and_pickle(data):
    video = VideoFile(data["lossless"], start_index=0)
    first = video.read([0, 39])
    np.testing.assert_array_equal(first.numpy(), data["decoded"][[0, 39]])
    clone = pickle.loads(pickle.dumps(video))  # open container dropped, reopened lazily
    assert clone._container is None
    assert torch.equal(clone.read([0, 39]), first)
    with pytest.raises(LfbError, match=r"frame number 40 out of range \(video has 40 frames"):
        video.read([40])


def test_truncated_and_corrupt_videos(data, tmp_path):
    blob = data["lossless"].read_bytes()
    half = tmp_path / "half.mp4"
    half.write_bytes(blob[: len(blob) // 2])  # moov atom at the end is gone
    with pytest.raises(LfbError, match=r"half\.mp4: cannot open video"):
        VideoFile(half).read([1])
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(LfbError, match=r"junk\.mp4"):
        _ = VideoFile(junk).count_frames()
    with pytest.raises(LfbError, match=r"absent\.mp4: no such video file"):
        VideoFile(tmp_path / "absent.mp4").read([1])


def test_truncated_faststart_video_names_the_frames(tmp_path):
    frames = synthetic_frames(48, 48, 64, seed=5)
    path = tmp_path / "faststart.mp4"
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:  # index first
        stream = container.add_stream("libx264rgb", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "rgb24"
        stream.options = {"crf": "0", "x264-params": "keyint=8:min-keyint=8:scenecut=0"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    video = VideoFile(path)
    assert video.count_frames() == 48  # the index still claims every frame
    np.testing.assert_array_equal(video.read([2]).numpy()[0], frames[1])
    with pytest.raises(LfbError, match=r"faststart\.mp4: cannot decode frames 45\.\.46|faststart\.mp4: frame number 45"):
        video.read([45, 46])


def test_open_source(data, tmp_path):
    root = data["root"]
    assert isinstance(open_source("vid", frames_root=root / "frames"), FrameDirectory)
    assert isinstance(open_source("vid", frames_root=tmp_path, videos_root=root / "videos"), VideoFile)
    with pytest.raises(LfbError, match=r"unknown video id other: no frame directory .*other and no file .*other\.mp4"):
        open_source("other", frames_root=root / "frames", videos_root=root / "videos")
    with pytest.raises(LfbError, match="frames root"):
        open_source("vid")


class _Clips(torch.utils.data.Dataset):
    def __init__(self, video):
        self.video = video

    def __len__(self):
        return 3

    def __getitem__(self, i):
        return self.video.read([1 + 9 * i, 4 + 9 * i])


def test_video_opened_before_fork_works_in_workers(data):
    video = VideoFile(data["lossless"])
    video.read([1])  # the parent holds an open container when the worker forks
    loader = torch.utils.data.DataLoader(
        _Clips(video), batch_size=None, num_workers=1, multiprocessing_context="fork", timeout=60
    )
    clips = list(loader)
    for i, clip in enumerate(clips):
        np.testing.assert_array_equal(clip.numpy(), data["decoded"][[9 * i, 3 + 9 * i]])


class _Proxy:
    """A decoded frame that records its RGB conversions."""

    def __init__(self, frame, index, log):
        self.frame, self.index, self.log = frame, index, log

    def to_ndarray(self, **kwargs):
        self.log.append(self.index)
        return self.frame.to_ndarray(**kwargs)


def test_overlapping_clips_decode_and_convert_each_frame_once(data, monkeypatch):
    from lfbtool.data import frames as frames_module

    converted: list[int] = []
    original = frames_module._indexed_frames
    monkeypatch.setattr(frames_module, "_indexed_frames", lambda *a: (
        (i, _Proxy(f, i, converted)) for i, f in original(*a)))
    video = VideoFile(data["lossy"])
    clips = [[3, 5, 7, 9], [5, 7, 9, 11], [9, 13, 17, 21], [11, 15, 19, 23], [25, 27]]  # keyframe order
    for numbers in clips:
        np.testing.assert_array_equal(video.read(numbers).numpy(), data["sequential"][np.array(numbers) - 1])
    wanted = sorted({n - 1 for numbers in clips for n in numbers})
    assert sorted(converted) == wanted  # only requested frames become RGB, each once
    # one seek to the keyframe before frame 3 (frame 0), then straight on: 0..26 decoded once each
    # (plus the first frame, decoded once when the file is opened)
    assert video.frames_decoded == 1 + 27
    assert sorted(video._window) == list(range(24, 27))  # the last read's span only


def test_window_is_capped_and_reads_stay_exact(data, monkeypatch):
    from lfbtool.data import frames as frames_module

    monkeypatch.setattr(frames_module, "MAX_WINDOW", 8)
    video = VideoFile(data["lossy"])
    everything = list(range(1, N + 1))
    np.testing.assert_array_equal(video.read(everything).numpy(), data["sequential"])
    assert sorted(video._window) == list(range(N - 8, N))
    np.testing.assert_array_equal(video.read([30, 31, 40]).numpy(), data["sequential"][[29, 30, 39]])
    video.release_frames()
    assert video._window == {} and video._rgb == {}
    np.testing.assert_array_equal(video.read([2, 3]).numpy(), data["sequential"][[1, 2]])  # a jump back
