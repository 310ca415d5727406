"""Benchmark synth-masks over ../shared/data/faces/identities.

Prints images per second (one mask per photo, single process), the CPU time split between
decoding, detection, fitting, rendering and encoding, and the ratio against a baseline measured
in the same run: a MaskTheFace-style pipeline (dlib HOG on the full-size photo with one upsample,
one homography from six points, a whole-image perspective warp and a saturating add), which is
what MaskTheFace does per photo. Timings on a shared machine are noisy: read the ratios.

    .venv/bin/python benchmarks/bench_synth.py [--data DIR] [--repeat 2] [--crops DIR --crops-limit N]
    .venv/bin/python benchmarks/bench_synth.py --only-crops --crops-limit 200   # tight crops only
    .venv/bin/python benchmarks/bench_synth.py --only-render --crops-limit 60   # rendering alone, crops
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from maskprep.images import encode_image, list_images, read_image  # noqa: E402
from maskprep.masks.fit import check_face, fit_grid  # noqa: E402
from maskprep.masks.render import composite_layer  # noqa: E402
from maskprep.masks.synth import find_faces, render_mask  # noqa: E402
from maskprep.masks.templates import load_template  # noqa: E402


FACES: dict[str, int] = defaultdict(int)   # faces masked per configuration (recall side of speed)


def _cpu() -> float:
    return time.process_time()


def ours(paths: list[Path], max_side: int | None, known: dict[Path, list] | None = None) -> dict[str, float]:
    """CPU seconds per phase over all photos, one surgical/correct mask on every face.

    ``known``: faces per photo from a detect manifest (no detection), as ``--landmarks-from`` does."""
    t = defaultdict(float)
    template = load_template("surgical")
    label = "reused" if known is not None else f"ours {max_side}"
    for i, path in enumerate(paths):
        c0 = _cpu()
        image = read_image(path)
        c1 = _cpu()
        faces = known[path] if known is not None else find_faces(image, max_side)
        c2 = _cpu()
        out = image.copy()
        for f in faces:
            if check_face(f.landmarks) is not None:
                continue
            FACES[label] += 1
            rng = np.random.default_rng(i)
            f0 = _cpu()
            fit_grid(f.landmarks, template.rows, template.cols, "correct", template.fit, rng)
            f1 = _cpu()
            layer, _ = render_mask(out, f.landmarks, "surgical", "correct", rng=np.random.default_rng(i))
            composite_layer(out, layer, in_place=True)
            f2 = _cpu()
            t["fit"] += f1 - f0
            t["render"] += (f2 - f1) - (f1 - f0)  # render_mask fits again: count that once
        c3 = _cpu()
        encode_image(out, "JPEG", 95)
        c4 = _cpu()
        t["decode"] += c1 - c0
        if known is None:
            t["detect"] += c2 - c1
        t["encode"] += c4 - c3
    return dict(t)


_MTF: dict = {}


def maskthefface_like(paths: list[Path]) -> dict[str, float]:
    """The MaskTheFace recipe, re-implemented for timing: full-size HOG with upsample 1, a
    homography from six points, a full-image warpPerspective and cv2.add (saturating)."""
    import dlib

    from maskprep.resources import dlib_model_path
    if not _MTF:
        _MTF["det"] = dlib.get_frontal_face_detector()
        _MTF["sp"] = dlib.shape_predictor(str(dlib_model_path("shape_predictor_68_face_landmarks.dat")))
    template = load_template("surgical")
    src_rgba = np.ascontiguousarray(template.rgba)
    g = template.grid
    src6 = np.float32([g[0, 0], g[0, g.shape[1] // 2], g[0, -1], g[-1, -1], g[-1, g.shape[1] // 2], g[-1, 0]])
    t = defaultdict(float)
    wall = time.perf_counter()
    for path in paths:
        c0 = _cpu()
        image = read_image(path)
        c1 = _cpu()
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        rects = _MTF["det"](gray, 1)
        shapes = [_MTF["sp"](gray, r) for r in rects]
        c2 = _cpu()
        out = image.copy()
        FACES["baseline"] += len(shapes)
        for shape in shapes:
            lm = np.array([[p.x, p.y] for p in shape.parts()], np.float32)
            dst6 = np.float32([lm[1], lm[28], lm[15], lm[12], lm[8], lm[4]])
            hmat, _ = cv2.findHomography(src6, dst6)
            warped = cv2.warpPerspective(src_rgba, hmat, (image.shape[1], image.shape[0]))
            rgb = warped[..., :3].copy()
            rgb[warped[..., 3] == 0] = 0
            out = cv2.add(out, rgb)
        c3 = _cpu()
        encode_image(out, "JPEG", 95)
        c4 = _cpu()
        t["decode"] += c1 - c0
        t["detect"] += c2 - c1
        t["render"] += c3 - c2
        t["encode"] += c4 - c3
    _MTF["wall"] = _MTF.get("wall", 0.0) + time.perf_counter() - wall
    return dict(t)


def report(name: str, times: dict[str, float], n: int, faces: int) -> float:
    total = sum(times.values())
    parts = ", ".join(f"{k} {1000 * v / n:.0f} ms ({100 * v / total:.0f}%)"
                      for k, v in sorted(times.items(), key=lambda kv: -kv[1]))
    print(f"{name:32s} {n / total:6.2f} img/s  {total / n:.3f} CPU-s/photo  {faces:4d} faces  [{parts}]")
    return total / n


def whole_command(paths: list[Path], copies: int, workers: int) -> tuple[float, float, float, int, int]:
    """Wall-clock seconds of the real stages on ``copies`` copies of the photos, all workers:
    (synth-masks searching every photo, detect, synth-masks reusing detect's faces, photos, faces)."""
    from maskprep.faces import detect_tree
    from maskprep.manifest import read_manifest
    from maskprep.masks.synth import synth_masks

    with tempfile.TemporaryDirectory() as tmp:
        photos = Path(tmp) / "photos"
        for k in range(copies):
            for i, path in enumerate(paths):
                dst = photos / f"copy{k}" / f"{i:03d}_{path.name}"
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, dst)
        n = copies * len(paths)
        w0 = time.perf_counter()
        synth_masks(photos, Path(tmp) / "masked", workers=workers, progress=False)
        w1 = time.perf_counter()
        detect_tree(photos, Path(tmp) / "faces", workers=workers, progress=False)
        w2 = time.perf_counter()
        synth_masks(photos, Path(tmp) / "masked_reused", landmarks_from=Path(tmp) / "faces",
                    workers=workers, progress=False)
        w3 = time.perf_counter()
        faces = sum(len(r.info.get("faces", [])) for r in read_manifest(Path(tmp) / "masked_reused")
                    if r.status == "ok")
    return w1 - w0, w2 - w1, w3 - w2, n, faces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "faces" / "identities")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--copies", type=int, default=4,
                        help="copies of the photo folder the whole-command run goes over")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--limit", type=int, default=0, help="only the first N photos (0: all)")
    parser.add_argument("--reused-only", action="store_true",
                        help="only the baseline and faces reused from detect (the issue's 5x bar), "
                             "no whole-command run")
    parser.add_argument("--crops", type=Path,
                        default=ROOT.parent / "shared" / "data" / "masks" / "chandrikadeb7" / "without_mask",
                        help="folder of tight face crops for the crop section")
    parser.add_argument("--crops-limit", type=int, default=300, help="crops measured (0 = all)")
    parser.add_argument("--only-crops", action="store_true", help="run the crop section only")
    parser.add_argument("--only-render", action="store_true",
                        help="time rendering alone on --crops-limit tight crops (faces found beforehand)")
    args = parser.parse_args()
    if args.only_render:
        cv2.setNumThreads(1)
        render_section(args.crops, args.crops_limit)
        return
    if args.only_crops:
        cv2.setNumThreads(1)
        crop_section(args.crops, args.crops_limit)
        return
    paths = list_images(args.data)[:args.limit or None]
    if not paths:
        sys.exit(f"no photos under {args.data}")
    n = len(paths) * args.repeat
    cv2.setNumThreads(1)  # one core, like one worker of the pool
    # warm-up: load models and templates once
    find_faces(read_image(paths[0]))
    render_mask(read_image(paths[0]), find_faces(read_image(paths[0]))[0].landmarks)
    maskthefface_like(paths[:1])
    _MTF["wall"] = 0.0
    known = {p: find_faces(read_image(p)) for p in paths}   # what a detect manifest holds

    print(f"{len(paths)} photos x {args.repeat}, one process, CPU time (shared machine: noisy); "
          "faces = faces masked (baseline: detected)")
    FACES.clear()
    base_t = _sum(maskthefface_like, paths, args.repeat)
    if args.reused_only:
        reused_t = _sum(lambda p: ours(p, None, known), paths, args.repeat)
        base = report("MaskTheFace-style baseline", base_t, n, FACES["baseline"])
        ours_reused = report("maskprep, faces from detect", reused_t, n, FACES["reused"])
        print(f"per CPU-second vs baseline, faces reused from a detect manifest: "
              f"{base / ours_reused:.1f}x (the bar: at least 5x)")
        return
    default_t = _sum(lambda p: ours(p, None), paths, args.repeat)
    fast_t = _sum(lambda p: ours(p, 640), paths, args.repeat)
    reused_t = _sum(lambda p: ours(p, None, known), paths, args.repeat)
    base = report("MaskTheFace-style baseline", base_t, n, FACES["baseline"])
    ours_default = report("maskprep (detect max-side 1280)", default_t, n, FACES["ours None"])
    ours_fast = report("maskprep --max-side 640", fast_t, n, FACES["ours 640"])
    ours_reused = report("maskprep, faces from detect", reused_t, n, FACES["reused"])
    print(f"per CPU-second vs baseline: {base / ours_default:.1f}x (default), {base / ours_fast:.1f}x "
          f"(--max-side 640), {base / ours_reused:.1f}x (faces reused from a detect manifest)")

    base_rate = n / _MTF["wall"]   # the baseline runs in one process, as MaskTheFace does
    print(f"\nthroughput, wall clock: the baseline in one process {base_rate:.2f} photos/s; the real "
          f"commands with --workers {args.workers} over {args.copies} copies of the folder:")
    searched, detect, reused, photos, faces = whole_command(paths, args.copies, args.workers)
    print(f"  synth-masks                               {photos / searched:6.2f} photos/s  "
          f"{photos / searched / base_rate:5.1f}x the baseline")
    print(f"  synth-masks --landmarks-from detect-run   {photos / reused:6.2f} photos/s  "
          f"{photos / reused / base_rate:5.1f}x the baseline  ({faces} faces masked)")
    both = detect + reused
    print(f"  detect, then synth-masks reusing it       {photos / both:6.2f} photos/s  "
          f"{photos / both / base_rate:5.1f}x the baseline  (detect alone {photos / detect:.2f} photos/s)")
    print("the issue's bar is 10x; its reference: MaskTheFace measured here at about 0.45 CPU-s/photo "
          "(0.38 s detection)")
    if args.crops.is_dir():
        crop_section(args.crops, args.crops_limit)


