"""A template bank learned from real photos: the library behind ``maskprep build-templates``.

A bank template is a real mask cut out of a photo and rectified into the same template space as the
drawn ones in ``mask_templates/`` (the surgical canvas and its 5 x 9 grid of named anchors), so the
piecewise warp, the light and the camera layers of ``synth-masks`` apply to it unchanged.

From a photo of a masked face: 68 landmarks (dlib still places the jaw and nose on most masked
faces; fits that do not look like a face are rejected), the anchor grid a mask would have on that
face (:func:`maskprep.masks.fit.fit_grid` with a generous capture fit), a GrabCut segmentation of
the lower face seeded by colour (the mouth region is mask, the eye region is skin), and the inverse
of the render warp (face grid -> template grid). Rendering the template with the same fit puts the
mask back where it was relative to the landmarks, on any face.

From a photo of a mask on a plain background: the mask is cut from the background, its ear loops
are opened away, and its body is stretched over the template grid (top row = top edge).
"""
from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from maskprep.masks.fit import check_face, extend_grid, fit_grid, grid_outline
from maskprep.masks.light import exposure_gain
from maskprep.masks.render import luminance, warp_mesh
from maskprep.masks.templates import MaskTemplate, load_template

KIND = "bank"
#: The drawn template whose canvas and anchor grid every bank template shares.
GRID_FROM = "surgical"
#: Where the capture grid sits on the source face: higher on the nose, lower under the chin and a
#: little wider than a drawn mask, so the real mask's edges fall inside the captured area. It is
#: saved as the template's fit, so rendering puts the mask back in the same place on a new face.
CAPTURE_FIT = {"top": 0.2, "side_drop": 0.0, "chin_margin": 0.1, "width": 1.08, "bulge": 0.05}
#: Face width (px, jaw to jaw) the segmentation works at: enough detail, bounded cost.
WORK_WIDTH = 160
#: Below this colour difference (CIE Lab, delta E) the lower face is not told apart from the skin:
#: no mask, a skin-coloured one, or a mask worn under the chin.
MIN_CONTRAST = 14.0
#: Share of the fitted mask area (the grid without its margin) the cut-out must cover ...
MIN_COVER = 0.55
#: ... and the most of the captured area (grid plus margin) it may fill (a cut that leaked into
#: the background or the neck).
MAX_FILL = 0.97
#: Holes in a cut up to this share of its area are filled; bigger ones stay see-through.
MAX_HOLE = 0.02
#: The most of the cut whose colour looks like the face's skin.
MAX_SKINLIKE = 0.10
#: Border std (per RGB channel, 0..255) below which a photo counts as a mask on a plain background.
PLAIN_BORDER_STD = 22.0


class Reject(Exception):
    """A photo, or one face of it, that gives no template; the message is the manifest's reason."""


@dataclass(frozen=True)
class BankTemplate:
    """A template cut from a photo: RGBA in template space plus where it came from."""

    rgba: np.ndarray             # H x W x 4 uint8, the GRID_FROM canvas
    base_color: tuple[int, int, int]
    fit: dict[str, float]
    info: dict[str, Any]         # how it was cut (source kind, face box, contrast, cover)


# ------------------------------------------------------------------------------------------------
# Colour statistics

def _lab(rgb: np.ndarray) -> np.ndarray:
    """CIE Lab (L 0..100, a/b about -128..127) as float32 for an RGB uint8 image."""
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
    lab[..., 0] *= 100.0 / 255.0
    lab[..., 1:] -= 128.0
    return lab


def _poly_mask(shape: tuple[int, int], points: np.ndarray) -> np.ndarray:
    out = np.zeros(shape, np.uint8)
    cv2.fillPoly(out, [np.round(points).astype(np.int32)], 1)
    return out.astype(bool)


# ------------------------------------------------------------------------------------------------
# From a masked face

