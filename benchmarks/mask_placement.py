"""Where real masks sit on the face, measured, next to where synth-masks puts them.

Over real masked photos (default: the shared ``chandrikadeb7/with_mask``), each face's landmarks
are fitted and its mask cut out with the template bank's segmentation
(:func:`maskprep.masks.bank.segment_mask`, in a capture region more generous than the bank's so
that a high or wide mask is not clipped). Three numbers per face, measured from the eyes, the
part of the face dlib still fits on a masked face (its nose tip, mouth and jaw there are guesses
that follow the mask's outline), in units of the distance between the eye centres (IOD), from
landmark 27 (between the eyes):

- ``top``: how far below 27 the mask's top edge crosses the midline;
- ``side``: the mask's half-width (1st to 99th percentile across, halved);
- ``bottom``: how far below 27 its lowest pixels reach.

The same numbers for the outlines ``synth-masks`` fits (``correct`` wear, each drawn type, its
per-output fit draws) on unmasked faces (default: ``chandrikadeb7/without_mask``), where the
landmarks are sound. On those faces it also prints where landmarks 30 (nose tip), 8 (chin) and
the jaw ends (0 / 16) lie in the same units, to read the real masks against them.

    python benchmarks/mask_placement.py --limit 150
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from maskprep.masks.bank import Reject, _poly_mask, _work_scale, segment_mask  # noqa: E402
from maskprep.masks.fit import check_face, draw_fit, extend_grid, fit_grid, grid_outline  # noqa: E402
from maskprep.masks.templates import load_template  # noqa: E402

#: A capture region wider and higher than the bank's own (CAPTURE_FIT), so the measurement is not
#: bounded by it: from landmark 27 down, 1.25x the jaw's width, well under the chin.
MEASURE_FIT = {"top": 0.0, "side_drop": -0.3, "chin_margin": 0.16, "width": 1.25, "bulge": 0.08}
TYPES = ("surgical", "kf94", "cloth", "n95")
STATS = ("top", "side", "bottom")


def eye_frame(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(origin = landmark 27, right, down, inter-ocular distance): the part of the face a worn mask
    leaves alone, so dlib fits it as well on a masked face as on a bare one (its nose tip, mouth and
    jaw on a masked face are guesses: they follow the mask's outline or sit where an average face
    has them)."""
    lm = np.asarray(landmarks, np.float64)
    left, right = lm[36:42].mean(axis=0), lm[42:48].mean(axis=0)
    d = right - left
    iod = float(np.hypot(*d))
    r = d / max(iod, 1e-6)
    return lm[27], r, np.array([-r[1], r[0]]), iod


def placement(region: np.ndarray, landmarks: np.ndarray) -> dict[str, float] | None:
    """``top``, ``side`` and ``bottom`` (see the module doc) of a bool region on a face, or None
    when it has no pixels on the midline."""
    origin, right, down, iod = eye_frame(landmarks)
    ys, xs = np.nonzero(region)
    if len(xs) < 20:
        return None
    pts = np.stack([xs, ys], axis=-1).astype(np.float64) + 0.5 - origin
    y, x = pts @ down / iod, pts @ right / iod
    mid = np.abs(x) < 0.12
    if mid.sum() < 5:
        return None
    return {"top": float(np.percentile(y[mid], 2)),
            "side": float((np.percentile(x, 99) - np.percentile(x, 1)) / 2),
            "bottom": float(np.percentile(y, 99))}


def real_placement(image: np.ndarray, landmarks: np.ndarray) -> dict[str, float] | None:
    """The placement of the real mask on one face (None: no mask cut)."""
    lm = np.asarray(landmarks, np.float64)
    if check_face(lm, min_face=24):
        return None
    base = load_template("surgical")
    capture = extend_grid(fit_grid(lm, base.rows, base.cols, "correct", MEASURE_FIT))
    crop, lm_w, capture_w, _ = _work_scale(image, lm, capture)
    try:
        fg, _ = segment_mask(crop, lm_w, capture_w)
    except Reject:
        return None
    return placement(fg, lm_w)


