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
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from maskprep.engines import EngineMap, current_engine, map_ordered
from maskprep.images import (
    ImageReadError,
    remove_stale_temp_files,
    scan_images,
    write_bytes_atomic,
    write_image,
)
from maskprep.manifest import (
    MANIFEST_NAME,
    RUN_INFO_NAME,
    ManifestError,
    ManifestWriter,
    Record,
    drop_incomplete_last_line,
    latest_attempts,
    origin_map,
    read_manifest,
    safe_rel,
    variant_path,
)
from maskprep.outpaths import is_inside

# The reason recorded for an input whose worker process died twice (once in the pool, once alone):
# the kernel's OOM killer is the usual cause, a crash in a native library the other.
WORKER_DIED = "worker process died (out of memory or a crash)"
CLASH = "output name clash"


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
    out = output_dir.resolve()
    if is_inside(out, input_dir):
        raise RunError(f"output folder {output_dir} is inside the input {input_dir}: "
                       "a stage never writes into its input; choose a folder elsewhere")
    if is_inside(input_dir, out):
        # OUT/<rel> could then be one of IN's own files, and later stages would read IN as output.
        raise RunError(f"input {input_dir} is inside the output folder {output_dir}: a stage writes "
                       "a new tree beside its input; choose an output folder elsewhere")
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
    written: list[Path] = []
    for item in produced:
        if item.status == "ok":
            dest = out_root / item.rel
            try:
                if isinstance(item.data, (bytes, bytearray)):
                    write_bytes_atomic(dest, bytes(item.data))
                else:
                    write_image(dest, item.data, jpeg_quality=jpeg_quality)
            except BaseException:
                # The input fails whole: no output of it stays on disk without a record.
                for path in written:
                    try:
                        path.unlink()
                    except OSError:
                        pass
                raise
            written.append(dest)
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
    except OSError as exc:   # e.g. no space left for the output: a reason a person can act on
        why = (exc.strerror or type(exc).__name__).lower()
        return [Record(stage=stage, source=job.rel, origin=job.origin, status="failed",
                       reason=f"error: {why}", seed=job.seed, info={"detail": str(exc)[:500]})]
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


def _completed_sources(out_root: Path) -> dict[str, list[Record]]:
    """``{input: its latest records}`` for inputs whose latest attempt's records are all ok (with
    the file present) or skipped: nothing left to do."""
    latest = latest_attempts(read_manifest(out_root / MANIFEST_NAME))

    def finished(rec: Record) -> bool:
        if rec.status == "skipped":
            return True
        return rec.status == "ok" and rec.output is not None and (out_root / rec.output).is_file()

    return {src: recs for src, recs in latest.items() if all(finished(r) for r in recs)}


def _executor(processes: int, initializer: Callable | None, initargs: tuple) -> ProcessPoolExecutor:
    """A process pool that, unlike ``multiprocessing.Pool``, notices a worker that dies (kill -9, the
    OOM killer): its tasks raise ``BrokenProcessPool`` instead of waiting forever.

    Forked like :func:`process_pool` (:func:`ordered_map` keeps OpenCV's pool at one thread while it
    maps); with the fork method the executor starts all its workers at the first submit.
    """
    ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    return ProcessPoolExecutor(processes, mp_context=ctx, initializer=initializer, initargs=initargs)


def _stop_executor(executor: ProcessPoolExecutor, kill: bool) -> None:
    if kill:
        # shutdown() waits for running tasks; on Ctrl-C the workers are stopped at once instead
        # (their half-written temp files are removed by the runner).
        for proc in list((getattr(executor, "_processes", None) or {}).values()):
            try:
                proc.terminate()
            except (OSError, AttributeError):  # pragma: no cover - already gone
                pass
    executor.shutdown(wait=True, cancel_futures=True)


def _one_alone(func: Callable, item: Any, initializer: Callable | None, initargs: tuple,
               on_lost: Callable[[Any], Any]) -> Any:
    """``func(item)`` in a fresh one-worker pool; ``on_lost(item)`` when that worker dies too."""
    executor = _executor(1, initializer, initargs)
    try:
        return executor.submit(func, item).result()
    except BrokenProcessPool:
        return on_lost(item)
    finally:
        _stop_executor(executor, kill=False)


