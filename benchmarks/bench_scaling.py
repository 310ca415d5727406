"""Measure what docs/scaling.md extrapolates from: the driver's memory per file, the audit's memory
per image, the manifest's bytes per record, and the pair search's time and peak memory.

    .venv/bin/python benchmarks/bench_scaling.py [--pairs 100000,1000000]
"""
from __future__ import annotations

import argparse
import os
import pickle
import resource
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_pairs import bit_frequencies, draw_hashes  # noqa: E402

from maskprep.audit.duplicates import DEFAULT_NEAR_THRESHOLD  # noqa: E402
from maskprep.audit.pairs import flip_aware_pairs  # noqa: E402
from maskprep.audit.scan import scan_dataset  # noqa: E402
from maskprep.augment import augment_tree  # noqa: E402
from maskprep.faces import detect_tree  # noqa: E402
from maskprep.masks.synth import synth_masks  # noqa: E402
from maskprep.images import list_images  # noqa: E402
from maskprep.runner import Job, derive_seed  # noqa: E402

DATA = Path(os.environ.get("MASKPREP_SHARED_DATA", REPO.parent / "shared" / "data"))


def measured(fn):
    """(result, bytes still held, peak bytes, seconds) of a call, by tracemalloc (numpy included)."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    start = time.perf_counter()
    out = fn()
    sec = time.perf_counter() - start
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return out, held - base, peak - base, sec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", default="100000,1000000")
    args = parser.parse_args()
    masks = DATA / "masks" / "chandrikadeb7"

    n = 100_000
    params = {"types": ["surgical"], "wears": ["correct"], "seed": 0}
    jobs, held, _, _ = measured(lambda: [
        Job(source=masks / f"class_{k % 7}" / f"photo_{k:09d}.jpg", rel=f"class_{k % 7}/photo_{k:09d}.jpg",
            origin=f"class_{k % 7}/photo_{k:09d}.jpg", seed=derive_seed(0, k), params=params)
        for k in range(n)])
    row = np.mean([len(pickle.dumps(j)) for j in jobs[:1000]])
    print(f"driver: {held / n:.0f} B per queued job (run_stage's job list); {row:.0f} B per job "
          f"pickled for Ray Data")
    del jobs

    manifests = {}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        photos = sorted((DATA / "faces" / "identities" / "barack_obama").glob("obama*.jpg"))[:4]
        src.mkdir()
        for p in photos:
            shutil.copyfile(p, src / p.name)
        detect_tree(src, Path(tmp) / "faces", workers=1, progress=False)
        synth_masks(Path(tmp) / "faces", Path(tmp) / "masked", workers=1, progress=False)
        augment_tree(src, Path(tmp) / "aug", flip=True, blur=True, workers=1, progress=False)
        for name in ("faces", "masked", "aug"):
            lines = (Path(tmp) / name / "manifest.jsonl").read_text().splitlines()
            manifests[name] = sum(len(x.encode()) + 1 for x in lines) / len(lines)
    print("manifest bytes per record: " + ", ".join(
        f"{stage} {size:.0f}"
        for stage, size in zip(("detect", "synth-masks", "augment"), manifests.values())))

    print("CPU seconds per input file (worker processes' CPU time, which a busy machine does not inflate):")
    crops = list_images(masks)[::9][:200]
    photos = list_images(DATA / "faces" / "identities")
    with tempfile.TemporaryDirectory() as tmp:
        for name, files, run in (
                ("detect (photos)", photos, lambda s, o: detect_tree(s, o, workers=2, progress=False)),
                ("synth-masks (crops, --assume-crop)", crops,
                 lambda s, o: synth_masks(s, o, assume_crop=True, workers=2, progress=False)),
                ("augment (flip+blur+jitter)", crops,
                 lambda s, o: augment_tree(s, o, flip=True, blur=True, color_jitter=True, workers=2,
                                           progress=False)),
                ("audit read+hash", crops, lambda s, o: scan_dataset(s, workers=2, progress=False))):
            src = Path(tmp) / name.split()[0]
            src.mkdir()
            for p in files:
                shutil.copyfile(p, src / f"{p.parent.name}_{p.name}")
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            run(src, Path(tmp) / (name.split()[0] + "_out"))
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            print(f"  {name:<36} {cpu / len(files):.3f} s  ({len(files)} files)", flush=True)

    sample = list_images(masks)[:400]
    with tempfile.TemporaryDirectory() as tmp:
        for p in sample:
            dest = Path(tmp) / p.relative_to(masks)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, dest)
        ds, held, _, sec = measured(lambda: scan_dataset(tmp, workers=1, progress=False))
    print(f"audit: {held / len(ds.entries):.0f} B per scanned image held by the driver; "
          f"{len(ds.entries) / sec:.0f} images/s read+hashed per core (tracemalloc on)")

    freq = bit_frequencies(sample[:200])
    for size in (int(s) for s in args.pairs.split(",")):
        rng = np.random.default_rng(size)
        h, hf = draw_hashes(size, freq, rng), draw_hashes(size, freq, rng)
        start = time.perf_counter()
        i, _, _ = flip_aware_pairs(h, hf, DEFAULT_NEAR_THRESHOLD)
        sec = time.perf_counter() - start  # timed apart: tracemalloc slows numpy's many allocations
        _, _, peak, _ = measured(lambda: flip_aware_pairs(h, hf, DEFAULT_NEAR_THRESHOLD))
        print(f"pair search (flip-aware, {DEFAULT_NEAR_THRESHOLD} bits) over {size} hashes: "
              f"{sec:.1f} s, peak "
              f"{peak / 2**20:.0f} MiB ({peak / size:.0f} B per hash), {len(i)} pairs", flush=True)


if __name__ == "__main__":
    main()
