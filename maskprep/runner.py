"""One runner for every stage: map a per-image function over a tree with a process pool.

A stage supplies ``process(job) -> list[Produced]``: a function of one input file that returns the
images (or bytes) to write. The runner gives every stage, written once: input/output checks, a
progress bar, deterministic per-file seeds, atomic writes, per-file error capture into the manifest,
``--resume``, a clean Ctrl-C, and a closing summary.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from maskprep.engines import current_engine, map_ordered
from maskprep.images import (
    ImageReadError,
    list_images,
    remove_stale_temp_files,
    write_bytes_atomic,
    write_image,
)
from maskprep.manifest import (
    MANIFEST_NAME,
    RUN_INFO_NAME,
    ManifestWriter,
    Record,
    latest_attempts,
    origin_map,
    read_manifest,
    variant_path,
)


class RunError(Exception):
    """A problem with the command itself (bad input/output folders): stops the run before any work."""


class SkipImage(Exception):
    """Raised by a stage function for an input that is fine but gives nothing (e.g. ``no face``)."""

    def __init__(self, reason: str, info: dict[str, Any] | None = None):
        super().__init__(reason)
        self.reason = reason
        self.info = info or {}


@dataclass(frozen=True)
class Job:
    """One input file as a stage function sees it."""

    source: Path                # absolute path of the input file
    rel: str                    # its path relative to the input root (posix separators)
    origin: str                 # the original photo it descends from (from upstream manifests)
    seed: int                   # per-file seed from (run seed, rel): same whatever the worker count
    params: Mapping[str, Any]   # the stage's options, identical for every file

    def rng(self, *salt: object) -> np.random.Generator:
        """A generator seeded by this file's seed and an optional salt (e.g. a variant name)."""
        return np.random.default_rng(derive_seed(self.seed, *salt) if salt else self.seed)


@dataclass
class Produced:
    """One output of a stage function: where it goes (relative to the output root) and what it is."""

    rel: str
    data: np.ndarray | bytes          # an RGB/gray uint8 array to encode, or bytes to copy as they are
    variant: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    status: str = "ok"                # "skipped" lets a stage record a per-face skip beside real outputs
    reason: str = ""


@dataclass
class Summary:
    """What a run did, for the closing line and for tests."""

    stage: str
    inputs: int = 0
    outputs: int = 0
    skipped: int = 0
    failed: int = 0
    resumed: int = 0
    reasons: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    interrupted: bool = False
    manifest: Path | None = None
    engine: dict[str, Any] = field(default_factory=lambda: {"name": "local"})  # run.json: where it ran

    def lines(self) -> list[str]:
        done = f"{self.stage}: {self.inputs} input(s) -> {self.outputs} output(s), " \
               f"{self.skipped} skipped, {self.failed} failed"
        if self.resumed:
            done += f", {self.resumed} already done (resumed)"
        done += f" in {self.seconds:.1f} s"
        out = [done]
        for reason, count in self.reasons.most_common():
            out.append(f"  {count:6d} x {reason}")
        if self.manifest is not None:
            out.append(f"  manifest: {self.manifest}")
        if self.interrupted:
            out.append("  interrupted: re-run with --resume to finish")
        return out


def derive_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed from a base seed and any parts (paths, variant names); stable across processes."""
    text = json.dumps([int(seed), *[str(p) for p in parts]])
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little") >> 1


def default_workers() -> int:
    """All cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def check_folders(input_dir: Path, output_dir: Path, overwrite: bool, resume: bool) -> None:
    """Refuse runs that could damage the input or silently mix with an earlier output."""
    if not input_dir.exists():
        raise RunError(f"input folder does not exist: {input_dir}")
    if not input_dir.is_dir():
        raise RunError(f"input {input_dir} is a file, not a folder: every stage reads a tree, so "
                       "pass the folder that holds it")
    inp = input_dir.resolve()
    out = output_dir.resolve()
    if out == inp or inp in out.parents:
        raise RunError(f"output folder {output_dir} is inside the input {input_dir}: "
                       "a stage never writes into its input; choose a folder elsewhere")
    if out.is_file():
        raise RunError(f"output {output_dir} is a file, not a folder")
    if overwrite and resume:
        raise RunError("choose --overwrite or --resume, not both")
    if out.is_dir() and any(out.iterdir()) and not (overwrite or resume):
        raise RunError(f"output folder {output_dir} is not empty: pass --resume to finish an earlier "
                       "run or --overwrite to replace its files")


