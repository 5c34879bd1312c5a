"""recognize over MMAction2 annotation lists (video and rawframes, --data-prefix): accuracy against a hand
count, the --dump pickle against MMAction2's layout, bad lines; @lists expanded once (nesting, cycles),
byte order marks."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from lfbtool.cli import main
from lfbtool.models.recognizer_factory import build_recognizer
from lfbtool.recognize.lists import InputList, expand_inputs, read_annotations
from lfbtool.recognize.metrics import mean_class_accuracy, top_k_accuracy
from lfbtool.recognize.scoring import RecognizeOptions, recognize, resolve_settings
from lfbtool.testing.synthetic import synthetic_frames, write_frame_dir, write_video

CLASSES = 7
PNG = "img_{:05d}.png"
OPTIONS = ["--num-clips", "2", "--clip-len", "4", "--frame-interval", "1", "--short-side", "32", "--crop-size", "32",
           "--device", "cpu", "--frame-template", PNG]
# ActionDataSample.to_dict(): metainfo keys, then data keys (each group a set in MMAction2; lfbtool's order fixed)
DUMP_KEYS = ["img_shape", "num_classes", "gt_label", "pred_score", "pred_label"]


def run_main(monkeypatch, capsys, *args: str | Path) -> subprocess.CompletedProcess:
    """The console script in this process: exit code, stdout, stderr."""
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["lfbtool", *map(str, args)])
    monkeypatch.delenv("LFBTOOL_DEBUG", raising=False)
    with pytest.raises(SystemExit) as stopped:
        main()
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, int(stopped.value.code or 0), out, err)


def one_error_line(done: subprocess.CompletedProcess, code: int, *needles: str) -> None:
    assert done.returncode == code, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Four videos under root/videos, two frame directories (10 and 6 frames), a 7-class r3d_18."""
    root = tmp_path_factory.mktemp("lists")
    videos = []
    for i in range(4):
        frames = synthetic_frames(8 + i, 32, 40, seed=20 + i)
        videos.append(write_video(root / "videos" / f"v{i}.mp4", frames, fps=8, lossless=True))
    write_frame_dir(root / "frames" / "d0", synthetic_frames(10, 32, 40, seed=30), template=PNG)
    write_frame_dir(root / "frames" / "d1", synthetic_frames(6, 32, 40, seed=31), template=PNG)
    torch.manual_seed(0)
    torch.save(torchvision.models.video.r3d_18(num_classes=CLASSES).state_dict(), root / "r3d.pth")
    recognizer = build_recognizer("r3d_18", checkpoint=str(root / "r3d.pth")).recognizer
    settings = resolve_settings(recognizer, RecognizeOptions(num_clips=2, clip_len=4, frame_interval=1,
                                                             short_side=32, crop_size=32, template=PNG))
    scores = [r.scores for r in recognize(videos, recognizer, settings)]
    return {"root": root, "videos": videos, "scores": scores, "recognizer": recognizer, "settings": settings}


def cli(data, *extra: str | Path) -> list[str | Path]:
    return ["recognize", "--backbone", "r3d_18", "--checkpoint", data["root"] / "r3d.pth", *OPTIONS, *extra]


def hand_labels(scores: list[torch.Tensor]) -> list[int]:
    """v0: its best class (top-1 hit), v1: its second best (top-5 hit only), v2: its worst (a miss),
    v3: its best."""
    order = [s.argsort(descending=True).tolist() for s in scores]
    return [order[0][0], order[1][1], order[2][-1], order[3][0]]


def test_metrics_are_mmaction2s_definitions_on_hand_made_scores():
    scores = np.array([[0.9, 0.05, 0.05], [0.2, 0.1, 0.7], [0.1, 0.8, 0.1]])  # predictions 0, 2, 1
    labels = [0, 0, 1]
    assert top_k_accuracy(scores, labels, 1) == pytest.approx(2 / 3)
    assert top_k_accuracy(scores, labels, 2) == pytest.approx(1.0)  # sample 1: 0 is its second best
    # classes over labels and predictions {0, 1, 2}: recall 1/2, 1/1 and 0 for class 2 (only predicted)
    assert mean_class_accuracy(scores, labels) == pytest.approx((0.5 + 1.0 + 0.0) / 3)


