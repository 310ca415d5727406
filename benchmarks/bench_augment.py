"""Benchmark ``maskprep augment --flip --blur --color-jitter`` against a floor and a plain Pillow loop.

Measured in one run, on the same files, to the same kind of disk (a temporary folder):
  (a) floor   - decode every image and encode it once per output file (4: original + 3 variants,
                same format and JPEG settings), write the files; all cores, a process pool.
  (b) maskprep augment with --flip --blur --color-jitter (original copied, 3 variants encoded), all cores.
  (c) Pillow  - one process: open, convert, save a copy, mirror + save, GaussianBlur + save,
                brightness/contrast/colour enhance + save: the loop our users' reports used.
Throughputs are input images per second; the script prints ratios (b/a, b/c), which stay meaningful on
a busy machine where absolute numbers do not. Bars (issue 5): b/a >= 0.5 (aim 0.7), b/c >= 2.5.

    .venv/bin/python benchmarks/bench_augment.py                 # the whole chandrikadeb7 set
    .venv/bin/python benchmarks/bench_augment.py --limit 400 --rounds 3 --per-core
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from maskprep.augment import augment_tree  # noqa: E402
from maskprep.images import ImageReadError, decode_image, encode_image, list_images, save_format  # noqa: E402
from maskprep.runner import default_workers, process_pool  # noqa: E402

OUTPUTS_PER_IMAGE = 4   # original + flip + blur + jitter


def _floor_one(args: tuple[Path, Path, Path]) -> int:
    """Decode once, encode and write once per output file: the work no implementation can skip."""
    path, in_root, out_root = args
    try:
        image = decode_image(path.read_bytes())
    except ImageReadError:
        return 0
    rel = path.relative_to(in_root)
    fmt = save_format(path)
    for k in range(OUTPUTS_PER_IMAGE):
        dest = out_root / rel.with_name(f"{rel.stem}__{k}{rel.suffix}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(encode_image(image, fmt, 95))
    return 1


def run_floor(files: list[Path], in_root: Path, out_root: Path, workers: int) -> float:
    start = time.perf_counter()
    with process_pool(workers, initializer=_quiet_cv2) as pool:
        chunk = max(1, min(16, len(files) // (workers * 8)))
        done = sum(pool.imap_unordered(_floor_one, [(f, in_root, out_root) for f in files], chunksize=chunk))
    assert done > 0.95 * len(files)
    return time.perf_counter() - start


def _quiet_cv2() -> None:
    import cv2
    cv2.setNumThreads(1)


def run_maskprep(in_root: Path, out_root: Path, workers: int) -> float:
    start = time.perf_counter()
    result = augment_tree(in_root, out_root, flip=True, blur=True, color_jitter=True, seed=0,
                          workers=workers, progress=False)
    elapsed = time.perf_counter() - start
    assert result.summary.outputs > 0.95 * OUTPUTS_PER_IMAGE * result.summary.inputs
    return elapsed


def run_pillow(files: list[Path], in_root: Path, out_root: Path) -> float:
    """The hand-written loop: everything in Pillow, one process."""
    from PIL import Image, ImageEnhance, ImageFilter, ImageOps
    rnd = random.Random(0)
    start = time.perf_counter()
    for path in files:
        rel = path.relative_to(in_root)
        dest = out_root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            img = Image.open(path)
            img = ImageOps.exif_transpose(img).convert("RGB")
        except Exception:
            continue
        shutil.copyfile(path, dest)
        opts = {"quality": 95} if save_format(path) == "JPEG" else {}
        ImageOps.mirror(img).save(dest.with_name(f"{rel.stem}__flip{rel.suffix}"), **opts)
        img.filter(ImageFilter.GaussianBlur(rnd.uniform(0.6, 1.6))).save(
            dest.with_name(f"{rel.stem}__blur{rel.suffix}"), **opts)
        jit = ImageEnhance.Brightness(img).enhance(rnd.uniform(0.8, 1.2))
        jit = ImageEnhance.Contrast(jit).enhance(rnd.uniform(0.8, 1.2))
        jit = ImageEnhance.Color(jit).enhance(rnd.uniform(0.7, 1.3))
        jit.save(dest.with_name(f"{rel.stem}__jitter{rel.suffix}"), **opts)
    return time.perf_counter() - start


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the pool workers), user + system."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "masks" / "chandrikadeb7")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N images (0: all)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved repetitions; the median is kept")
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--per-core", action="store_true",
                        help="also time maskprep on one worker: its ratio to (c) does not depend on the core count")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"data folder not found: {args.data}")
    in_root = args.data.resolve()
    files = list_images(in_root)
    if args.limit:
        files = files[:: max(1, len(files) // args.limit)][: args.limit]
    tmp_in = Path(tempfile.mkdtemp(prefix="bench-augment-in-"))
    subset = in_root
    try:
        if args.limit:  # a subset is copied to a temporary folder (the data folder stays read-only)
            subset = tmp_in
            for f in files:
                dest = subset / f.relative_to(in_root)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, dest)
        n = len(files)
        print(f"{n} images from {args.data}, {args.workers} worker(s), {args.rounds} round(s); "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        times: dict[str, list[float]] = {"floor": [], "maskprep": [], "pillow": []}
        if args.per_core:
            times["maskprep-1"] = []
        cpu: dict[str, list[float]] = {k: [] for k in times}
        for r in range(args.rounds):
            for name in times:
                out = Path(tempfile.mkdtemp(prefix=f"bench-augment-{name}-"))
                before = _cpu_seconds()
                try:
                    if name == "floor":
                        t = run_floor(list_images(subset), subset, out, args.workers)
                    elif name == "maskprep":
                        t = run_maskprep(subset, out / "out", args.workers)
                    elif name == "maskprep-1":
                        t = run_maskprep(subset, out / "out", 1)
                    else:
                        t = run_pillow(list_images(subset), subset, out)
                finally:
                    shutil.rmtree(out, ignore_errors=True)
                times[name].append(t)
                cpu[name].append(_cpu_seconds() - before)
                print(f"  round {r + 1} {name:10s} {t:7.2f} s  {n / t:7.1f} img/s   "
                      f"CPU {1000 * cpu[name][-1] / n:6.1f} ms/img", flush=True)
        rate = {k: n / statistics.median(v) for k, v in times.items()}
        print(f"(a) floor (decode + {OUTPUTS_PER_IMAGE} encodes, all cores): {rate['floor']:7.1f} img/s")
        print(f"(b) maskprep augment --flip --blur --color-jitter: {rate['maskprep']:7.1f} img/s")
        print(f"(c) Pillow loop, one process:                      {rate['pillow']:7.1f} img/s")
        ab, bc = rate["maskprep"] / rate["floor"], rate["maskprep"] / rate["pillow"]
        print(f"b/a = {ab:.2f}x (bar >= 0.5, aim 0.7)   b/c = {bc:.2f}x (bar >= 2.5)")
        print(f"floor/c = {rate['floor'] / rate['pillow']:.2f}x: the most any tool doing this work can reach "
              f"against (c) on {args.workers} worker(s)")
        if args.per_core:
            print(f"(b1) maskprep on 1 worker: {rate['maskprep-1']:7.1f} img/s; "
                  f"b1/c = {rate['maskprep-1'] / rate['pillow']:.2f}x per core")
        # CPU time per image barely depends on what else the machine runs: the load-proof comparison.
        per = {k: statistics.median(v) / n for k, v in cpu.items()}
        print(f"CPU per image: floor {1000 * per['floor']:.1f} ms, maskprep {1000 * per['maskprep']:.1f} ms, "
              f"Pillow {1000 * per['pillow']:.1f} ms -> floor/maskprep {per['floor'] / per['maskprep']:.2f}x, "
              f"Pillow/maskprep {per['pillow'] / per['maskprep']:.2f}x per core "
              f"(x{args.workers} workers = {args.workers * per['pillow'] / per['maskprep']:.2f}x if they scale)")
    finally:
        shutil.rmtree(tmp_in, ignore_errors=True)


if __name__ == "__main__":
    main()