def segment_mask(image: np.ndarray, landmarks: np.ndarray, capture: np.ndarray,
                 iterations: int = 4) -> tuple[np.ndarray, dict[str, float]]:
    """The mask worn on a face: a bool H x W map and how sure the cut is.

    ``capture`` is the (extended) grid of the region a mask can occupy. The mouth and chin region
    is seeded as mask, the eyes and brows as skin, everything outside ``capture`` as not mask; GrabCut
    settles the rest. Raises :class:`Reject` when the lower face does not differ from the skin.
    """
    h, w = image.shape[:2]
    lm = np.asarray(landmarks, np.float64)
    outline = grid_outline(capture)
    region = _poly_mask((h, w), outline)
    # The mask's sure part: the mouth and the midline below the nose tip (covered when worn right).
    mouth_poly = np.concatenate([lm[[31, 33, 35]], lm[[54, 10, 8, 6, 48]]])
    mouth = _poly_mask((h, w), cv2.convexHull(mouth_poly.astype(np.float32))[:, 0])
    mouth &= region
    # The skin's sure part: the eye band (brows to the lower lids), without the eyes' own dark pixels.
    skin_poly = np.concatenate([lm[17:27], lm[[46, 47, 40, 41]]])
    skin_u8 = _poly_mask((h, w), cv2.convexHull(skin_poly.astype(np.float32))[:, 0]).astype(np.uint8)
    for eye in (lm[36:42], lm[42:48]):
        center, size = eye.mean(axis=0), max(float(np.ptp(eye[:, 0])), 2.0)
        cv2.circle(skin_u8, tuple(int(v) for v in np.round(center)), int(size * 0.7), 0, -1)
    skin = skin_u8.astype(bool)
    if mouth.sum() < 20 or skin.sum() < 20:
        raise Reject("face too small to cut a mask from")
    lab = _lab(image)
    mask_lab = np.median(lab[mouth], axis=0)
    skin_lab = np.median(lab[skin], axis=0)
    contrast = float(np.linalg.norm(mask_lab - skin_lab))
    if contrast < MIN_CONTRAST:
        raise Reject("no mask told apart from the skin")

    # Seeds: outside the capture region is background; the eye band is background; the mouth
    # region is foreground; the rest is probable by which median it is nearer to.
    gc = np.full((h, w), cv2.GC_BGD, np.uint8)
    d_mask = np.linalg.norm(lab - mask_lab, axis=-1)
    d_skin = np.linalg.norm(lab - skin_lab, axis=-1)
    gc[region] = np.where(d_mask[region] < d_skin[region], cv2.GC_PR_FGD, cv2.GC_PR_BGD)
    gc[skin] = cv2.GC_BGD
    gc[mouth] = cv2.GC_FGD
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    bgr = np.ascontiguousarray(image[..., ::-1])
    cv2.grabCut(bgr, gc, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    fg = ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)).astype(np.uint8)
    size = max(3, int(round(np.ptp(lm[:, 0]) * 0.03)) | 1)
    fg = _main_piece(fg, mouth, size)
    # Skin the cut took in (a cheek beside a dark mask, a lit neck): pixels as near the skin's
    # colour as the skin's own spread, and nearer to it than to the mask's. A little is cut away;
    # a lot means the cut is not a mask.
    near = (d_skin < max(float(np.percentile(d_skin[skin], 75)), 6.0)) & (d_skin < d_mask)
    skinlike = float(near[fg].mean()) if fg.any() else 0.0
    if skinlike > MAX_SKINLIKE:
        raise Reject("mask cut takes in skin")
    fg = _main_piece((fg & ~near).astype(np.uint8), mouth, size)
    return fg, {"contrast": round(contrast, 1), "skinlike": round(skinlike, 3)}