def ordered_map(func: Callable[[Any], Any], items: Sequence[Any], workers: int,
                initializer: Callable | None, initargs: tuple,
                on_lost: Callable[[Any], Any]) -> Iterator[Any]:
    """``func(item)`` for each item, in item order, from ``workers`` forked processes.

    ``func`` and ``initializer`` must be module-level functions. Results that arrive early wait in a
    buffer, so the order never depends on the number of workers or on timing. When a worker dies
    (kill -9, the OOM killer), the items that were running are redone one at a time in a fresh pool
    (an item killed by a neighbour's memory use then succeeds; one that kills its worker again
    gives ``on_lost(item)``, called here in the parent), and the rest go on in a new pool.
    On Ctrl-C the workers are stopped, the results already in are yielded (in order), and
    KeyboardInterrupt is raised again.
    """
    # A child forked while OpenCV's thread pool is alive hangs on its first parallel cv2 call; a new
    # pool after a dead worker forks again, so OpenCV stays at one thread for the whole map (this
    # process only collects results meanwhile).
    try:
        import cv2
        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover
        cv2 = None
    window = 2 * workers   # enough queued work to keep every worker busy
    buffered: dict[int, Any] = {}
    emitted = 0
    position = 0           # next item to submit
    executor: ProcessPoolExecutor | None = None
    try:
        while emitted < len(items):
            if executor is None:
                executor = _executor(max(1, min(workers, len(items) - position)), initializer, initargs)
            inflight: dict[Any, int] = {}
            suspects: list[int] = []
            while (position < len(items) or inflight) and not suspects:
                while position < len(items) and len(inflight) < window:
                    inflight[executor.submit(func, items[position])] = position
                    position += 1
                done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                for future in done:
                    index = inflight.pop(future)
                    try:
                        buffered[index] = future.result()
                    except BrokenProcessPool:
                        suspects.append(index)
                while emitted in buffered:
                    yield buffered.pop(emitted)
                    emitted += 1
            if suspects:
                # Every task still in flight is lost with the pool; which one killed it is unknown.
                for future, index in inflight.items():
                    try:
                        buffered[index] = future.result()
                    except BrokenProcessPool:
                        suspects.append(index)
                _stop_executor(executor, kill=True)
                executor = None
                for index in sorted(suspects):
                    buffered[index] = _one_alone(func, items[index], initializer, initargs, on_lost)
                while emitted in buffered:
                    yield buffered.pop(emitted)
                    emitted += 1
    except KeyboardInterrupt:
        if executor is not None:
            _stop_executor(executor, kill=True)
            executor = None
        # What finished is on disk: hand it over (in order) before stopping.
        for index in sorted(buffered):
            yield buffered.pop(index)
        raise
    finally:
        if executor is not None:
            _stop_executor(executor, kill=True)
        if cv2 is not None:
            cv2.setNumThreads(threads)