def crop_section(crops: Path, limit: int) -> None:
    """Tight face crops (chandrikadeb7/without_mask): CPU per photo and coverage, maskprep's
    default face finding (quick look, crop fit, search, second opinion) against the
    MaskTheFace-style baseline, both measured here in one process, photo by photo; maskprep's
    time split into reading, finding faces, rendering the masks and encoding."""
    from maskprep.masks.synth import search_faces

    paths = list_images(crops)
    if not paths:
        sys.exit(f"no photos under {crops}: pass --crops")
    if limit and limit < len(paths):   # spread over the folder: its names are grouped by source
        paths = [paths[int(k * len(paths) / limit)] for k in range(limit)]
    # One-off costs per process (loading dlib's models, importing torch for the CNN) are paid
    # once by a stage's worker, not per photo: both sides load theirs here, timed apart.
    from maskprep.faces import _run_detector
    load0 = _cpu()
    maskthefface_like([paths[0]])
    load1 = _cpu()
    search_faces(read_image(paths[0]))
    _run_detector("cnn", np.zeros((140, 140, 3), np.uint8), 0)
    load2 = _cpu()
    base_cpu = 0.0
    ours = defaultdict(float)
    ours_faces = 0
    how: dict[str, int] = defaultdict(int)
    FACES.clear()
    _MTF.pop("wall", None)
    for i, path in enumerate(paths):
        c0 = _cpu()
        maskthefface_like([path])
        c1 = _cpu()
        image = read_image(path)
        c2 = _cpu()
        faces, _ = search_faces(image)
        c3 = _cpu()
        out = image
        for f in faces:
            if check_face(f.landmarks) is None:
                ours_faces += 1
                how[f.found_by] += 1
                layer, _ = render_mask(out, f.landmarks, "surgical", "correct", rng=np.random.default_rng(i))
                out = out.copy() if out is image else out
                composite_layer(out, layer, in_place=True)
        c4 = _cpu()
        encode_image(out, "JPEG", 95)
        c5 = _cpu()
        base_cpu += c1 - c0
        for k, v in (("read", c2 - c1), ("search", c3 - c2), ("render", c4 - c3), ("encode", c5 - c4)):
            ours[k] += v
    ours_cpu = sum(ours.values())
    base_faces = FACES["baseline"]
    n = len(paths)
    print(f"\ntight face crops: {n} photos of {crops} (one process, CPU time, interleaved)")
    print(f"  one-off, before the first photo: baseline {1000 * (load1 - load0):.0f} ms (dlib models), maskprep "
          f"{1000 * (load2 - load1):.0f} ms (dlib models, torch for the CNN); not in the per-photo numbers")
    print(f"  MaskTheFace-style baseline  {1000 * base_cpu / n:6.1f} ms/photo  coverage {base_faces / n:5.1%} "
          f"({base_faces} faces masked)")
    print(f"  maskprep defaults           {1000 * ours_cpu / n:6.1f} ms/photo  coverage {ours_faces / n:5.1%} "
          f"({ours_faces} faces masked: " + ", ".join(f"{k} {v}" for k, v in sorted(how.items())) + ")")
    print("    per photo: " + ", ".join(f"{k} {1000 * v / n:.1f} ms" for k, v in ours.items())
          + f"; per masked face: render {1000 * ours['render'] / max(ours_faces, 1):.1f} ms")
    print(f"  per CPU vs baseline: {base_cpu / ours_cpu:.2f}x per photo, "
          f"{(ours_faces / ours_cpu) / max(base_faces / base_cpu, 1e-9):.2f}x per masked face (target >= 5x)")
    rest = ours_cpu - ours["render"]
    print(f"  without the render: {base_cpu / rest:.2f}x per photo, "
          f"{(ours_faces / rest) / max(base_faces / base_cpu, 1e-9):.2f}x per masked face "
          f"(finding faces alone: {1000 * ours['search'] / n:.1f} ms/photo)")


