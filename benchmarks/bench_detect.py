"""Benchmark: maskprep's default face search against plain full-resolution, upsample-1 dlib HOG.

    .venv/bin/python benchmarks/bench_detect.py [--data ../shared/data/faces/identities] [--repeat 2]
    .venv/bin/python benchmarks/bench_detect.py --only-sets --shared ../shared/data --crops-limit 300
    .venv/bin/python benchmarks/bench_detect.py --only-cnn --shared ../shared/data --crops-limit 200

The baseline is what face_recognition and MaskTheFace do: dlib's HOG detector on the full RGB photo
at upsample 1 (dlib's own threshold, 0), then the 68 landmarks in each box. It is compared with
``detect_faces`` at its defaults, and with ``detect_faces(upsample=1, max_side=0)`` to show how much
comes from the smaller search alone. All run in the same process on the same decoded photos
(decoding is left out: it costs the same for all), on one core, interleaved photo by photo so
background load hits them alike; each photo's time is the best of --repeat runs. Prints images per
second, the speed ratio (target: at least 5x) and whether the same faces are found (a face matches
when each box's centre lies in the other box).

The CNN section (``--only-cnn``) compares dlib's mmod face detector with ``maskprep.mmod``, the
same network run in torch: CPU per call and detection-by-detection agreement.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import cv2
import dlib
import numpy as np

from maskprep.faces import DEFAULT_MAX_SIDE, DEFAULT_MIN_SCORE, Face, detect_faces, pose_from_landmarks
from maskprep.resources import dlib_model_path
from maskprep.images import list_images, read_image

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces" / "identities"


def _same_face(a: Face, b: Face) -> bool:
    def inside(box, other):
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        return other[0] <= cx <= other[2] and other[1] <= cy <= other[3]
    return inside(a.box, b.box) and inside(b.box, a.box)


_PLAIN: dict = {}


def plain_dlib(image) -> list[Face]:
    """The baseline: dlib HOG on the full RGB image at upsample 1, landmarks in every box."""
    if not _PLAIN:
        _PLAIN["detector"] = dlib.get_frontal_face_detector()
        model = dlib_model_path("shape_predictor_68_face_landmarks.dat")
        _PLAIN["predictor"] = dlib.shape_predictor(str(model))
    rects, scores, _ = _PLAIN["detector"].run(image, 1, 0.0)
    faces = []
    for r, score in zip(rects, scores):
        shape = _PLAIN["predictor"](image, r)
        lm = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
        roll, yaw = pose_from_landmarks(lm)
        faces.append(Face((r.left(), r.top(), r.right() + 1, r.bottom() + 1), float(score), lm, roll, yaw))
    return faces


def _timed(func, image, repeat: int, **settings) -> tuple[float, list[Face]]:
    best, faces = float("inf"), []
    for _ in range(repeat):
        start = time.perf_counter()
        faces = func(image, **settings)
        best = min(best, time.perf_counter() - start)
    return best, faces


def face_sets_section(shared: Path, crops_limit: int) -> None:
    """What the shared face finder (``find_faces``, every stage's defaults) gets right and wrong:
    recall on dlib's 25 annotated faces, the false-face rate on the no-face set
    (benchmarks/face_sets.py), and the share of chandrikadeb7's tight crops it finds a face in."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import face_sets

    from maskprep.faces import find_faces

    truth = face_sets.annotated_faces(shared)
    root = shared / "faces" / "dlib_landmarks"
    found_in: dict[str, list] = {}
    hits = 0
    for name, rect in truth:
        if name not in found_in:
            found_in[name] = find_faces(read_image(root / name)).faces
        hits += any(_center_inside(f.box, rect) and _center_inside(rect, f.box) for f in found_in[name])
    print(f"\nrecall on the annotated faces (faces/dlib_landmarks test set): {hits}/{len(truth)}")

    no_face = face_sets.no_face_set(shared)
    false = [(name, [f.found_by for f in found]) for name, image in no_face
             for found in [find_faces(image).faces] if found]
    kinds = sorted({name.split("/")[0] for name, _ in no_face})
    print(f"false faces on the no-face set ({len(no_face)} images: "
          + ", ".join(f"{sum(n.startswith(k + '/') for n, _ in no_face)} {k}" for k in kinds)
          + f"): {len(false)} = {len(false) / len(no_face):.1%} (bar <= 1%)"
          + "".join(f"\n  {name}: {how}" for name, how in false))
    suit = find_faces(face_sets.suit_patch()).faces
    print(f"the demo's suit patch: {'REJECTED' if not suit else 'found as a face'}")

    crops = list_images(shared / "masks" / "chandrikadeb7" / "without_mask")
    if crops_limit and crops_limit < len(crops):
        crops = [crops[int(k * len(crops) / crops_limit)] for k in range(crops_limit)]
    images = [read_image(path) for path in crops]
    for second_opinion in (True, False):
        how: dict[str, int] = {}
        start = time.process_time()
        for image in images:
            faces = find_faces(image, second_opinion=second_opinion).faces
            key = faces[0].found_by if faces else "none"
            how[key] = how.get(key, 0) + 1
        cpu = time.process_time() - start
        print(f"crop coverage (chandrikadeb7/without_mask, {len(crops)} crops"
              + ("" if second_opinion else ", without the CNN second opinion") + "): "
              f"{1 - how.get('none', 0) / len(crops):.1%} with a face ("
              + ", ".join(f"{k} {v}" for k, v in sorted(how.items()))
              + f"), {1000 * cpu / len(crops):.1f} CPU-ms/crop to find them")


def _second_opinion_copy(image: np.ndarray) -> np.ndarray:
    """The copy faces._second_opinion hands the CNN (recorded from the call itself, so the
    comparison sees exactly what the stages do)."""
    from maskprep import faces

    seen: list[np.ndarray] = []
    run = faces._run_detector
    faces._run_detector = lambda model, small, up: seen.append(small) or []
    try:
        faces._second_opinion(image)
    finally:
        faces._run_detector = run
    return seen[0]


def _rounded(dets) -> list:
    return [(tuple(b), round(s, 3)) for b, s in dets]


def _iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def cnn_section(shared: Path, crops_limit: int) -> None:
    """maskprep.mmod (dlib's CNN face detector in torch) against dlib's own: CPU per call on the
    second opinion's 140 px copy, and whether every detection agrees (box IoU >= 0.8, confidence
    within 0.05; an extra box only counts at or above SECOND_OPINION_MIN_SCORE). Both run
    interleaved image by image, in this process, on one thread."""
    from maskprep import faces, mmod

    crops = list_images(shared / "masks" / "chandrikadeb7" / "without_mask")
    if crops_limit and crops_limit < len(crops):
        crops = [crops[int(k * len(crops) / crops_limit)] for k in range(crops_limit)]
    photos = [p for p in list_images(shared / "faces")]
    sets = {"chandrikadeb7 crops, 140 px copy": [_second_opinion_copy(read_image(p)) for p in crops],
            "faces/ photos, 140 px copy": [_second_opinion_copy(read_image(p)) for p in photos]}
    scenes = []
    for p in photos:   # whole photos with several smaller faces: a 400 px copy, as --model cnn sees
        image = read_image(p)
        k = 400 / max(image.shape[:2])
        scenes.append(cv2.resize(image, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
                      if k < 1 else image)
    sets["faces/ photos, <= 400 px"] = scenes
    faces._dlib_cnn(sets["faces/ photos, <= 400 px"][0], 0)   # load both before timing
    mmod.detect(sets["faces/ photos, <= 400 px"][0])
    print("\nCNN face detector (mmod): dlib's vs maskprep.mmod (torch), one thread, same images")
    total = {"images": 0, "dets": 0, "agree": 0, "extra": 0, "identical": 0}
    worst_conf, worst_iou = 0.0, 1.0
    for label, images in sets.items():
        cpu = {"dlib": 0.0, "torch": 0.0}
        dets = agree = extra = identical = 0
        for image in images:
            start = time.process_time()
            ref = faces._dlib_cnn(image, 0)
            cpu["dlib"] += time.process_time() - start
            start = time.process_time()
            ours = mmod.detect(image)
            cpu["torch"] += time.process_time() - start
            identical += _rounded(ref) == _rounded(ours)
            dets += len(ref)
            for box, score in ref:
                best = max(ours, key=lambda d: _iou(box, d[0]), default=None)
                if best is None:
                    continue
                iou, diff = _iou(box, best[0]), abs(best[1] - score)
                worst_iou, worst_conf = min(worst_iou, iou), max(worst_conf, diff)
                agree += iou >= 0.8 and diff <= 0.05
            extra += sum(1 for box, score in ours if score >= faces.SECOND_OPINION_MIN_SCORE
                         and not any(_iou(box, b) >= 0.8 for b, _ in ref))
        n = len(images)
        print(f"  {label} ({n} images): dlib {1000 * cpu['dlib'] / n:.1f} CPU-ms/call, torch "
              f"{1000 * cpu['torch'] / n:.1f} ({cpu['dlib'] / cpu['torch']:.1f}x less); "
              f"{agree}/{dets} dlib detections matched, {extra} extra >= "
              f"{faces.SECOND_OPINION_MIN_SCORE}, {identical}/{n} images with identical output")
        for key, value in (("images", n), ("dets", dets), ("agree", agree), ("extra", extra),
                           ("identical", identical)):
            total[key] += value
    # the one-off cost: every process that runs the CNN imports torch once (a forked worker too)
    probe = "import time; t = time.process_time(); import torch; print(time.process_time() - t)"
    once = float(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                check=True).stdout)
    print(f"  once per process: import torch {1000 * once:.0f} CPU-ms "
          "(dlib's CNN: none, dlib is loaded anyway)")
    print(f"  agreement: {total['agree']}/{total['dets']} detections on {total['images']} images "
          f"(worst IoU {worst_iou:.3f}, worst confidence difference {worst_conf:.4f}); "
          f"{total['extra']} extra boxes; {total['identical']}/{total['images']} images identical "
          f"(boxes, confidences to 0.001)")


def _center_inside(box, other) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return other[0] <= cx <= other[2] and other[1] <= cy <= other[3]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of photos")
    parser.add_argument("--repeat", type=int, default=2, help="runs per photo and setting (best kept)")
    parser.add_argument("--shared", type=Path, default=DEFAULT_DATA.parents[1],
                        help="the shared data folder (for the face-set section)")
    parser.add_argument("--crops-limit", type=int, default=300, help="crops in the coverage count (0 = all)")
    parser.add_argument("--only-sets", action="store_true", help="only recall / false faces / coverage")
    parser.add_argument("--only-cnn", action="store_true",
                        help="only the CNN section: dlib's mmod detector vs maskprep.mmod (torch)")
    args = parser.parse_args()
    if args.only_sets:
        face_sets_section(args.shared, args.crops_limit)
        return 0
    if args.only_cnn:
        cnn_section(args.shared, args.crops_limit)
        return 0
    if not args.data.is_dir():
        print(f"no photos at {args.data}: pass --data", file=sys.stderr)
        return 2
    cv2.setNumThreads(1)   # per-core cost, as in the runner's worker processes

    paths = list_images(args.data)
    images = [read_image(p) for p in paths]
    detect_faces(images[0])   # load the models before timing
    plain_dlib(images[0])
    totals = {"default": 0.0, "full": 0.0, "ours_full": 0.0}
    counts = {"default": 0, "full": 0, "ours_full": 0}
    mismatches = []
    print(f"{'photo':38s} {'size':>10s} {'default':>8s} {'dlib-up1':>8s} {'ratio':>6s}  faces")
    for path, image in zip(paths, images):
        times, found = {}, {}
        times["full"], found["full"] = _timed(plain_dlib, image, args.repeat)
        times["default"], found["default"] = _timed(detect_faces, image, args.repeat)
        times["ours_full"], found["ours_full"] = _timed(detect_faces, image, args.repeat,
                                                        upsample=1, max_side=0)
        for key in totals:
            totals[key] += times[key]
            counts[key] += len(found[key])
        fast, full = found["default"], found["full"]
        missed = [f for f in full if not any(_same_face(f, g) for g in fast)]
        extra = [g for g in fast if not any(_same_face(f, g) for f in full)]
        if missed or extra:
            mismatches.append(f"{path.name}: {len(missed)} missed, {len(extra)} extra")
        name = path.relative_to(args.data).as_posix()
        h, w = image.shape[:2]
        print(f"{name[:38]:38s} {w:>4d}x{h:<5d} {times['default'] * 1000:6.0f}ms "
              f"{times['full'] * 1000:6.0f}ms "
              f"{times['full'] / times['default']:5.1f}x  {len(fast)}/{len(full)}")

    n = len(images)
    print()
    print(f"photos: {n}   min score {DEFAULT_MIN_SCORE}, max side {DEFAULT_MAX_SIDE}; timings on one core")
    labels = {"default": "detect_faces, defaults (downscaled, auto upsample)",
              "ours_full": "detect_faces, full resolution, upsample 1",
              "full": "plain dlib, full resolution, upsample 1 (baseline)"}
    for key in ("default", "ours_full", "full"):
        print(f"{labels[key]:52s} {n / totals[key]:6.2f} images/s ({totals[key] / n * 1000:4.0f} ms/photo), "
              f"{counts[key]} faces")
    print(f"speed ratio, defaults vs baseline: {totals['full'] / totals['default']:.1f}x (target >= 5x); "
          f"from the search size alone: {totals['ours_full'] / totals['default']:.1f}x")
    print("same faces found: " + ("yes" if not mismatches else "NO\n  " + "\n  ".join(mismatches)))
    if args.shared.is_dir():
        face_sets_section(args.shared, args.crops_limit)
        cnn_section(args.shared, args.crops_limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
