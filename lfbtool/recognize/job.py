"""``recognize`` over a whole test set: result records to a JSONL file, keep going past bad inputs,
``--resume`` after a kill, torchrun ranks, clip embeddings and Grad-CAM pictures.

What the CLI runs and library users call (:func:`run_recognize`). Under torchrun the inputs still to
do are split in contiguous blocks across ranks; each rank writes its own part files; rank 0 writes
the results (and the embeddings file) in input order after every rank is done, so the files equal
those of one process.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lfbtool import __version__
from lfbtool.errors import LfbError
from lfbtool.models.checkpoint import checkpoint_sha256
from lfbtool.models.recognizers import BaseRecognizer
from lfbtool.recognize._records import (
    RecordWriter,
    existing_outputs,
    fingerprint,
    load_done,
    part_path,
    result_record,
    write_results,
)
from lfbtool.recognize.scoring import TestSettings, VideoResult, expand_inputs, recognize, top_k
from lfbtool.runtime.distributed import DistContext, all_gather, barrier, broadcast, contiguous_block

__all__ = ["RecognizeJob", "RunSummary", "run_recognize", "run_settings"]

Record = dict[str, Any]


@dataclass(frozen=True)
class RecognizeJob:
    """Where results go and how a run treats bad inputs and earlier runs."""

    out: Path | None = None  # JSONL of records
    features: Path | None = None  # HDF5 of clip embeddings
    gradcam_dir: Path | None = None
    gradcam_layer: str | None = None
    gradcam_class: int | None = None
    resume: bool = False
    overwrite: bool = False
    keep_going: bool = True
    top_k: int = 5


@dataclass
class RunSummary:
    records: list[Record]  # every input's record, in input order
    skipped: int = 0  # recorded by an earlier run (--resume)
    failures: list[Record] = field(default_factory=list)


def run_settings(
    recognizer: BaseRecognizer,
    settings: TestSettings,
    job: RecognizeJob,
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    weights: str | None = None,
    names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """What makes two runs' records comparable (their fingerprint): model, views, outputs.

    Not included: device, batching, ``max_testing_views`` and the memory budget (they change memory
    and speed, not results beyond float rounding).
    """
    from lfbtool.recognize.gradcam import default_layer_name

    return {
        "backbone": recognizer.name,
        "checkpoint_sha256": checkpoint_sha256(checkpoint) if checkpoint is not None else None,
        "weights": weights,
        "num_classes": recognizer.num_classes,
        "clip_len": settings.clip_len,
        "frame_interval": settings.frame_interval,
        "num_clips": settings.num_clips,
        "short_side": settings.short_side,
        "crop_size": settings.crop_size,
        "crops": str(settings.crops),
        "average_clips": str(settings.average_clips),
        "loop": settings.loop,
        "frame_template": settings.template,
        "start_index": settings.start_index,
        "precision": str(settings.precision),
        "top_k": job.top_k,
        "labels": hashlib.sha256("\n".join(names).encode()).hexdigest()[:16] if names is not None else None,
        "features": job.features is not None,
        "gradcam_layer": (job.gradcam_layer or default_layer_name(recognizer)).replace("/", ".")
        if job.gradcam_dir is not None else None,
        "gradcam_class": job.gradcam_class,
    }


def _prepare_outputs(job: RecognizeJob, inputs: Sequence[str], settings: Mapping[str, Any]) -> dict[int, Record]:
    """Rank 0: refuse, clear or resume what an earlier run left; the records already done."""
    from lfbtool.recognize import embeddings

    extra = [job.features, embeddings.parts_dir(job.features)] if job.features is not None else []
    if job.resume and job.overwrite:
        raise LfbError("pass either --resume or --overwrite, not both")
    if job.resume and job.out is None:
        raise LfbError("--resume needs --out FILE: the records of the run to continue")
    left = existing_outputs(job.out, extra) if job.out is not None else [p for p in extra if p.exists()]
    if left and not job.resume and not job.overwrite:
        raise LfbError(f"{left[0]}: exists; pass --resume to continue that run or --overwrite to replace it")
    if not job.resume:
        for path in left:
            if path.is_dir():
                embeddings.remove_parts(job.features)  # type: ignore[arg-type]
            else:
                path.unlink()
        return {}
    assert job.out is not None
    done = load_done(job.out, inputs, settings)
    if job.features is not None and job.features.exists():  # a finished file: its rows become parts again
        stored = embeddings.read_embeddings(job.features)
        rows = dict(zip(stored.inputs, stored.embeddings, strict=True))
        for index, record in done.items():
            if record.get("error") is None and record["input"] in rows:
                embeddings.write_part(job.features, index, rows[record["input"]])
    return done


def _write_gradcam(recognizer: BaseRecognizer, result: VideoResult, job: RecognizeJob, settings: Mapping[str, Any],
                   names: Sequence[str] | None) -> dict[str, Any]:
    from lfbtool.recognize.gradcam import compute_gradcam
    from lfbtool.recognize.gradcam_render import write_gradcam_files

    views = result.gradcam_views
    assert views is not None and result.scores is not None and job.gradcam_dir is not None
    clip = views[:, :, 0].transpose(0, 1) if recognizer.is_2d else views[0]  # [3, T, H, W]
    target = job.gradcam_class if job.gradcam_class is not None else top_k(result.scores, 1)[0][0]
    cam = compute_gradcam(recognizer, clip, target_class=target, layer=settings["gradcam_layer"])
    label = names[cam.target_class] if names is not None else f"class {cam.target_class}"
    files = write_gradcam_files(job.gradcam_dir, Path(result.input).name, clip.numpy(), cam.map.numpy(),
                                f"{label} ({cam.layer})")
    return {"class": cam.target_class, "layer": cam.layer, "files": [str(f) for f in files]}


def run_recognize(
    inputs: Sequence[str | os.PathLike[str]],
    recognizer: BaseRecognizer,
    settings: TestSettings,
    job: RecognizeJob,
    run_info: Mapping[str, Any],
    *,
    names: Sequence[str] | None = None,
    device: torch.device | str = "cpu",
    ctx: DistContext | None = None,
    on_record: Callable[[Record], None] | None = None,
    on_failure: Callable[[Record], None] | None = None,
    on_notice: Callable[[str], None] | None = None,
) -> RunSummary:
    """Score every input, write the records (``job.out``), embeddings and Grad-CAM files; return all records.

    ``run_info``: :func:`run_settings`'s dict (its fingerprint guards ``--resume``). ``on_record`` is
    called on rank 0 for each new record in input order (as they come in one process, after every rank
    is done under torchrun); ``on_failure`` on the rank where an input failed. Every rank returns the
    same summary.
    """
    ctx = ctx or DistContext()
    paths = expand_inputs(inputs)
    texts = [str(p) for p in paths]
    if job.gradcam_dir is not None:
        seen: dict[str, str] = {}
        for text in texts:
            other = seen.setdefault(Path(text).name, text)
            if other != text:
                raise LfbError(f"--gradcam: {other} and {text} share the name {Path(text).name}; "
                               "their pictures would overwrite each other")
    problem, done = None, {}
    if ctx.is_main:
        try:
            done = _prepare_outputs(job, texts, run_info)
        except LfbError as error:
            problem = str(error)
    problem, done = broadcast(ctx, (problem, done))
    if problem is not None:
        raise LfbError(problem, all_ranks=True)

    todo = [i for i in range(len(paths)) if i not in done]
    mine = [todo[j] for j in contiguous_block(len(todo), ctx.world_size, ctx.rank)]
    writer = RecordWriter(part_path(job.out, ctx.rank)) if job.out is not None and mine else None
    new: list[Record] = []
    try:
        results = recognize([paths[i] for i in mine], recognizer, settings, device=device, on_notice=on_notice,
                            keep_going=job.keep_going, embeddings=job.features is not None,
                            gradcam_views=job.gradcam_dir is not None) if mine else iter(())
        for result in results:
            index = mine[result.index]
            extra: dict[str, Any] = {}
            if result.error is None:
                if job.features is not None and result.embeddings is not None:
                    from lfbtool.recognize.embeddings import write_part

                    write_part(job.features, index, result.embeddings.numpy())
                if job.gradcam_dir is not None:
                    extra["gradcam"] = _write_gradcam(recognizer, result, job, run_info, names)
            record = {**result_record(result, index, names, job.top_k, run_info), **extra}
            if writer is not None:
                writer.write(record)
            new.append(record)
            if record.get("error") is not None and on_failure is not None:
                on_failure(record)
            if ctx.world_size == 1 and on_record is not None:
                on_record(record)
    finally:
        if writer is not None:
            writer.close()
    fresh = sorted((r for part in all_gather(ctx, new) for r in part), key=lambda r: r["index"])
    if ctx.world_size > 1 and ctx.is_main and on_record is not None:
        for record in fresh:
            on_record(record)
    records = sorted([*done.values(), *fresh], key=lambda r: r["index"])
    if ctx.is_main:
        if job.out is not None:
            write_results(job.out, records)
        if job.features is not None:
            from lfbtool.recognize.embeddings import write_embeddings

            write_embeddings(job.features, records, settings=run_info, fingerprint=fingerprint(run_info),
                             created_by=f"lfbtool {__version__}, torch {torch.__version__}")
    barrier(ctx)
    return RunSummary(records, skipped=len(done), failures=[r for r in records if r.get("error") is not None])