def test_video_list_accuracy_and_dump_follow_mmaction2(data, tmp_path, monkeypatch, capsys):
    labels = hand_labels(data["scores"])
    ann = tmp_path / "val_list.txt"
    ann.write_text("".join(f"v{i}.mp4 {label}\n" for i, label in enumerate(labels)))
    out, dump = tmp_path / "results.jsonl", tmp_path / "results.pkl"
    done = run_main(monkeypatch, capsys, *cli(data, "--ann-file", ann, "--data-prefix", data["root"] / "videos",
                                               "--json", "--out", out, "--dump", dump))
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    records, metrics = lines[:-1], lines[-1]["metrics"]
    assert [r["input"] for r in records] == [str(v) for v in data["videos"]]  # os.path.join(prefix, name)
    assert [r["label"] for r in records] == labels
    # the hand count: v0 and v3 top-1 hits, v1 a top-5 hit only, v2 a miss
    predicted = [int(s.argmax()) for s in data["scores"]]
    classes = set(labels) | set(predicted)
    recalls = [sum(1 for y, p in zip(labels, predicted, strict=True) if y == p == c) / labels.count(c)
               if c in labels else 0.0 for c in classes]
    assert metrics["acc/top1"] == 0.5 and metrics["acc/top5"] == 0.75
    assert metrics["acc/mean1"] == pytest.approx(sum(recalls) / len(classes))
    assert metrics["labelled"] == metrics["evaluated"] == 4
    assert "top-1 0.5000, top-5 0.7500" in done.stderr
    with dump.open("rb") as handle:
        samples = pickle.load(handle)
    assert isinstance(samples, list) and len(samples) == 4
    for sample, label, scores, record in zip(samples, labels, data["scores"], records, strict=True):
        assert list(sample) == DUMP_KEYS
        assert sample["img_shape"] == (32, 32) and sample["num_classes"] == CLASSES
        assert sample["gt_label"].dtype == torch.int64 and sample["gt_label"].tolist() == [label]
        assert sample["pred_score"].dtype == torch.float32 and sample["pred_score"].shape == (CLASSES,)
        assert torch.equal(sample["pred_score"], torch.tensor(record["scores"], dtype=torch.float32))
        torch.testing.assert_close(sample["pred_score"], scores, rtol=1e-6, atol=1e-6)
        assert sample["pred_label"].dtype == torch.int64 and sample["pred_label"].tolist() == [int(scores.argmax())]
    before = out.read_bytes()
    dump.unlink()
    again = run_main(monkeypatch, capsys, *cli(data, "--ann-file", ann, "--data-prefix", data["root"] / "videos",
                                                "--out", out, "--dump", dump, "--resume"))
    assert again.returncode == 0, again.stderr  # a finished run resumed: the same records, the dump again
    assert out.read_bytes() == before
    redone = pickle.loads(dump.read_bytes())  # torch's storage pickles are not byte-stable; the values are
    assert all(torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k]
               for a, b in zip(redone, samples, strict=True) for k in DUMP_KEYS)


def test_dump_of_per_view_scores_and_of_an_unlabelled_list(data, tmp_path, monkeypatch, capsys):
    ann = tmp_path / "test_list.txt"
    ann.write_text("v0.mp4\nv1.mp4\n")  # MMAction2's inference lists: no label (-1)
    dump = tmp_path / "views.pkl"
    done = run_main(monkeypatch, capsys, *cli(data, "--ann-file", ann, "--data-prefix", data["root"] / "videos",
                                               "--average-clips", "none", "--dump", dump, "--json"))
    assert done.returncode == 0, done.stderr
    assert "accuracy" not in done.stderr and "metrics" not in done.stdout
    samples = pickle.loads(dump.read_bytes())
    records = [json.loads(line) for line in done.stdout.splitlines()]
    for sample, record in zip(samples, records, strict=True):
        assert sample["gt_label"].tolist() == [-1]
        assert sample["pred_score"].shape == (2, CLASSES) and sample["num_classes"] == 2  # MMAction2: len(score)
        assert torch.equal(sample["pred_score"], torch.tensor(record["scores"]))
        assert sample["pred_label"].shape == (2, 1)
        assert sample["pred_label"][:, 0].tolist() == sample["pred_score"].argmax(dim=1).tolist()