def map_jobs(jobs: Sequence[Job], workers: int, process: Callable, out_root: Path, stage: str,
             jpeg_quality: int) -> Iterator[list[Record]]:
    """The local engine: each job's manifest records, in job order, from ``workers`` processes
    (in this process when ``workers`` is 1 or there is at most one job)."""
    if workers == 1 or len(jobs) <= 1:
        _init_worker_in_process(process, out_root, stage, jpeg_quality)
        for job in jobs:
            yield _run_one(job)
        return

    def lost(job: Job) -> list[Record]:
        return [Record(stage=stage, source=job.rel, origin=job.origin, status="failed",
                       reason=WORKER_DIED, seed=job.seed)]

    yield from ordered_map(_run_one, jobs, workers, _init_worker,
                           (process, out_root, stage, jpeg_quality), lost)


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
    if resume:
        check_same_run(out_root, stage, in_root, params, seed, jpeg_quality)
    out_root.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(out_root)
    if overwrite:
        remove_recorded_outputs(out_root)

    if files is not None:
        sources, unlisted = sorted(files), []
    else:
        sources, unlisted = scan_images(in_root)
    upstream = origin_map(in_root)
    if resume:   # an unfinished last write is cut off first, so its input counts as not done
        drop_incomplete_last_line(out_root / MANIFEST_NAME)
    done = _completed_sources(out_root) if resume else {}
    jobs = []
    for path in sources:
        rel = relative_to_root(path, in_root)
        if rel in done:
            continue
        jobs.append(Job(source=path, rel=rel, origin=upstream.get(rel, rel),
                        seed=derive_seed(seed, rel), params=params))
    # Entries that look like inputs but cannot be read as files are recorded, never dropped silently.
    problems = [Record(stage=stage, source=relative_to_root(u.path, in_root), status="failed",
                       reason=u.reason, seed=None) for u in unlisted]

    summary = Summary(stage=stage, inputs=len(sources) + len(problems),
                      resumed=len(sources) - len(jobs), manifest=out_root / MANIFEST_NAME)
    started = time.perf_counter()
    _write_run_info(out_root, stage, input_dir, params, seed, workers, status="running",
                    jpeg_quality=jpeg_quality)
    writer = ManifestWriter(out_root / MANIFEST_NAME, truncate=overwrite or not resume)
    # output -> the input that wrote it (in this run, or in the run a --resume finishes)
    claimed: dict[str, str | None] = {r.output: src for src, recs in done.items() for r in recs
                                      if r.output is not None}

    def take(records: list[Record]) -> None:
        records, withdrawn = _refuse_clashes(records, claimed, out_root, stage)
        summary.outputs -= withdrawn   # earlier inputs' outputs that turned out to be shared
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
    # job list -> map (the engine; records come back in job order) -> records -> manifest
    engine = current_engine()
    mapped = None
    stopped: OSError | None = None
    try:
        if problems:
            take(problems)
        if engine.name != "local" and jobs:  # the same _run_one on another engine (maskprep.engines)
            mapped = map_ordered(engine, _run_one, jobs, workers, _init_worker,
                                 (process, out_root, stage, jpeg_quality))
        else:
            mapped = map_jobs(jobs, workers, process, out_root, stage, jpeg_quality)
        for records in mapped:
            take(records)
            bar.update(1)
    except KeyboardInterrupt:
        summary.interrupted = True
    except OSError as exc:   # the manifest itself cannot be written (disk full): stop, resumable
        stopped = exc
        summary.interrupted = True
    finally:
        if mapped is not None:
            mapped.close()   # stops the workers whatever ended the loop
            if isinstance(mapped, EngineMap):
                summary.engine = mapped.info()
        bar.close()
        for step in (writer.close, lambda: remove_stale_temp_files(out_root)):
            try:
                step()
            except OSError as exc:
                stopped = stopped or exc
        summary.seconds = time.perf_counter() - started
        try:
            _write_run_info(out_root, stage, input_dir, params, seed, workers,
                            status="interrupted" if summary.interrupted else "finished", summary=summary,
                            jpeg_quality=jpeg_quality)
        except OSError as exc:
            stopped = stopped or exc
    if stopped is not None:
        raise RunError(f"cannot write to {output_dir}: {(stopped.strerror or str(stopped)).lower()}; "
                       "the files recorded so far are whole: make room, then finish with --resume")
    if summary.interrupted:
        raise KeyboardInterrupt
    return summary


def _refuse_clashes(records: list[Record], claimed: dict[str, str | None], out_root: Path,
                    stage: str) -> tuple[list[Record], int]:
    """Two inputs must never claim one output file (``a.jpg`` and ``a.png`` mapped to one name by a
    stage): the file holds whichever was written last, so neither label can be trusted. The input
    whose records claim a taken name fails whole, the input that took it first gets a ``failed``
    record after its earlier ones (so ``--resume`` redoes it), and the file is deleted. ``claimed``
    maps each output to its input (None once withdrawn) and is updated. Returns the records to
    write and how many earlier ok records they withdraw."""
    taken = [(r.output, claimed[r.output]) for r in records
             if r.output is not None and claimed.get(r.output, r.source) != r.source]
    if not taken:
        for rec in records:
            if rec.output is not None:
                claimed[rec.output] = rec.source
        return records, 0
    source = records[0]
    out: list[Record] = []
    withdrawn = 0
    for rec in records:   # none of this input's files may stay behind without an ok record
        if rec.output is not None and rec.output not in dict(taken):
            (out_root / rec.output).unlink(missing_ok=True)
    for output, owner in taken:
        (out_root / output).unlink(missing_ok=True)
        if owner is not None:
            out.append(Record(stage=stage, source=owner, status="failed", reason=CLASH,
                              info={"detail": f"{output} is also the output of {source.source}"}))
            claimed[output] = None   # withdrawn: any later claim fails too
            withdrawn += 1
    out.append(Record(stage=stage, source=source.source, origin=source.origin, status="failed",
                      reason=CLASH, seed=source.seed,
                      info={"detail": "; ".join(f"{o} is also the output of {w or 'an earlier input'}"
                                                for o, w in taken)}))
    return out, withdrawn