def _main_piece(fg: np.ndarray, seed: np.ndarray, size: int) -> np.ndarray:
    """The piece of a cut over ``seed`` (the mouth), specks opened away, small holes filled."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, kernel)
    n, labels = cv2.connectedComponents(fg)
    if n > 1:
        votes = np.bincount(labels[seed], minlength=n)
        votes[0] = 0
        fg = (labels == int(votes.argmax())).astype(np.uint8)
    fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, kernel)
    return _fill_small_holes(fg, MAX_HOLE * float(fg.sum()))


def _fill_small_holes(fg: np.ndarray, max_area: float) -> np.ndarray:
    """``fg`` (uint8 0/1) as bool with its holes up to ``max_area`` px filled: specks of print or
    shadow inside a mask are mask, but a big hole is what shows through (a cheek inside a loop)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats((fg == 0).astype(np.uint8), connectivity=4)
    out = fg.astype(bool)
    h, w = fg.shape
    for k in range(1, n):
        x, y, bw, bh, area = stats[k]
        touches = x == 0 or y == 0 or x + bw == w or y + bh == h   # outside, not a hole
        if not touches and area <= max_area:
            out |= labels == k
    return out


def _work_scale(image: np.ndarray, landmarks: np.ndarray, capture: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The capture region's crop (with a margin) at about WORK_WIDTH face width, and the landmarks
    and grid moved into it; also the crop's (x0, y0, scale) for mapping back."""
    h, w = image.shape[:2]
    pts = np.concatenate([capture.reshape(-1, 2), landmarks[17:27]])
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    pad = (hi - lo) * 0.08
    x0, y0 = (int(v) for v in np.clip(np.floor(lo - pad), 0, [w, h]))
    x1, y1 = (int(v) for v in np.clip(np.ceil(hi + pad), 0, [w, h]))
    crop = image[y0:y1, x0:x1]
    width = float(np.hypot(*(landmarks[16] - landmarks[0])))
    scale = min(1.0, WORK_WIDTH / max(width, 1.0))
    if scale < 1.0:
        crop = cv2.resize(crop, (max(1, int(round(crop.shape[1] * scale))),
                                 max(1, int(round(crop.shape[0] * scale)))), interpolation=cv2.INTER_AREA)
    shift = np.array([x0, y0], np.float64)
    return crop, (landmarks - shift) * scale, (capture - shift) * scale, np.array([x0, y0, scale])


def from_face(image: np.ndarray, landmarks: np.ndarray) -> BankTemplate:
    """Cut the mask out of one masked face and rectify it into template space.

    Raises :class:`Reject` (the reason) when the landmarks do not look like a face, or no mask is
    told apart from the skin, or the cut covers too little of where a mask sits or leaks past it.
    """
    lm = np.asarray(landmarks, np.float64)
    reason = check_face(lm, min_face=24)
    if reason:
        raise Reject(reason)
    base = load_template(GRID_FROM)
    grid = fit_grid(lm, base.rows, base.cols, "correct", CAPTURE_FIT)
    capture = extend_grid(grid)
    crop, lm_w, capture_w, _ = _work_scale(image, lm, capture)
    grid_w = fit_grid(lm_w, base.rows, base.cols, "correct", CAPTURE_FIT)
    fg, info = segment_mask(crop, lm_w, capture_w)
    body = _poly_mask(fg.shape, grid_outline(grid_w))
    cover = float((fg & body).sum() / max(body.sum(), 1))
    fill = float(fg.sum() / max(_poly_mask(fg.shape, grid_outline(capture_w)).sum(), 1))
    info.update(cover=round(cover, 3), fill=round(fill, 3))
    if cover < MIN_COVER:
        raise Reject("mask cut covers too little of the lower face")
    if fill > MAX_FILL:
        raise Reject("mask cut leaks past the lower face")

    # Soft edge at work scale, then the inverse of the render warp: face grid -> template grid.
    alpha = cv2.GaussianBlur(fg.astype(np.float32), (0, 0), 0.8)
    # The renderer applies the new face's exposure gain: divide the source face's out, so a mask
    # is not darkened twice (once in its photo, once on render).
    rgb = crop.astype(np.float32) / exposure_gain(image, lm)
    rgba = np.dstack([np.clip(rgb, 0, 255), alpha * 255.0]).astype(np.float32)
    rgba = _to_template(rgba, extend_grid(grid_w), base)
    return _finish(rgba, CAPTURE_FIT, info)


def _to_template(rgba: np.ndarray, src_grid: np.ndarray, base) -> np.ndarray:
    """Warp float RGBA from ``src_grid`` onto the template canvas's (extended) grid."""
    th, tw = base.rgba.shape[:2]
    warped, x0, y0 = warp_mesh(rgba, src_grid, extend_grid(base.grid), (th, tw))
    out = np.zeros((th, tw, 4), np.float32)
    out[y0:y0 + warped.shape[0], x0:x0 + warped.shape[1]] = warped
    return out


def _finish(rgba: np.ndarray, fit: dict[str, float], info: dict[str, Any]) -> BankTemplate:
    out = np.clip(np.rint(rgba), 0, 255).astype(np.uint8)
    solid = out[..., 3] > 200
    if solid.sum() < 50:
        raise Reject("mask cut is empty in template space")
    base_color = tuple(int(v) for v in np.median(out[..., :3][solid], axis=0))
    info["luminance"] = round(float(luminance(np.array(base_color, np.float32))), 1)
    return BankTemplate(rgba=out, base_color=base_color, fit=dict(fit), info=info)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------
# From a mask on a plain background

def plain_background(image: np.ndarray) -> bool:
    """Whether the photo's border is one flat colour (a product shot, not a scene or a face)."""
    h, w = image.shape[:2]
    b = max(2, int(min(h, w) * 0.03))
    border = np.concatenate([image[:b].reshape(-1, 3), image[-b:].reshape(-1, 3),
                             image[:, :b].reshape(-1, 3), image[:, -b:].reshape(-1, 3)]).astype(np.float32)
    return bool(border.std(axis=0).max() < PLAIN_BORDER_STD)


def from_flat(image: np.ndarray) -> BankTemplate:
    """A template from a photo of one mask lying on (or held against) a plain background.

    The mask is what differs from the border colour (refined with GrabCut); an opening removes
    the thin ear loops, and the body's bounding box is stretched over the template grid. Raises
    :class:`Reject` when the background is not plain or no single object stands out.
    """
    if not plain_background(image):
        raise Reject("background is not plain")
    h0, w0 = image.shape[:2]
    scale = min(1.0, 480.0 / max(h0, w0))
    small = cv2.resize(image, (max(1, int(w0 * scale)), max(1, int(h0 * scale))),
                       interpolation=cv2.INTER_AREA) if scale < 1 else image
    h, w = small.shape[:2]
    lab = _lab(small)
    b = max(2, int(min(h, w) * 0.03))
    ring = np.ones((h, w), bool)
    ring[b:-b, b:-b] = False
    bg = np.median(lab[ring], axis=0)
    dist = np.linalg.norm(lab - bg, axis=-1)
    fg0 = dist > max(MIN_CONTRAST, float(np.percentile(dist[ring], 99)) * 1.5)
    if fg0.sum() < 0.02 * h * w:
        raise Reject("no mask stands out from the background")
    if fg0[ring].mean() > 0.01:   # a product shot shows the whole mask; a head runs off the frame
        raise Reject("object runs off the photo edge (a face photo? use --assume-crop)")
    gc = np.where(fg0, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
    gc[ring] = cv2.GC_BGD
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(np.ascontiguousarray(small[..., ::-1]), gc, None, bgd, fgd, 3, cv2.GC_INIT_WITH_MASK)
    fg = ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)).astype(np.uint8)
    # Loops and strings are thin: an opening a few % of the object's size leaves the body.
    k = max(3, int(round(np.sqrt(fg.sum()) * 0.06)) | 1)
    body = cv2.morphologyEx(fg, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(body)
    if n < 2:
        raise Reject("no mask stands out from the background")
    best = 1 + int(stats[1:, cv2.CC_STAT_AREA].argmax())
    body = (labels == best).astype(np.uint8)
    contours, _ = cv2.findContours(body, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    body = np.zeros_like(body)
    cv2.drawContours(body, contours, -1, 1, -1)
    x, y, bw, bh = cv2.boundingRect(body)
    if bw < 16 or bh < 8 or bw * bh > 0.9 * h * w:
        raise Reject("no single mask found on the background")
    alpha = cv2.GaussianBlur(body.astype(np.float32), (0, 0), 0.8) * 255.0
    # Transparent all round: the warp's margin samples past the box, and must find nothing there.
    pad = max(bw, bh)
    rgba = cv2.copyMakeBorder(np.dstack([small.astype(np.float32), alpha]), pad, pad, pad, pad,
                              cv2.BORDER_CONSTANT, value=0)
    base = load_template(GRID_FROM)
    # The body's box corners -> the grid's outer anchors; inner anchors spread evenly.
    rows, cols = base.rows, base.cols
    us, vs = np.linspace(x + pad, x + pad + bw - 1, cols), np.linspace(y + pad, y + pad + bh - 1, rows)
    src_grid = np.stack(np.meshgrid(us, vs), axis=-1).astype(np.float32)
    rgba = _to_template(rgba, extend_grid(src_grid), base)
    return _finish(rgba, dict(base.fit), {"body_box": [int(v / scale) for v in (x, y, bw, bh)]})


def mirrored(template: MaskTemplate) -> MaskTemplate:
    """The template seen in a mirror: image flipped left-right, anchors mirrored and their columns
    reversed (so the left corner is still column 0). Doubles a bank's variety at no cost."""
    width = template.rgba.shape[1]
    grid = template.grid[:, ::-1].copy()
    grid[..., 0] = (width - 1) - grid[..., 0]
    rgba = np.ascontiguousarray(template.rgba[:, ::-1])
    rgba.setflags(write=False)
    grid.setflags(write=False)
    return replace(template, name=f"{template.name} (mirrored)", rgba=rgba, grid=grid)


# ------------------------------------------------------------------------------------------------
# Files

def template_files(template: BankTemplate, name: str, image_name: str, source: str,
                   source_kind: str) -> tuple[bytes, bytes]:
    """The PNG and JSON bytes of one bank template (the JSON as in ``mask_templates/``, plus
    ``kind`` and where it came from); ``image_name`` is the PNG's name beside the JSON."""
    from PIL import Image

    base = load_template(GRID_FROM)
    meta_src = json.loads((Path(base_json_path())).read_text(encoding="utf-8"))
    buf = io.BytesIO()
    Image.fromarray(template.rgba, "RGBA").save(buf, format="PNG", optimize=False)
    meta = {
        "name": name, "kind": KIND,
        "description": f"real mask cut from {source_kind} photo {source}",
        "image": image_name, "size": [int(base.rgba.shape[1]), int(base.rgba.shape[0])],
        "base_color": list(template.base_color), "grid": [base.rows, base.cols],
        "grid_order": meta_src["grid_order"], "anchors": meta_src["anchors"],
        "fit": template.fit, "source": source, "source_kind": source_kind,
        "cut": template.info, "generator": "maskprep build-templates",
    }
    return buf.getvalue(), json.dumps(meta, indent=1).encode("utf-8")


def base_json_path() -> Path:
    """The JSON of the drawn template whose grid the bank shares."""
    from maskprep.resources import templates_dir

    return templates_dir() / f"{GRID_FROM}.json"


def bank_templates(bank_dir: str | os.PathLike) -> list[str]:
    """Absolute paths of the template JSONs a ``build-templates`` run wrote into ``bank_dir``
    (from its manifest), sorted. ValueError when the folder holds no bank."""
    from maskprep.manifest import MANIFEST_NAME, latest_records, read_manifest

    root = Path(bank_dir)
    manifest = root / MANIFEST_NAME
    if not manifest.is_file():
        raise ValueError(f"--templates {bank_dir}: not a template bank (no {MANIFEST_NAME}; build "
                         "one with 'maskprep build-templates')")
    paths = sorted(str((root / r.output).resolve()) for r in latest_records(read_manifest(manifest))
                   if r.stage == STAGE and r.status == "ok" and r.output and r.output.endswith(".json"))
    if not paths:
        raise ValueError(f"--templates {bank_dir}: the bank holds no template")
    return paths


# ------------------------------------------------------------------------------------------------
# The stage

STAGE = "build-templates"
SOURCE_KINDS = ("auto", "faces", "flat")


def _face_landmarks(image: np.ndarray, assume_crop: bool) -> list[tuple[np.ndarray, str]]:
    """(landmarks, how found) of the faces in a photo: the detector's, or for a tight crop the
    landmarks fitted in its usual face box (synth-masks --assume-crop)."""
    from maskprep.faces import CROP_FACE_BOX, landmarks_for_box
    from maskprep.masks.synth import find_faces

    faces = [(f.landmarks, "detector") for f in find_faces(image)]
    if not faces and assume_crop:
        h, w = image.shape[:2]
        box = (CROP_FACE_BOX[0] * w, CROP_FACE_BOX[1] * h, CROP_FACE_BOX[2] * w, CROP_FACE_BOX[3] * h)
        faces = [(np.asarray(landmarks_for_box(image, box), np.float32), "assumed crop")]
    return faces


def process(job) -> list:
    """Stage function: the templates of one photo (one per usable masked face, or one flat mask)."""
    from maskprep.images import read_image
    from maskprep.runner import Produced, SkipImage, output_rel

    p = job.params
    image = read_image(job.source)
    kind = p.get("source_kind", "auto")
    cuts: list[tuple[BankTemplate, str, dict[str, Any]]] = []
    reasons: list[str] = []
    faces = [] if kind == "flat" else _face_landmarks(image, bool(p.get("assume_crop")))
    for lm, found_by in faces:
        try:
            cut = from_face(image, lm)
        except Reject as exc:
            reasons.append(str(exc))
            continue
        cuts.append((cut, "masked face", {"found_by": found_by,
                                           "landmarks": np.round(lm, 1).tolist()}))
    if not faces and kind != "faces":
        try:
            cuts.append((from_flat(image), "flat mask", {}))
        except Reject as exc:
            reasons.append("no face" if kind == "auto" and str(exc) == "background is not plain"
                           else str(exc))
    if not cuts:
        raise SkipImage(reasons[0] if reasons else "no face")
    produced = []
    for k, (cut, source_kind, extra) in enumerate(cuts):
        variant = "mask" if len(cuts) == 1 else f"mask{k + 1}"
        png_rel = output_rel(job, variant, ".png")
        json_rel = output_rel(job, variant, ".json")
        png, meta = template_files(cut, Path(json_rel).stem, Path(png_rel).name, job.rel, source_kind)
        params = {"source_kind": source_kind}
        info = {**extra, **cut.info, "image": png_rel}
        produced.append(Produced(rel=png_rel, data=png, variant=f"{variant}.png", params=params,
                                 info={"template": json_rel}))
        produced.append(Produced(rel=json_rel, data=meta, variant=variant, params=params, info=info))
    for r in reasons:   # the other faces of a photo that did give a template
        produced.append(Produced(rel="", data=b"", status="skipped", reason=r))
    return produced


def build_templates(input_dir: str | os.PathLike, bank_dir: str | os.PathLike,
                    source_kind: str = "auto", assume_crop: bool = False, seed: int = 0,
                    workers: int | None = None, overwrite: bool = False, resume: bool = False,
                    progress: bool | None = None):
    """Build a template bank in ``bank_dir`` from the photos under ``input_dir``.

    ``source_kind``: ``faces`` (photos of people wearing masks), ``flat`` (one mask on a plain
    background per photo) or ``auto`` (a photo with no face found is tried as a flat mask).
    ``assume_crop``: a tight face crop the detector misses is fitted in its usual face box.
    Returns the runner's :class:`~maskprep.runner.Summary`; ValueError for a bad option value.
    """
    from maskprep.runner import run_stage

    if source_kind not in SOURCE_KINDS:
        raise ValueError(f"unknown source kind {source_kind!r}: choose from {', '.join(SOURCE_KINDS)}")
    params = {"source_kind": source_kind, "assume_crop": bool(assume_crop)}
    return run_stage(STAGE, input_dir, bank_dir, process, params=params, seed=seed, workers=workers,
                     overwrite=overwrite, resume=resume, progress=progress)