def test_rawframes_list_samples_from_the_listed_frame_count(data, tmp_path, monkeypatch, capsys):
    """MMAction2's RawframeDataset samples from total_frames of the list, not from the files present."""
    eight = tmp_path / "eight"
    eight.mkdir()
    for number in range(1, 9):  # d0's first 8 frames alone: what "d0 8" must score
        shutil.copy(data["root"] / "frames" / "d0" / PNG.format(number), eight / PNG.format(number))
    (expected,) = recognize([eight], data["recognizer"], data["settings"])
    ann = tmp_path / "raw.txt"
    ann.write_text("d0 8 3\nd1   6\t5\n")  # rawframes split on any whitespace
    done = run_main(monkeypatch, capsys, *cli(data, "--ann-file", ann, "--ann-format", "rawframes",
                                               "--data-prefix", data["root"] / "frames", "--json"))
    assert done.returncode == 0, done.stderr
    first, second, _ = [json.loads(line) for line in done.stdout.splitlines()]
    assert first["num_frames"] == 8 and torch.equal(torch.tensor(first["scores"]), expected.scores)
    assert (first["label"], second["label"]) == (3, 5)
    ann.write_text("d0 8 3\nd1 9 5\n")  # the list claims more frames than d1 holds: a failed input
    dump = tmp_path / "results.pkl"
    done = run_main(monkeypatch, capsys, *cli(data, "--ann-file", ann, "--ann-format", "rawframes",
                                               "--data-prefix", data["root"] / "frames", "--dump", dump))
    assert done.returncode == 2
    assert "the annotation list gives 9 frames but the directory holds 6" in done.stderr
    assert "accuracy over 1 labelled inputs (1 failed, left out)" in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: --dump {dump}: not written, 1 input(s) failed (first {data['root'] / 'frames' / 'd1'}); "
                      "MMAction2's dump has one entry per sample: fix or remove them and rerun with --resume"]
    assert not dump.exists() and not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