def render_section(crops: Path, limit: int) -> None:
    """Rendering alone on tight face crops (chandrikadeb7/without_mask, about 150 px): CPU ms per
    face of ``render_mask`` + compositing, each mask type in turn (the better of two passes), the
    faces found beforehand (crop fit, outside the timing). The issue's aim: at most 8 ms per face."""
    from maskprep.masks.synth import crop_face
    from maskprep.masks.templates import MASK_TYPES

    paths = list_images(crops)
    if limit and limit < len(paths):   # spread over the folder: its names are grouped by source
        paths = [paths[int(k * len(paths) / limit)] for k in range(limit)]
    faces = []
    for path in paths:
        image = read_image(path)
        found = crop_face(image)
        if found is not None and check_face(found.landmarks) is None:
            faces.append((image, found.landmarks))
    if not faces:
        sys.exit(f"no usable crops under {crops}")
    render_mask(faces[0][0], faces[0][1])   # warm-up: templates, per-process caches
    sizes = [max(im.shape[:2]) for im, _ in faces]
    print(f"\nrendering on tight crops: {len(faces)} faces of {crops} (median side {np.median(sizes):.0f} px, "
          "one process, one thread, CPU time)")
    total = 0.0
    for mask_type in MASK_TYPES:
        passes = []
        for _ in range(2):   # the better of two passes: a shared machine's other jobs only add time
            c0 = _cpu()
            for i, (image, lm) in enumerate(faces):
                layer, _ = render_mask(image, lm, mask_type, "correct", rng=np.random.default_rng(i))
                composite_layer(image, layer)
            passes.append(1000 * (_cpu() - c0) / len(faces))
        ms = min(passes)
        total += ms
        print(f"  {mask_type:9s} {ms:5.1f} ms/face")
    print(f"  all types {total / len(MASK_TYPES):5.1f} ms/face (aim: <= 8)")


def _sum(fn, paths, repeat):
    total: dict[str, float] = defaultdict(float)
    for _ in range(repeat):
        for k, v in fn(paths).items():
            total[k] += v
    return total


if __name__ == "__main__":
    main()