def fitted_placement(shape: tuple[int, int], landmarks: np.ndarray, kind: str,
                     rng: np.random.Generator, wear: str = "correct") -> dict[str, float] | None:
    """The placement of synth-masks' fitted outline (one per-output fit draw, as the renderer
    draws it) of one mask type on one face."""
    t = load_template(kind)
    fit = draw_fit(t.fit, rng)
    grid = fit_grid(landmarks, t.rows, t.cols, wear, fit, rng, 1.0)
    return placement(_poly_mask(shape, grid_outline(grid)), landmarks)


def faces_of(image: np.ndarray) -> list[np.ndarray]:
    """Landmarks of the faces in a photo (a tight crop the detector misses: its crop fit)."""
    from maskprep.masks.synth import crop_face, find_faces

    faces = [f.landmarks for f in find_faces(image)]
    if not faces:
        crop = crop_face(image)
        faces = [crop.landmarks] if crop is not None else []
    return [np.asarray(f, np.float64) for f in faces]


def summary(rows: list[dict[str, float]]) -> dict[str, tuple[float, ...]]:
    """Per statistic: (p10, median, p90, mean, std)."""
    out = {}
    for k in STATS:
        v = np.array([r[k] for r in rows])
        out[k] = (*np.percentile(v, [10, 50, 90]), v.mean(), v.std())
    return out


def print_table(label: str, rows: list[dict[str, float]]) -> None:
    if not rows:   # a small --limit can leave a group empty: no percentiles to show
        print(f"{label:<22} n=0    no masks measured")
        return
    s = summary(rows)
    cells = "  ".join(f"{k} {s[k][0]:+.2f} / {s[k][1]:+.2f} / {s[k][2]:+.2f}" for k in STATS)
    print(f"{label:<22} n={len(rows):<4} {cells}")


def _sample(folder: str, limit: int) -> list[Path]:
    paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if limit <= 0 or limit >= len(paths):   # 0: all, as in the other benches
        return paths
    return [paths[i] for i in np.linspace(0, len(paths) - 1, limit).astype(int)]


def main(argv: list[str] | None = None) -> int:
    from maskprep.images import read_image

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data/masks/chandrikadeb7/with_mask")
    ap.add_argument("--bare", default="../shared/data/masks/chandrikadeb7/without_mask")
    ap.add_argument("--limit", type=int, default=150, help="photos from each folder (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    real: list[dict[str, float]] = []
    for p in _sample(args.data, args.limit):
        image = read_image(str(p))
        for lm in faces_of(image):
            r = real_placement(image, lm)
            if r is not None:
                real.append(r)
    rng = np.random.default_rng(args.seed)
    ours: dict[str, list[dict[str, float]]] = {k: [] for k in TYPES}
    marks: list[dict[str, float]] = []
    for p in _sample(args.bare, args.limit):
        image = read_image(str(p))
        for lm in faces_of(image):
            if check_face(lm):
                continue
            origin, right, down, iod = eye_frame(lm)
            marks.append({"top": float((lm[30] - origin) @ down / iod),
                          "side": float((lm[16] - lm[0]) @ right / iod / 2),
                          "bottom": float((lm[8] - origin) @ down / iod)})
            for k in TYPES:
                f = fitted_placement(image.shape[:2], lm, k, rng)
                if f is not None:
                    ours[k].append(f)
    print(f"{len(real)} real masks cut, {len(marks)} unmasked faces fitted; p10 / median / p90,")
    print("in eye distances: top = top edge below landmark 27, side = half-width, bottom = lowest below 27")
    print_table("real masks", real)
    nose = float(np.median([m["top"] for m in marks])) if marks else float("-inf")
    print_table("real, over the nose", [r for r in real if r["top"] < nose])
    for k in TYPES:
        print_table(f"synth-masks {k}", ours[k])
    print_table("synth-masks all types", [r for k in TYPES for r in ours[k]])
    print_table("landmarks 30 / jaw / 8", marks)
    print("(real, over the nose: top edge above the unmasked faces' median nose tip, landmark 30,")
    print(" i.e. worn 'correct'; the rest are worn under the nose or cut short)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