def _write_outputs(job: Job, produced: Sequence[Produced], out_root: Path, stage: str,
                   jpeg_quality: int) -> list[Record]:
    records = []
    for item in produced:
        if item.status == "ok":
            dest = out_root / item.rel
            if isinstance(item.data, (bytes, bytearray)):
                write_bytes_atomic(dest, bytes(item.data))
            else:
                write_image(dest, item.data, jpeg_quality=jpeg_quality)
        records.append(Record(
            stage=stage, source=job.rel, origin=job.origin, status=item.status,
            output=item.rel if item.status == "ok" else None, reason=item.reason,
            variant=item.variant, params=item.params, seed=job.seed, info=item.info,
        ))
    return records


# Worker state: set once per process so the stage function and settings are not pickled per file.
_WORKER: dict[str, Any] = {}


def _init_worker(process: Callable, out_root: Path, stage: str, jpeg_quality: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the pool
    try:
        import cv2
        cv2.setNumThreads(1)  # one image per core; OpenCV's own threads would fight the pool
    except ImportError:  # pragma: no cover
        pass
    _init_worker_in_process(process, out_root, stage, jpeg_quality)


def _run_one(job: Job) -> list[Record]:
    """Process one file in the current process and turn any per-file problem into a record."""
    stage = _WORKER["stage"]
    try:
        produced = _WORKER["process"](job)
        return _write_outputs(job, produced, _WORKER["out_root"], stage, _WORKER["jpeg_quality"])
    except SkipImage as exc:
        return [Record(stage=stage, source=job.rel, origin=job.origin, status="skipped",
                       reason=exc.reason, seed=job.seed, info=exc.info)]
    except ImageReadError as exc:
        return [Record(stage=stage, source=job.rel, origin=job.origin, status="failed",
                       reason=exc.reason, seed=job.seed, info={"detail": exc.detail})]
    except MemoryError:
        return [Record(stage=stage, source=job.rel, origin=job.origin, status="failed",
                       reason="out of memory", seed=job.seed)]
    except Exception as exc:  # a bad file must never stop the run
        return [Record(stage=stage, source=job.rel, origin=job.origin, status="failed",
                       reason=f"error: {type(exc).__name__}", seed=job.seed,
                       info={"detail": str(exc)[:500]})]


def process_pool(processes: int, initializer: Callable | None = None, initargs: tuple = ()):
    """A worker pool that is safe to start from a process that already used OpenCV.

    Workers are forked (fast, and nothing needs pickling but the jobs). A child forked while
    OpenCV's thread pool is alive hangs on its first parallel cv2 call, so the parent's pool is
    shrunk to one thread for the fork and restored once the workers exist.
    """
    ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    try:
        import cv2
    except ImportError:  # pragma: no cover
        return ctx.Pool(processes, initializer=initializer, initargs=initargs)
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        return ctx.Pool(processes, initializer=initializer, initargs=initargs)
    finally:
        cv2.setNumThreads(threads)


def _completed_sources(out_root: Path) -> set[str]:
    """Inputs whose latest attempt's records are all ok (with the file present) or skipped: nothing
    left to do."""
    latest = latest_attempts(read_manifest(out_root / MANIFEST_NAME))

    def finished(rec: Record) -> bool:
        if rec.status == "skipped":
            return True
        return rec.status == "ok" and rec.output is not None and (out_root / rec.output).is_file()

    return {src for src, recs in latest.items() if all(finished(r) for r in recs)}


def _progress(total: int, desc: str, enabled: bool | None):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr, disable=enabled is False,
                dynamic_ncols=True, mininterval=0.5)


