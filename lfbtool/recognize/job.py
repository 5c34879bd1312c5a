"""``recognize`` over a whole test set: result records to a JSONL file, keep going past bad inputs,
``--resume`` after a kill, torchrun ranks, clip embeddings and Grad-CAM pictures.

What the CLI runs and library users call (:func:`run_recognize`). The run scaffold
(:mod:`lfbtool.runs`) splits the inputs still to do in contiguous blocks across ranks; each rank
publishes parts beside the output; rank 0 writes the results (and the embeddings file) in input
order after every rank is done, so the files equal those of one process.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lfbtool import __version__
from lfbtool._io.lock import RunLock
from lfbtool.errors import LfbError, RunError
from lfbtool.models.checkpoint import checkpoint_sha256
from lfbtool.models.recognizers import BaseRecognizer
from lfbtool.recognize._records import (
    RecordParts,
    inputs_digest,
    read_results,
    result_record,
    results_settings,
    write_results,
)
from lfbtool.recognize.embeddings import read_embeddings, write_embeddings
from lfbtool.recognize.lists import InputList, input_list
from lfbtool.recognize.metrics import accuracy
from lfbtool.recognize.progress import RankProgress
from lfbtool.recognize.scoring import TestSettings, score_paths
from lfbtool.runs.parts import Finished, PartWriter, RunParts, parts_directory_beside
from lfbtool.runs.scaffold import on_main, run_in_parts
from lfbtool.runs.settings import fingerprint
from lfbtool.runtime.distributed import DistContext, all_gather, broadcast, contiguous_block

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
    gradcam_clips: str = "top"  # top | all | view indices "0,3" (lfbtool.recognize.gradcam_views)
    resume: bool = False
    overwrite: bool = False
    keep_going: bool = True
    top_k: int = 5
    segment_size: int = 1  # inputs per part: each scored input is on disk as soon as it is done
    progress: bool = False  # a progress bar on rank 0 (the CLI: at a terminal)


@dataclass
class RunSummary:
    records: list[Record]  # every input's record, in input order
    skipped: int = 0  # recorded by an earlier run (--resume)
    failures: list[Record] = field(default_factory=list)
    metrics: dict[str, Any] | None = None  # acc/top1, acc/top5, acc/mean1 when the inputs carry labels

    def __post_init__(self) -> None:
        if self.metrics is None:
            self.metrics = accuracy(self.records)


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
        "gradcam_clips": job.gradcam_clips if job.gradcam_dir is not None else None,
    }


def _outputs(job: RecognizeJob) -> tuple[Path, Finished] | None:
    """The file a run is resumed from (``--out``, else ``--features``) with its parts beside it; None
    when nothing is written (records go to the caller only)."""
    if job.out is not None:
        companions = (job.features,) if job.features is not None else ()
        return job.out, Finished(job.out, results_settings, companions=companions)
    if job.features is not None:
        return job.features, Finished(job.features, lambda path: read_embeddings(path).settings)
    return None


def run_recognize(
    inputs: Sequence[str | os.PathLike[str]] | InputList,
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

    ``inputs``: paths and ``@list.txt`` (expanded once, here), or an :class:`InputList` taken as it is
    (the CLI's, or an MMAction2 annotation list from :func:`lfbtool.recognize.lists.read_annotations`,
    whose labels go into the records as ``label`` and into the summary's accuracy). ``run_info``:
    :func:`run_settings`'s dict; with the digest of the input list it is what the records carry and
    what ``--resume`` compares. The inputs are split over the ranks and written in parts by the run
    scaffold (:mod:`lfbtool.runs.scaffold`); rank 0 writes the files in input order at the end.
    ``on_record`` is called on rank 0 for each new record in input order (as they come in one process,
    after every rank is done under torchrun); ``on_failure`` on the rank where an input failed. Every
    rank returns the same summary.
    """
    ctx = ctx or DistContext()
    given = input_list(inputs)
    paths, listed, labels = given.paths, given.total_frames, given.labels
    texts = [str(p) for p in paths]
    given.check_labels(recognizer.num_classes)
    # what --resume compares: the inputs, and with an annotation list their frame counts and labels
    digested = texts if given.source is None else [
        f"{p}\t{n}\t{label}" for p, n, label in zip(texts, listed, labels or [None] * len(texts), strict=True)]
    if job.gradcam_dir is not None:
        seen: dict[str, str] = {}
        for text in texts:
            other = seen.setdefault(Path(text).name, text)
            if other != text:
                raise LfbError(f"--gradcam: {other} and {text} share the name {Path(text).name}; "
                               "their pictures would overwrite each other")
    if job.resume and job.overwrite:
        raise LfbError("pass either --resume or --overwrite, not both")
    if job.resume and job.out is None:
        raise LfbError("--resume needs --out FILE: the records of the run to continue")
    info = {**run_info, "inputs_sha256": inputs_digest(digested)}
    if job.gradcam_dir is not None:
        from lfbtool.recognize.gradcam_views import parse_gradcam_clips, write_gradcam

        parse_gradcam_clips(job.gradcam_clips, settings, recognizer.is_2d)  # refused before any work

    def score(mine: list[int], keep: Callable[[int, Record, np.ndarray | None], None]) -> None:
        progress = RankProgress(ctx, len(mine), enabled=job.progress)  # every rank: it gathers the shares
        if not mine:
            return
        with progress:
            for result in score_paths([paths[i] for i in mine], recognizer, settings, device=device,
                                      on_notice=on_notice, keep_going=job.keep_going,
                                      embeddings=job.features is not None, keep_views=job.gradcam_dir is not None,
                                      listed_frames=[listed[i] for i in mine]):
                index = mine[result.index]
                extra: dict[str, Any] = {} if labels is None else {"label": labels[index]}
                embedding = None
                if result.error is None:
                    if job.features is not None and result.embeddings is not None:
                        embedding = result.embeddings.numpy()
                    if job.gradcam_dir is not None:
                        extra["gradcam"] = write_gradcam(recognizer, result, job, settings, info, names,
                                                         listed[index])
                record = {**result_record(result, index, names, job.top_k, info), **extra}
                keep(index, record, embedding)
                if record.get("error") is not None and on_failure is not None:
                    on_failure(record)
                if ctx.world_size == 1 and on_record is not None:
                    on_record(record)
                progress.advance()

    outputs = _outputs(job)
    if outputs is None:  # nothing to write, nothing to resume: score this rank's share, gather
        fresh: list[Record] = []
        score([i for i in contiguous_block(len(texts), ctx.world_size, ctx.rank)], lambda i, r, e: fresh.append(r))
        records = sorted((r for part in all_gather(ctx, fresh) for r in part), key=lambda r: r["index"])
        _report_new(ctx, records, set(), on_record)
        return RunSummary(records, failures=[r for r in records if r.get("error") is not None])
    primary, final = outputs

    def work(mine: list[int], writer: PartWriter) -> None:
        score(mine, lambda index, record, embedding: writer.append(index, (record, embedding)))

    def assemble(parts: RunParts) -> list[Record]:
        found: dict[int, Record] = {}
        rows: dict[int, np.ndarray] = {}
        for path in parts.finished()[0]:
            records, embeddings = RecordParts().read(path)
            found.update((int(r["index"]), r) for r in records)
            rows.update(embeddings)
        missing = [i for i in range(len(texts)) if i not in found]
        if missing:
            raise RunError(f"{parts.directory}: {len(missing)} inputs have no record (first {texts[missing[0]]}); "
                           "rerun with --resume")
        ordered = [found[i] for i in range(len(texts))]
        if job.out is not None:
            write_results(job.out, ordered)
        if job.features is not None:
            write_embeddings(job.features, ordered, rows, settings=info, fingerprint=fingerprint(info),
                             created_by=f"lfbtool {__version__}, torch {torch.__version__}")
        parts.remove()
        return ordered

    lock = RunLock(primary.parent, f"lfbtool recognize --out {primary}", name=f".{primary.name}.lock")
    run = run_in_parts(ctx, RunParts(parts_directory_beside(primary), "recognize", RecordParts(), command="recognize"),
                       settings=info, keys=list(range(len(texts))), work=work, assemble=assemble,
                       resume=job.resume, overwrite=job.overwrite, segment_size=job.segment_size, final=final,
                       lock=lock)
    if run.plan.complete:
        records = on_main(ctx, lambda: read_results(primary)) or []
        return RunSummary(records, skipped=len(records), failures=[r for r in records if r.get("error") is not None])
    records = broadcast(ctx, run.assembled)
    _report_new(ctx, records, set(run.plan.done), on_record)
    return RunSummary(records, skipped=run.resumed, failures=[r for r in records if r.get("error") is not None])


def _report_new(ctx: DistContext, records: list[Record], done: set[Any],
                on_record: Callable[[Record], None] | None) -> None:
    """Under torchrun rank 0 reports the new records once every rank is done, in input order."""
    if ctx.world_size > 1 and ctx.is_main and on_record is not None:
        for record in records:
            if record["index"] not in done:
                on_record(record)