def _normalised(value: Any) -> Any:
    """A value as run.json stores it (JSON, tuples as lists, odd objects as text), for comparing."""
    return json.loads(json.dumps(value, default=str))


def check_same_run(out_root: Path, stage: str, in_root: Path, params: Mapping[str, Any], seed: int,
                   jpeg_quality: int | None = None) -> None:
    """Refuse a ``--resume`` whose stage, input, seed or options differ from the run that wrote OUT:
    finishing it would mix two runs' files in one tree under one run.json."""
    path = out_root / RUN_INFO_NAME
    if not path.is_file():
        return
    try:
        before = json.loads(path.read_bytes())
    except (OSError, ValueError):
        raise RunError(f"{path} is unreadable: cannot check that --resume continues the same run; "
                       "use --overwrite to start again") from None
    if not isinstance(before, dict):
        raise RunError(f"{path} is not a maskprep run.json; use --overwrite to start again")
    changes = []
    if before.get("stage") != stage:
        changes.append(f"stage {before.get('stage')} -> {stage}")
    if before.get("input") not in (None, str(in_root)):
        changes.append(f"input {before.get('input')} -> {in_root}")
    if before.get("seed") != seed:
        changes.append(f"--seed {before.get('seed')} -> {seed}")
    if jpeg_quality is not None and before.get("jpeg_quality", jpeg_quality) != jpeg_quality:
        changes.append(f"--jpeg-quality {before.get('jpeg_quality')} -> {jpeg_quality}")
    old, new = before.get("params") or {}, _normalised(dict(params))
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            changes.append(f"{key} {json.dumps(old.get(key))} -> {json.dumps(new.get(key))}")
    if changes:
        raise RunError(f"--resume with other options than the run that wrote {out_root} "
                       f"({'; '.join(changes)}): re-run with the same options to finish it, or use "
                       "--overwrite to start again")


def remove_recorded_outputs(out_root: Path) -> int:
    """Delete the files an earlier run recorded as its outputs (for ``--overwrite``): left behind, a
    variant the new run does not write would sit in the tree with no record and pass for data.
    Files the manifest does not name (the user's own) are kept. Returns how many were deleted."""
    try:
        records = read_manifest(out_root / MANIFEST_NAME)
    except ManifestError:
        return 0   # a damaged manifest cannot say what is ours: delete nothing
    removed = 0
    folders: set[Path] = set()
    for rec in records:
        if rec.status != "ok" or not rec.output or not safe_rel(rec.output):
            continue
        path = out_root / rec.output
        try:
            # Only a file that really lies inside OUT: never follow a link in the folders above it.
            if path.parent.resolve() != out_root.joinpath(*PurePosixPath(rec.output).parts[:-1]):
                continue
            if path.is_file() or path.is_symlink():
                path.unlink()
                removed += 1
                folders.add(path.parent)
        except OSError:
            continue
    for folder in sorted(folders, key=lambda f: len(f.parts), reverse=True):
        while folder != out_root and out_root in folder.parents:
            try:
                folder.rmdir()   # only folders the deletions left empty
            except OSError:
                break
            folder = folder.parent
    return removed


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
                    workers: int, status: str, summary: Summary | None = None,
                    jpeg_quality: int | None = None) -> None:
    from maskprep import __version__
    info: dict[str, Any] = {
        "stage": stage, "status": status, "input": str(input_dir.resolve()), "seed": seed,
        "workers": workers, "params": params, "jpeg_quality": jpeg_quality, "maskprep_version": __version__,
    }
    if summary is not None:
        info.update(inputs=summary.inputs, outputs=summary.outputs, skipped=summary.skipped,
                    failed=summary.failed, resumed=summary.resumed, reasons=dict(summary.reasons),
                    seconds=round(summary.seconds, 3), engine=summary.engine)
    # backslashreplace: a non-UTF-8 path (surrogate escapes) is written as the JSON escape \\udcXX,
    # which reads back as the same string.
    text = json.dumps(info, indent=2, default=str, ensure_ascii=False)
    write_bytes_atomic(out_root / RUN_INFO_NAME, text.encode("utf-8", errors="backslashreplace"))


def output_rel(job: Job, variant: str = "", ext: str | None = None) -> str:
    """The output path (relative to the output root) of one variant of a job's input file."""
    return variant_path(PurePosixPath(job.rel), variant, ext)