def run_stage(
    stage: str,
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    process: Callable[[Job], list[Produced]],
    params: Mapping[str, Any] | None = None,
    seed: int = 0,
    workers: int | None = None,
    overwrite: bool = False,
    resume: bool = False,
    jpeg_quality: int = 95,
    files: Iterable[Path] | None = None,
    progress: bool | None = None,
) -> Summary:
    """Run ``process`` over every image under ``input_dir`` and write outputs under ``output_dir``.

    ``process`` must be a module-level function (it is sent to worker processes). ``params`` is
    recorded in ``run.json`` and passed to every job. ``files`` restricts the run to some inputs.
    Raises :class:`RunError` for problems with the folders themselves; per-file problems become
    ``failed``/``skipped`` manifest records and never stop the run.
    """
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    check_folders(input_dir, output_dir, overwrite, resume)
    params = dict(params or {})
    workers = default_workers() if not workers or workers < 1 else workers
    in_root = input_dir.resolve()
    out_root = output_dir.resolve()
    out_root.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(out_root)

    sources = sorted(files) if files is not None else list_images(in_root)
    upstream = origin_map(in_root)
    done = _completed_sources(out_root) if resume else set()
    jobs = []
    for path in sources:
        rel = relative_to_root(path, in_root)
        if rel in done:
            continue
        jobs.append(Job(source=path, rel=rel, origin=upstream.get(rel, rel),
                        seed=derive_seed(seed, rel), params=params))

    summary = Summary(stage=stage, inputs=len(sources), resumed=len(sources) - len(jobs),
                      manifest=out_root / MANIFEST_NAME)
    started = time.perf_counter()
    _write_run_info(out_root, stage, input_dir, params, seed, workers, status="running")
    writer = ManifestWriter(out_root / MANIFEST_NAME, truncate=overwrite or not resume)

    def take(records: list[Record]) -> None:
        writer.write(records)
        for rec in records:
            if rec.status == "ok":
                summary.outputs += 1
            elif rec.status == "skipped":
                summary.skipped += 1
                summary.reasons[rec.reason] += 1
            else:
                summary.failed += 1
                summary.reasons[rec.reason] += 1

    bar = _progress(len(jobs), stage, progress)
    pool = None
    engine = current_engine()
    mapped = None
    try:
        if engine.name != "local" and jobs:  # the same _run_one on another engine (maskprep.engines)
            mapped = map_ordered(engine, _run_one, jobs, workers, _init_worker,
                                 (process, out_root, stage, jpeg_quality))
            for records in mapped:
                take(records)
                bar.update(1)
        elif workers == 1 or len(jobs) <= 1:
            _init_worker_in_process(process, out_root, stage, jpeg_quality)
            for job in jobs:
                take(_run_one(job))
                bar.update(1)
        else:
            pool = process_pool(min(workers, len(jobs)), _init_worker,
                                (process, out_root, stage, jpeg_quality))
            chunk = max(1, min(16, len(jobs) // (workers * 8)))
            for records in pool.imap_unordered(_run_one, jobs, chunksize=chunk):
                take(records)
                bar.update(1)
            pool.close()
            pool.join()
            pool = None
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
        if mapped is not None:
            mapped.close()
            summary.engine = mapped.info()
        bar.close()
        writer.close()
        remove_stale_temp_files(out_root)
        summary.seconds = time.perf_counter() - started
        _write_run_info(out_root, stage, input_dir, params, seed, workers,
                        status="interrupted" if summary.interrupted else "finished", summary=summary)
    if summary.interrupted:
        raise KeyboardInterrupt
    return summary


def relative_to_root(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` without resolving the file itself: a symlinked file inside the
    tree keeps its place in the tree even when it points outside."""
    try:
        return Path(os.path.abspath(path)).relative_to(root).as_posix()
    except ValueError:
        return path.resolve().relative_to(root).as_posix()


def _init_worker_in_process(process: Callable, out_root: Path, stage: str, jpeg_quality: int) -> None:
    _WORKER.update(process=process, out_root=out_root, stage=stage, jpeg_quality=jpeg_quality)


def _write_run_info(out_root: Path, stage: str, input_dir: Path, params: Mapping[str, Any], seed: int,
                    workers: int, status: str, summary: Summary | None = None) -> None:
    from maskprep import __version__
    info: dict[str, Any] = {
        "stage": stage, "status": status, "input": str(input_dir.resolve()), "seed": seed,
        "workers": workers, "params": params, "maskprep_version": __version__,
    }
    if summary is not None:
        info.update(inputs=summary.inputs, outputs=summary.outputs, skipped=summary.skipped,
                    failed=summary.failed, resumed=summary.resumed, reasons=dict(summary.reasons),
                    seconds=round(summary.seconds, 3), engine=summary.engine)
    write_bytes_atomic(out_root / RUN_INFO_NAME,
                       json.dumps(info, indent=2, default=str, ensure_ascii=False).encode("utf-8"))


def output_rel(job: Job, variant: str = "", ext: str | None = None) -> str:
    """The output path (relative to the output root) of one variant of a job's input file."""
    return variant_path(PurePosixPath(job.rel), variant, ext)