@pytest.mark.parametrize(("fmt", "text", "needle"), [
    ("video", "v0.mp4 1\nv1.mp4 1 2\n", "line 2: 2 labels; multi-label lists are not supported"),
    ("video", "v0.mp4 one\n", "line 1: label 'one' is not an integer"),
    ("video", "v0.mp4  1\n", "line 1: fields must be separated by one space"),
    ("video", "v0.mp4 1\n\nv1.mp4\n", "line 3: no label, but line 1 has one"),
    ("video", "v0.mp4 -2\n", "line 1: label -2 is negative"),
    ("video", "v0.mp4 0\nv1.mp4 7\n", "line 2: label 7 is not a class of the model (0..6)"),
    ("rawframes", "d0\n", "line 1: expected 'frame_dir total_frames label'"),
    ("rawframes", "d0 ten 1\n", "line 1: total_frames 'ten' is not an integer"),
    ("rawframes", "d0 8 1\nd1 6 1 2\n", "line 2: 2 fields after total_frames"),
    ("rawframes", "d0 0 1\n", "line 1: total_frames must be >= 1"),
])
def test_a_bad_list_line_is_one_error_naming_file_and_line(data, tmp_path, monkeypatch, capsys, fmt, text, needle):
    ann = tmp_path / "bad.txt"
    ann.write_text(text)
    out, dump = tmp_path / "results.jsonl", tmp_path / "results.pkl"
    done = run_main(monkeypatch, capsys, *cli(data, "--ann-file", ann, "--ann-format", fmt, "--data-prefix",
                                               data["root"], "--out", out, "--dump", dump))
    one_error_line(done, 2, str(ann), needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.txt"]  # no results, no parts, no dump, no lock


def test_option_refusals(data, tmp_path, monkeypatch, capsys):
    ann = tmp_path / "a.txt"
    ann.write_text("v0.mp4 1\n")
    for extra, needle in (
        (["--ann-file", ann, data["videos"][0]], "pass INPUTS or --ann-file, not both"),
        ([data["videos"][0], "--data-prefix", tmp_path], "--data-prefix joins the paths of --ann-file"),
        (["--ann-file", ann, "--ann-format", "frames"], "--ann-format must be one of video, rawframes"),
        ([data["videos"][0], "--dump", tmp_path / "r.json"], "the dump must be a .pkl or .pickle file"),
    ):
        one_error_line(run_main(monkeypatch, capsys, *cli(data, *extra)), 2, needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_a_bad_list_line_costs_no_torch_start_up(tmp_path):
    from tests.test_light_start import lfbtool_light

    ann = tmp_path / "bad.txt"
    ann.write_text("v0.mp4 1 2\n")
    done, loaded = lfbtool_light("recognize", "--backbone", "r3d_18", "--checkpoint", tmp_path / "none.pth",
                                 "--ann-file", ann)
    lines = [line for line in done.stderr.splitlines()[:-1] if line]  # the last: the wrapper's LOADED report
    assert done.returncode == 2 and lines == [f"error: {ann}: line 1: 2 labels; multi-label lists are not supported "
                                              "(expected 'path label')"]
    assert loaded == []


# --- @lists: expanded once, nested, cycles; byte order marks ---------------------------------------------


def test_nested_lists_expand_once_in_place_and_resume_accepts_the_same_command(data, tmp_path, monkeypatch,
                                                                                  capsys):
    v = [str(p) for p in data["videos"]]
    inner, outer = tmp_path / "inner.txt", tmp_path / "outer.txt"
    inner.write_text(f"{v[1]}\n# a comment\n{v[2]}\n")
    outer.write_text(f"{v[0]}\n@{inner}\n{v[3]}\n@{inner}\n")  # the same list twice is no cycle
    assert [str(p) for p in expand_inputs([f"@{outer}"])] == [v[0], v[1], v[2], v[3], v[1], v[2]]
    reference = tmp_path / "reference.jsonl"
    done = run_main(monkeypatch, capsys, *cli(data, f"@{outer}", "--out", reference))
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in reference.read_text().splitlines()]
    assert [r["input"] for r in records] == [v[0], v[1], v[2], v[3], v[1], v[2]]
    assert [r["index"] for r in records] == list(range(6))
    assert records[1]["scores"] == records[4]["scores"]  # the same input scored the same wherever it appears

    import lfbtool.recognize.job as job_module

    scored = job_module.score_paths

    def interrupted(*args, **kwargs):  # Ctrl-C after the third input was recorded
        for count, result in enumerate(scored(*args, **kwargs)):
            if count == 3:
                raise KeyboardInterrupt
            yield result

    out = tmp_path / "results.jsonl"
    monkeypatch.setattr(job_module, "score_paths", interrupted)
    assert run_main(monkeypatch, capsys, *cli(data, f"@{outer}", "--out", out)).returncode == 130
    monkeypatch.setattr(job_module, "score_paths", scored)
    assert not out.exists() and (tmp_path / "results.jsonl.parts").is_dir()
    again = run_main(monkeypatch, capsys, *cli(data, f"@{outer}", "--out", out, "--resume"))
    assert again.returncode == 0, again.stderr  # the same command resumes: the list means the same inputs
    assert "3 already recorded" in again.stderr
    assert out.read_bytes() == reference.read_bytes()  # equal to the uninterrupted run


def test_a_missing_nested_list_names_the_line_that_named_it(data, tmp_path, monkeypatch, capsys):
    outer = tmp_path / "outer.txt"
    outer.write_text(f"{data['videos'][0]}\n\n@{tmp_path / 'gone.txt'}\n")
    done = run_main(monkeypatch, capsys, *cli(data, f"@{outer}", "--out", tmp_path / "r.jsonl"))
    one_error_line(done, 2, f"{outer}: line 3: {tmp_path / 'gone.txt'}: cannot read input list (No such file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outer.txt"]


@pytest.mark.parametrize("shape", ["self", "pair"])
def test_a_cycle_of_lists_is_one_error_naming_it(data, tmp_path, monkeypatch, capsys, shape):
    first, second = tmp_path / "x.txt", tmp_path / "y.txt"
    if shape == "self":
        first.write_text(f"{data['videos'][0]}\n@{first}\n")
        cycle = f"({first} -> {first})"
    else:
        first.write_text(f"{data['videos'][0]}\n@{second}\n")
        second.write_text(f"{data['videos'][1]}\n@{first}\n")
        cycle = f"({first} -> {second} -> {first})"
    out = tmp_path / "results.jsonl"
    done = run_main(monkeypatch, capsys, *cli(data, f"@{first}", "--out", out))
    one_error_line(done, 2, cycle, "cycle of input lists", "line 2")
    assert not out.exists() and not list(tmp_path.glob("*.parts")) and not list(tmp_path.glob(".*lock"))


def test_a_byte_order_mark_is_dropped_from_lists_labels_and_annotation_files(data, tmp_path, monkeypatch, capsys):
    bom = "\ufeff"
    listing, labels, ann = tmp_path / "list.txt", tmp_path / "labels.txt", tmp_path / "ann.txt"
    listing.write_text(bom + f"{data['videos'][0]}\n", encoding="utf-8")
    names = ["walk", "run", "jump", "sit", "stand", "wave", "clap"]
    labels.write_text(bom + "\n".join(names) + "\n", encoding="utf-8")
    ann.write_text(bom + "v0.mp4 2\n", encoding="utf-8")
    assert [str(p) for p in expand_inputs([f"@{listing}"])] == [str(data["videos"][0])]
    assert read_annotations(ann, "video", data["root"] / "videos").paths == [data["videos"][0]]
    done = run_main(monkeypatch, capsys, *cli(data, f"@{listing}", "--labels", labels, "--json", "--top-k", "7"))
    assert done.returncode == 0, done.stderr
    (record,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert sorted(row["label"] for row in record["top_k"]) == sorted(names)  # "walk", not "\ufeffwalk"
    done = run_main(monkeypatch, capsys, *cli(data, "--ann-file", ann, "--data-prefix", data["root"] / "videos",
                                               "--json"))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[0])["label"] == 2


def test_an_input_list_is_taken_as_it_is(data):
    """The library: an InputList is never expanded again (a path that starts with @ stays a path)."""
    from lfbtool.recognize.job import RecognizeJob, run_recognize, run_settings

    recognizer, settings = data["recognizer"], data["settings"]
    job = RecognizeJob()
    info = run_settings(recognizer, settings, job)
    given = InputList([Path("@nowhere.txt"), data["videos"][0]], [None, None])
    summary = run_recognize(given, recognizer, settings, job, info)
    assert [r["input"] for r in summary.records] == ["@nowhere.txt", str(data["videos"][0])]
    assert "no such video file" in summary.records[0]["error"] and summary.records[1].get("error") is None


# --- progress ---------------------------------------------------------------------------------------------


def test_rank_zero_scales_its_share_to_the_whole_run(monkeypatch):
    """Rank 0 of 2 holds 3 of 5 inputs: after each of its inputs the bar shows 2, 3, then all 5."""
    import lfbtool.recognize.progress as progress
    from lfbtool.runtime.distributed import DistContext

    monkeypatch.setattr(progress, "all_gather", lambda ctx, share: [share, 2])
    bar = progress.RankProgress(DistContext(rank=0, world_size=2), 3, enabled=False)
    assert bar.total == 5
    shown = []
    with bar:
        for _ in range(3):
            bar.advance()
            shown.append(bar._bar.tasks[0].completed)
    assert shown == [2, 3, 5]
    assert progress.shown_count(2, 2, 3) == 3 and progress.shown_count(0, 0, 4) == 4  # never past the total


def test_the_progress_bar_counts_every_input(data, capsys):
    from lfbtool.recognize.job import RecognizeJob, run_recognize, run_settings

    recognizer, settings = data["recognizer"], data["settings"]
    job = RecognizeJob(progress=True)
    capsys.readouterr()
    run_recognize(data["videos"][:3], recognizer, settings, job, run_settings(recognizer, settings, job))
    err = capsys.readouterr().err
    assert "inputs" in err and "3/3" in err, err
    run_recognize(data["videos"][:3], recognizer, settings, RecognizeJob(), run_settings(recognizer, settings, job))
    assert "3/3" not in capsys.readouterr().err  # off unless asked (the CLI asks at a terminal)
