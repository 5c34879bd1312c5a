"""Pictures checked by their pixels: a box lands at its stored coordinates, a tile shows its key's keyframe
image (frames whose pixels encode their own number), a strip's bars and band are the bank's numbers.

Frames are flat colours, so the bilinear upscaling to 256 px keeps them exact; index frames are PNG
(lossless) or a lossless video.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lfbtool.bank.writer import BankWriter

GREY = 128
FPS, SECONDS, HEIGHT, WIDTH = 4, 7, 24, 32
C = 16


def index_colour(number: int) -> tuple[int, int, int]:
    """The flat colour of frame ``number``: neighbours differ by 6 in two channels."""
    return (30 + 6 * number, 220 - 6 * number, 90)


def write_index_frames(directory: Path, count: int, height: int = HEIGHT, width: int = WIDTH) -> None:
    """``img_00001.png`` .. : frame number n is flat ``index_colour(n)`` (PNG, exact)."""
    directory.mkdir(parents=True, exist_ok=True)
    for number in range(1, count + 1):
        frame = np.empty((height, width, 3), dtype=np.uint8)
        frame[:] = index_colour(number)
        Image.fromarray(frame).save(directory / f"img_{number:05d}.png")


def write_bank(path: Path, keys: dict[tuple[str, int], np.ndarray], config: dict, boxes=(0.55, 0.6, 0.9, 0.95)) -> None:
    """A bank of the given features per key (float16), every row with the same box and score 0.9."""
    with BankWriter(path, feature_dim=C, dtype="float16", mode="train", config_json=json.dumps(config),
                    config_fingerprint="pictures") as writer:
        for (video, second), features in sorted(keys.items()):
            n = len(features)
            writer.append(video, second, features.astype(np.float16), np.tile(np.float32(boxes), (n, 1)),
                          np.full(n, 0.9, dtype=np.float32))


def region(image: Image.Image, box: tuple[int, int, int, int]) -> np.ndarray:
    x, y, w, h = box
    return np.asarray(image.convert("RGB"))[y:y + h, x:x + w]


def test_a_box_on_a_grey_frame_lies_at_its_stored_coordinates():
    from lfbtool.pictures.draw import PALETTE, render_tile

    frame = np.full((48, 64, 3), GREY, dtype=np.uint8)
    box = np.float32([[0.2, 0.25, 0.7, 0.75]])
    tile, image_height = render_tile(frame, box, np.float32([np.nan]), ["v,0003", "frame 14"])
    pixels = np.asarray(tile)
    width, height = round(64 * 256 / 48), 256  # the short side scaled to 256, the aspect kept
    assert image_height == height and tile.width == width and tile.height > height  # caption below
    left, right = round(0.2 * width), round(0.7 * width) - 1  # first and last covered column
    top, bottom = round(0.25 * height), round(0.75 * height) - 1
    red, grey = tuple(PALETTE[0]), (GREY, GREY, GREY)
    mid_y, mid_x = (top + bottom) // 2, (left + right) // 2
    for x in (left, left + 1, right - 1, right):  # the 2-px outline, inside the box
        assert tuple(pixels[mid_y, x]) == red, x
    for y in (top, top + 1, bottom - 1, bottom):
        assert tuple(pixels[y, mid_x]) == red, y
    for x in (left - 1, left + 2, right - 2, right + 1):  # just outside and just inside
        assert tuple(pixels[mid_y, x]) == grey, x
    for y in (top - 1, top + 2, bottom - 2, bottom + 1):
        assert tuple(pixels[y, mid_x]) == grey, y
    image = pixels[:height]
    outline = np.all(image == red, axis=-1)
    assert outline.sum() == 2 * 2 * (right - left + 1) + 2 * 2 * (bottom - top + 1 - 4)  # nothing else red
    assert np.all(image[~outline] == GREY)  # no score label for an unknown (NaN) score


def test_a_scored_box_gets_its_label_above_it():
    from lfbtool.pictures.draw import PALETTE, render_tile

    frame = np.full((64, 64, 3), GREY, dtype=np.uint8)
    tile, _ = render_tile(frame, np.float32([[0.25, 0.5, 0.75, 0.9]]), np.float32([0.87]), ["v,0001"])
    pixels = np.asarray(tile)
    above = pixels[100:127, 64:100]  # the rows just above the box's top (row 128), from its left edge
    assert np.all(above[-4] == PALETTE[0], axis=-1).sum() > 10  # the label's background
    assert (np.abs(above.astype(int) - PALETTE[0]).sum(-1) > 200).sum() > 5  # and its dark text


@pytest.fixture(scope="module")
def index_data(tmp_path_factory) -> dict[str, Path]:
    """Video ``v`` (28 frames at 4 fps) as PNG frames and as a lossless mp4, and banks over it."""
    from lfbtool.testing.synthetic import write_video

    root = tmp_path_factory.mktemp("index_frames")
    write_index_frames(root / "frames" / "v", FPS * SECONDS)
    frames = np.stack([np.full((HEIGHT, WIDTH, 3), index_colour(n), dtype=np.uint8)
                       for n in range(1, FPS * SECONDS + 1)])
    write_video(root / "videos" / "v.mp4", frames, FPS, lossless=True)
    rng = np.random.default_rng(0)
    keys = {("v", t): rng.random((2, C)) for t in range(1, 6)}
    recorded = {"fps": FPS, "timestamp_start": 0, "start_index": 1, "frame_template": "img_{:05d}.png"}
    write_bank(root / "frames.h5", keys, recorded)
    write_bank(root / "auto.h5", keys, {**recorded, "fps": "auto", "frame_template": "img_{:05d}.jpg"})
    return {"root": root, "frames": root / "frames", "videos": root / "videos", "bank": root / "frames.h5",
            "auto": root / "auto.h5"}


@pytest.mark.parametrize("source", ["frames", "videos"])
def test_the_tile_of_a_key_shows_its_keyframe_image(index_data, tmp_path, source):
    """v,0003 at 4 fps, timestamp start 0, start index 1: centre 4 * 3 = 12, plus start_index twice
    (MMAction2's rule) = frame number 14. Its neighbours' colours differ, so an off-by-one fails."""
    from lfbtool.pictures import FrameOptions, show_bank
    from lfbtool.pictures.draw import PALETTE

    if source == "frames":
        frames, bank = FrameOptions(frames_root=index_data["frames"]), index_data["bank"]
    else:  # the bank says fps "auto": the video's own rate (4)
        frames, bank = FrameOptions(videos_root=index_data["videos"]), index_data["auto"]
    out = tmp_path / "bank.png"
    picture = show_bank(bank, out, frames=frames, tiles=5)
    on_disk = Image.open(out)
    assert on_disk.size == picture.image.size
    for second in range(1, 6):
        tile = picture.tile("v", second)
        assert tile.frame_number == 4 * second + 2
        x, y, w, h = tile.box
        assert min(w, h) == 256
        pixels = region(on_disk, tile.box)
        clear = pixels[10:h // 2, 10:w // 2]  # away from the box (lower right) and its label
        assert np.all(clear == index_colour(4 * second + 2)), (second, clear[0, 0])
        left, bottom = round(0.55 * w), round(0.95 * h) - 1
        # the stored box's left edge, in the second row's colour (both rows share the box; it is drawn last)
        assert tuple(pixels[(round(0.6 * h) + bottom) // 2, left]) == PALETTE[1]


def test_strips_are_the_banks_numbers(tmp_path):
    """Counts per second (one second missing) and the similarity of each key to the previous one, drawn
    as bars and band; the bar heights read back to the bank's counts."""
    from lfbtool.pictures import show_bank
    from lfbtool.pictures.strip import BAR, NO_KEY, similarity_colour

    rng = np.random.default_rng(1)
    scene_a, scene_b = np.zeros(C), np.zeros(C)
    scene_a[: C // 2], scene_b[C // 2:] = 1.0, 1.0  # orthogonal: a shot change between 3 and 5
    counts = {1: 1, 2: 3, 3: 2, 5: 1, 6: 2}
    keys = {("v", t): (scene_a if t < 4 else scene_b) + 0.1 * rng.random((n, C)) for t, n in counts.items()}
    keys[("w", 10)] = rng.random((4, C))
    bank = tmp_path / "bank.h5"
    write_bank(bank, keys, {})
    picture = show_bank(bank, tmp_path / "strips.png")
    assert [s.data.video for s in picture.strips] == ["v", "w"] and picture.tiles == []
    strip = picture.strip("v")
    data = strip.data
    assert data.seconds.tolist() == [1, 2, 3, 4, 5, 6]
    assert data.counts.tolist() == [1, 3, 2, 0, 1, 2] and data.present.tolist() == [True] * 3 + [False] + [True] * 2
    stored = {k: v.astype(np.float16).astype(np.float64) for k, v in keys.items()}  # what the bank holds
    means = [stored[("v", t)].mean(axis=0) for t in sorted(counts)]
    expected = [np.nan] + [float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) for a, b in zip(means[1:], means[:-1], strict=True)]
    drawn = data.similarity[data.present]
    assert np.isnan(drawn[0]) and np.allclose(drawn[1:], expected[1:], rtol=0, atol=1e-12)
    assert drawn[3] < 0.2 < 0.9 < min(drawn[1], drawn[2], drawn[4])  # the shot change stands out

    pixels = np.asarray(Image.open(tmp_path / "strips.png").convert("RGB"))
    read_back = []
    for i in range(len(data.seconds)):
        x = strip.x0 + i * strip.column + strip.column // 2
        column = pixels[: strip.baseline, x]
        height = 0
        while height < strip.baseline and tuple(column[strip.baseline - 1 - height]) == BAR:
            height += 1
        assert tuple(column[strip.baseline - 1 - height]) != BAR
        read_back.append(round(height * strip.max_count / strip.bar_height))
        band = tuple(pixels[(strip.band[0] + strip.band[1]) // 2, x])
        if not data.present[i]:
            assert band == NO_KEY
        elif i > 0:
            assert band == similarity_colour(data.similarity[i])
    assert read_back == [1, 3, 2, 0, 1, 2]
    assert picture.strip("w").data.counts.tolist() == [4]
