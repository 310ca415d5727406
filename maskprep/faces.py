"""Faces in a photo: dlib detection (HOG by default, CNN on request), 68 landmarks, pose, aligned crops.

``detect_faces`` is the one entry point the stages share (``detect``, ``synth-masks``). It keeps dlib's
cost bounded: a large photo is searched on a copy downscaled to ``max_side`` and only small photos are
upsampled, yet the 68 landmarks are always fitted on the full-resolution image inside the box scaled
back. Every face carries its detector score, so a threshold (``min_score``) keeps weak detections,
such as a patch of fabric, from being treated as faces.

Models load lazily, once per process (stages fork worker processes; nothing loads at import time).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from maskprep import mmod

#: HOG decision value below which a detection is dropped (HOG runs on the luminance, see
#: ``detect_faces``). Measured: scikit-image's astronaut has its face at 1.04 and the suit patches
#: at -0.01 and -0.23 (upsample 1; in RGB, as in the issue, 1.16, 0.12 and -0.15); no detection off
#: a face in 72 kaggle_fmd scenes, 300 chandrikadeb7 photos or dlib's dog photo scored above -0.07;
#: the weakest of the 25 annotated dlib test faces scores 0.34, masked faces in crowds 0.24 and up.
DEFAULT_MIN_SCORE = 0.2
#: Longer side (px) of the copy a large photo is searched on; landmarks still use full resolution.
DEFAULT_MAX_SIDE = 1280
#: Photos whose searched side is at most this are small: they are upsampled (auto mode).
SMALL_SIDE = 640
#: The HOG detector's window: faces much smaller than this (in the searched copy) are not found.
HOG_WINDOW = 80
MODELS = ("hog", "cnn")

if TYPE_CHECKING:  # the runner is only needed by the stage at the bottom
    from maskprep.runner import Job, Produced, Summary

_LANDMARKS_MODEL = "shape_predictor_68_face_landmarks.dat"
_CNN_MODEL = "mmod_human_face_detector.dat"
_MODELS: dict[str, Any] = {}   # per-process cache: dlib objects are loaded on first use

# iBUG-300W indices of the 68-point scheme.
RIGHT_EYE = slice(36, 42)   # the subject's right eye: on the left of the image
LEFT_EYE = slice(42, 48)
MOUTH = slice(48, 68)
NOSE_TIP = 30
JAW_RIGHT, JAW_LEFT = 0, 16


@dataclass(frozen=True, eq=False)   # eq=False: landmarks is an array, element-wise == is meaningless here
class Face:
    """One detected face, in pixel coordinates of the image passed to :func:`detect_faces`."""

    box: tuple[int, int, int, int]   # (left, top, right, bottom), clipped to the image
    score: float                     # detector confidence (HOG: decision value; CNN: mmod confidence)
    landmarks: np.ndarray            # (68, 2) float32 (x, y), iBUG-300W order, fitted at full resolution
    roll: float                      # degrees from the eye line; positive = clockwise in the image
    yaw: float                       # nose position between the jaw sides in [-1, 1]; 0 = frontal,
                                     # positive = nose toward the image's right
    model: str = "hog"               # which detector found it
    upsample: int = 0                # the upsampling of the pass that found it
    found_by: str = "search"         # how: see FOUND_BY (search, second opinion, crop fit, assumed crop)

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0]

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form for manifests (landmarks rounded to 0.01 px)."""
        return {
            "box": [int(v) for v in self.box],
            "score": round(float(self.score), 4),
            "landmarks": np.round(self.landmarks.astype(np.float64), 2).tolist(),
            "roll": round(float(self.roll), 2),
            "yaw": round(float(self.yaw), 3),
            "model": self.model,
            "upsample": int(self.upsample),
            "found_by": self.found_by,
        }


# ------------------------------------------------------------------------------------------------
# Models

def _model(name: str) -> Any:
    """A dlib model, loaded once per process."""
    if name not in _MODELS:
        import dlib

        from maskprep.resources import dlib_model_path
        if name == "hog":
            _MODELS[name] = dlib.get_frontal_face_detector()
        elif name == "cnn":
            _MODELS[name] = dlib.cnn_face_detection_model_v1(str(dlib_model_path(_CNN_MODEL)))
        elif name == "landmarks":
            _MODELS[name] = dlib.shape_predictor(str(dlib_model_path(_LANDMARKS_MODEL)))
        else:  # pragma: no cover - internal names only
            raise KeyError(name)
    return _MODELS[name]


def _as_dlib_image(image: np.ndarray) -> np.ndarray:
    """dlib wants a C-contiguous uint8 HxW or HxWx3 array."""
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"expected an HxW or HxWx3 uint8 image, got {image.dtype} {image.shape}")
    return np.ascontiguousarray(image)


# ------------------------------------------------------------------------------------------------
# Detection

def _run_detector(model: str, image: np.ndarray, upsample: int) -> list[tuple[tuple[float, ...], float]]:
    """Raw detections on ``image``: ((left, top, right, bottom), score), in ``image`` pixels."""
    if model == "hog":
        rects, scores, _ = _model("hog").run(image, upsample, -1.0)
        return [((r.left(), r.top(), r.right() + 1, r.bottom() + 1), float(s))
                for r, s in zip(rects, scores)]
    if min(image.shape[:2]) < CNN_MIN_SIDE:
        return []   # dlib's CNN raises on such a strip; it holds no face it could find anyway
    if os.environ.get("MASKPREP_CNN") == "dlib":
        return _dlib_cnn(image, upsample)
    # the same network and weights run in torch: the same boxes, ~10x less CPU (dlib-bin has no BLAS)
    return mmod.detect(image, upsample)


def _dlib_cnn(image: np.ndarray, upsample: int) -> list[tuple[tuple[float, ...], float]]:
    """dlib's own CNN (MASKPREP_CNN=dlib): the reference maskprep.mmod is checked against."""
    dets = _model("cnn")(image, upsample)
    return [((d.rect.left(), d.rect.top(), d.rect.right() + 1, d.rect.bottom() + 1), float(d.confidence))
            for d in dets]


def search_plan(height: int, width: int, upsample: int | None = None,
                max_side: int = DEFAULT_MAX_SIDE) -> tuple[float, list[int]]:
    """How an image of this size is searched: (downscale factor, upsample of each pass).

    Large photos are searched on a copy whose longer side is ``max_side`` (factor < 1), at
    upsample 0: faces from about 80 px of that copy. Small photos (longer side at most 640 px) are
    searched at upsample 1, and again at upsample 2 only when the first pass finds no face or only
    faces near its smallest size (see :func:`detect_faces`). An explicit ``upsample`` gives one pass.
    """
    longer = max(height, width)
    scale = 1.0 if max_side <= 0 or longer <= max_side else max_side / longer
    if upsample is not None:
        return scale, [int(upsample)]
    searched = longer * scale
    return scale, ([1, 2] if searched <= SMALL_SIDE else [0])


def detect_faces(image: np.ndarray, model: str = "hog", min_score: float = DEFAULT_MIN_SCORE,
                 upsample: int | None = None, max_side: int = DEFAULT_MAX_SIDE,
                 min_size: float = 0.0) -> list[Face]:
    """Find faces in an RGB (or gray) uint8 image; return them largest first, with 68 landmarks.

    - ``model``: ``"hog"`` (dlib's HOG detector, fast) or ``"cnn"`` (dlib's mmod CNN: finds turned and
      dim faces HOG misses, but about 10x slower on CPU, run in torch: maskprep.mmod).
    - ``min_score``: detections scoring below it are dropped. The default keeps false positives out
      (a suit patch in the astronaut photo scores about 0) and real faces in (0.3 and up; masked
      faces in a crowd from about 0.25).
    - ``upsample``: how many times dlib doubles the image before searching; each doubling finds faces
      half as large at 4x the cost. ``None`` (auto) upsamples only small photos (<= 640 px), and
      searches them at 2 only when 1 finds no face or only faces under ~80 px (scene photos with
      tiny faces).
    - ``max_side``: photos larger than this are searched on a downscaled copy (0 = never); the
      landmarks are fitted on the full image in the scaled-back box either way.
    - ``min_size``: the smallest face (photo px) the caller has a use for; an auto-mode pass that
      could only add faces smaller than that is not run (``synth-masks`` skips faces under 40 px).
    """
    found, used = _detections(image, model, min_score, upsample, max_side, min_size)
    return _fit_detections(image, found, model, used)


def _detections(image: np.ndarray, model: str, min_score: float, upsample: int | None, max_side: int,
                min_size: float) -> tuple[list[tuple[tuple[float, ...], float]], int]:
    """:func:`detect_faces`'s search: ((left, top, right, bottom) in photo px, score) of each hit
    and the upsampling of the pass that found them; no landmarks yet."""
    if model not in MODELS:
        raise ValueError(f"unknown face model {model!r}: choose one of {', '.join(MODELS)}")
    image = _as_dlib_image(image)
    h, w = image.shape[:2]
    scale, passes = search_plan(h, w, upsample, max_side)
    if min_size > 0:
        # Pass k+1 only finds faces smaller than pass k can: keep it only while pass k's
        # smallest face (HOG window at that upsampling, in photo px) is still above min_size.
        passes = passes[:1] + [up for prev, up in zip(passes, passes[1:])
                               if HOG_WINDOW / 2 ** prev / scale > min_size]
    searched = image
    if model == "hog" and image.ndim == 3:
        # HOG on the luminance: ~1.3x faster than dlib's per-channel gradients, scores ~0.1 lower;
        # converted before the resize, which then works on one channel, not three
        searched = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        searched = cv2.resize(searched, size, interpolation=cv2.INTER_AREA)

    found: list[tuple[tuple[float, ...], float]] = []
    used = passes[0]
    for i, up in enumerate(passes):
        used = up
        found = [d for d in _run_detector(model, searched, up) if d[1] >= min_score]
        # Another, costlier pass only where the faces may be smaller than this one can see.
        near_limit = HOG_WINDOW / 2 ** up   # smallest face this pass sees (searched-copy px)
        if i + 1 < len(passes) and found and min(b[2] - b[0] for b, _ in found) >= 2 * near_limit:
            break
    return [(tuple(v / scale for v in box), score) for box, score in found], used


def _fit_detections(image: np.ndarray, found: list[tuple[tuple[float, ...], float]], model: str,
                    upsample: int) -> list[Face]:
    """Faces with landmarks for detector hits (boxes in photo px), largest first."""
    h, w = image.shape[:2]
    faces = []
    for full_box, score in found:
        box = _clip_box(full_box, w, h)
        if box[2] - box[0] < 2 or box[3] - box[1] < 2:
            continue
        # The predictor starts from the box: give it the unclipped one for faces cut by the border.
        lm = landmarks_for_box(image, full_box)
        roll, yaw = pose_from_landmarks(lm)
        faces.append(Face(box=box, score=float(score), landmarks=lm, roll=roll, yaw=yaw,
                          model=model, upsample=upsample))
    return _largest_first(faces)


def _clip_box(box: tuple[float, float, float, float], w: int, h: int) -> tuple[int, int, int, int]:
    left, top, right, bottom = (int(round(v)) for v in box)
    return max(0, left), max(0, top), min(w, right), min(h, bottom)


def landmarks_for_box(image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """The 68 landmarks, (68, 2) float32 (x, y), fitted by dlib's shape predictor inside ``box``.

    ``box`` is (left, top, right, bottom) in ``image`` pixels, e.g. a box from another detector.
    """
    import dlib

    image = _as_dlib_image(image)
    left, top, right, bottom = (int(round(v)) for v in box)
    shape = _model("landmarks")(image, dlib.rectangle(left, top, right - 1, bottom - 1))
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


def pose_from_landmarks(landmarks: np.ndarray) -> tuple[float, float]:
    """(roll in degrees, yaw proxy in [-1, 1]) from 68 landmarks.

    Roll is the angle of the line from the image-left eye to the image-right eye (positive =
    clockwise, as y points down). The yaw proxy is where the nose tip falls between the two jaw
    ends along the jaw line: -1 at the image-left jaw, 0 midway (frontal), +1 at the image-right jaw.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    eye_a, eye_b = lm[RIGHT_EYE].mean(axis=0), lm[LEFT_EYE].mean(axis=0)
    roll = math.degrees(math.atan2(eye_b[1] - eye_a[1], eye_b[0] - eye_a[0]))
    jaw_a, jaw_b = lm[JAW_RIGHT], lm[JAW_LEFT]
    axis = jaw_b - jaw_a
    denom = float(axis @ axis)
    if denom < 1e-9:
        return roll, 0.0
    t = float((lm[NOSE_TIP] - jaw_a) @ axis) / denom
    return roll, float(np.clip(2.0 * t - 1.0, -1.0, 1.0))


# ------------------------------------------------------------------------------------------------
# Is it a face? The plausibility of a landmark fit, and the one face finder the stages share

#: How a face was found (``Face.found_by``, recorded in the manifests).
FOUND_BY = ("quick look", "search", "second opinion", "crop fit", "assumed crop")
#: Width / height range of an image that may be a tight face crop (web crops run 0.6-1.6).
CROP_ASPECT = (0.5, 2.0)
#: Crop-shaped images up to this longer side get the crop fit before any search: a confident
#: fit skips the search (the fast path; chandrikadeb7's crops have a median side of ~150 px).
CROP_FAST_SIDE = 400
#: Where the face box sits in a tight face crop (fractions of width/height): the crop fit's start.
CROP_FACE_BOX = (0.15, 0.22, 0.85, 0.88)
#: Refits of the crop fit, each from the box its last landmarks imply (converges on a face that is
#: not where CROP_FACE_BOX guessed, so a frontal face off-centre is not measured as turned).
CROP_FIT_ROUNDS = 3
#: A crop fit is confident when its last refit moved the landmarks less than this (of the eye
#: distance) and the face shows its eyes (darker than the cheeks) and skin. Measured on 200
#: chandrikadeb7 crops and 300 kaggle_fmd scene patches: 109 crops pass, 1 patch.
CONFIDENT_DRIFT = 0.06
MIN_EYE_CONTRAST = 0.3
#: ... and the face fills the crop: jaw width at least this share of the image width (a scene
#: photo's small faces never pass for one big face). chandrikadeb7 crops: 0.6-0.95.
CROP_MIN_FILL = 0.45
#: Share of the cheek-and-nose region whose chroma is skin-like (YCrCb), for faces found without
#: a detector: the shape predictor draws a face on anything. Also refuses masked faces.
MIN_SKIN = 0.6
#: Detector hits: the pixels' evidence of a face, skin share + eye contrast / 2 (see
#: :func:`face_evidence`). Measured on 184 HOG faces in identities, dlib_landmarks and kaggle_fmd
#: (masked faces in crowds included: no skin, but dark eyes): 0.8 and up; the suit patch: 0.38.
MIN_EVIDENCE = 0.6
#: ... and when it is weaker, landmarks refitted from shifted and scaled boxes must move less than
#: this (mean, of the eye distance): the predictor returns to a face but wanders on a suit (0.20;
#: real faces from 0.01, small, partial or masked ones up to 0.75, hence not a test on its own).
MAX_INSTABILITY = 0.15
#: The CNN second opinion searches a copy of a small image with this longer side (mmod at upsample
#: 0: ~0.15 CPU-s, growing with the pixels). Of the 27 in 200 chandrikadeb7 crops that reach it,
#: it finds 22 at 140 px (160 px: 21 for 1.3x the cost; 120 px: 19); nothing in 150 scene patches.
SECOND_OPINION_SIDE = 140
#: dlib's CNN refuses images thinner than this ("filter windows must be small enough").
CNN_MIN_SIDE = 8
SECOND_OPINION_MIN_SCORE = 0.2
#: Where a face box (HOG's framing) sits around its landmarks: a square of the landmarks' extent,
#: raised by this fraction of it (measured on HOG detections of chandrikadeb7 crops).
_BOX_RAISE = 0.078
#: The quick look at a crop-shaped image: HOG at upsample 0 on a copy whose longer side is
#: QUICK_SIDE px, padded on every side by QUICK_PAD of it (replicated border: a tight crop cuts
#: the brow and chin HOG's window expects). It sees faces of ~60-100 % of the image for ~3 CPU-ms
#: (the full search of a 150 px crop, at upsample 1 and 2, costs ~40). Measured on 200
#: chandrikadeb7 crops and the 331-image no-face set: 70 % of the crops, no false face (160 px:
#: 73 %, 1.3x the cost).
QUICK_SIDE = 130
QUICK_PAD = 0.15
#: ... its hits may score this much below ``min_score`` (a padded border scores lower than a
#: head; the landmark and pixel checks of :func:`detection_reason` still judge every hit).
QUICK_SCORE_DROP = 0.7
#: ... and its landmarks, refitted from the box they imply, must settle: the last refit moves
#: them less than this (of the eye distance; median 0.02, 10 % of the hits from 0.15).
QUICK_MAX_DRIFT = 0.15
#: The HOG check of a crop fit that is plausible but not confident: HOG at upsample 0 on a copy
#: framed on the fitted face (VERIFY_SIDE px across, VERIFY_PAD of it around, replicated), its
#: best score near the face's centre must reach VERIFY_MIN_SCORE (~3 CPU-ms). Measured: 136 of
#: 200 chandrikadeb7 crop fits reach -1.0, 1 of the 58 plausible fits of the no-face set.
VERIFY_SIDE = 100
VERIFY_PAD = 0.3
VERIFY_MIN_SCORE = -1.0
#: Crop-shaped images up to this longer side are not searched at full cost: the quick look and
#: the crop fit see every face a crop this small can hold at a size worth masking. Above it, a
#: crop fit must be settled to count (a HOG check alone took a 400x301 scene of two people for
#: one face crop), and a quick-look face ends the search only when it fills most of the image.
CROP_NO_SEARCH_SIDE = 200
#: ... "most of the image": the quick look's largest face box covers this share of its area (a
#: tight crop: 0.4-1; a 600x440 photo with a second, smaller face beside a big one: 0.32).
QUICK_DOMINANT_AREA = 0.4


@dataclass
class FaceSearch:
    """What :func:`find_faces` found: faces (largest first) and candidates rejected, with why."""

    faces: list[Face]
    rejected: list[tuple[Face, str]]

    @property
    def reason(self) -> str:
        """Why an image without a face has none: ``not a face`` when candidates were rejected."""
        return "not a face" if self.rejected and not self.faces else "no face"


@dataclass(frozen=True)
class CropFit:
    """The whole image fitted as a face crop: the face, whether it is confident, and why not."""

    face: Face
    drift: float        # landmark motion in the last refit, of the eye distance
    skin: float         # skin share at cheeks and nose
    eye_contrast: float  # (cheeks - eyes) luminance, in units of the face's luminance spread
    reason: str | None  # why it is not a face at all (None: plausible)

    fill: float = 1.0   # face width (jaw to jaw) / image width
    hog_score: float | None = None   # the HOG check (:func:`hog_check`) where it ran
    shape: tuple[int, int] = (0, 0)  # the image's (height, width)

    @property
    def settled(self) -> bool:
        """Plausible, settled, filling the crop, with dark eyes: a face without asking HOG."""
        return (self.reason is None and self.drift < CONFIDENT_DRIFT and self.fill >= CROP_MIN_FILL
                and self.eye_contrast > MIN_EYE_CONTRAST)

    @property
    def confident(self) -> bool:
        """A face: settled, or, in a small crop (<= CROP_NO_SEARCH_SIDE px), plausible (shape and
        skin) with HOG seeing a face there."""
        h, w = self.shape
        return self.settled or (self.reason is None and self.hog_score is not None
                                and self.hog_score >= VERIFY_MIN_SCORE
                                and max(h, w) <= CROP_NO_SEARCH_SIDE)


def _eye_distance(lm: np.ndarray) -> float:
    return max(float(np.linalg.norm(lm[LEFT_EYE].mean(axis=0) - lm[RIGHT_EYE].mean(axis=0))), 1e-6)


def box_from_landmarks(landmarks: np.ndarray) -> tuple[float, float, float, float]:
    """The detector-style box (left, top, right, bottom) that frames these landmarks."""
    lm = np.asarray(landmarks, np.float64)
    lo, hi = lm.min(axis=0), lm.max(axis=0)
    side = float(max(hi - lo))
    cx, cy = (lo + hi) / 2.0
    cy -= _BOX_RAISE * side
    return cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2


def shape_reason(landmarks: np.ndarray) -> str | None:
    """``implausible landmarks`` when 68 points do not form a face (eyes above the nose above the
    mouth along the face's own axis, about as wide as tall, eyes apart), else None."""
    lm = np.asarray(landmarks, np.float64)
    if lm.shape != (68, 2) or not np.all(np.isfinite(lm)):
        return "implausible landmarks"
    up = lm[27] - lm[8]
    height = float(np.hypot(*up))
    if height < 1e-6:
        return "implausible landmarks"
    up /= height
    width = float(np.hypot(*(lm[JAW_LEFT] - lm[JAW_RIGHT])))
    eyes = (lm[36:48].mean(axis=0) - lm[8]) @ up
    nose = (lm[33] - lm[8]) @ up
    mouth = (lm[MOUTH].mean(axis=0) - lm[8]) @ up
    if not (eyes > nose > mouth > 0) or not 0.7 < width / height < 2.4:
        return "implausible landmarks"
    if not 0.2 < _eye_distance(lm) / max(width, 1e-6) < 0.75:
        return "implausible landmarks"
    return None


def fit_instability(image: np.ndarray, landmarks: np.ndarray) -> float:
    """How far the landmarks move when refitted from shifted and enlarged boxes (mean, of the eye
    distance): the shape predictor returns to a real face, but wanders on a texture or a suit."""
    left, top, right, bottom = box_from_landmarks(landmarks)
    side = right - left
    cx, cy = (left + right) / 2, (top + bottom) / 2
    moves = []
    for dx, dy, k in ((0.1, 0.0, 1.0), (-0.1, 0.0, 1.0), (0.0, 0.1, 1.0), (0.0, 0.0, 1.15)):
        x, y, half = cx + dx * side, cy + dy * side, side * k / 2
        refit = landmarks_for_box(image, (x - half, y - half, x + half, y + half))
        moves.append(float(np.linalg.norm(refit - landmarks, axis=1).mean()))
    return float(np.mean(moves)) / _eye_distance(landmarks)


def _region_mask(shape: tuple[int, int], points: np.ndarray) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(points).astype(np.int32)), 1)
    return mask > 0


def face_evidence(image: np.ndarray, landmarks: np.ndarray) -> tuple[float, float]:
    """(skin share at cheeks and nose, eye contrast) of a fitted face, from its pixels.

    Skin is judged on chroma only (YCrCb), so it holds across skin tones; a mask over the cheeks
    fails it. Eye contrast is how much darker the eyes are than the cheeks, in units of the face's
    luminance spread: eyes are dark on every face, and on no wall. Works on the face's region only,
    at most ~96 px across, so the cost does not grow with the photo.
    """
    lm = np.asarray(landmarks, np.float64)
    h, w = image.shape[:2]
    x0, y0 = np.floor(lm.min(axis=0)).astype(int)
    x1, y1 = np.ceil(lm.max(axis=0)).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 - x0 < 4 or y1 - y0 < 4:
        return 0.0, 0.0
    step = max(1, int(max(x1 - x0, y1 - y0) // 96))
    region = np.ascontiguousarray(image[y0:y1:step, x0:x1:step])
    if region.ndim == 2:
        region = cv2.cvtColor(region, cv2.COLOR_GRAY2RGB)
    pts = (lm - [x0, y0]) / step
    ycc = cv2.cvtColor(region, cv2.COLOR_RGB2YCrCb)
    cheeks_nose = _region_mask(region.shape[:2], pts[[1, 2, 3, 13, 14, 15, 29, 30, 31, 35]])
    cr, cb = ycc[..., 1][cheeks_nose], ycc[..., 2][cheeks_nose]
    skin = float(((cr >= 133) & (cr <= 178) & (cb >= 77) & (cb <= 130)).mean()) if cr.size else 0.0
    luma = ycc[..., 0].astype(np.float32)
    eyes = _region_mask(region.shape[:2], pts[RIGHT_EYE]) | _region_mask(region.shape[:2], pts[LEFT_EYE])
    cheeks = (_region_mask(region.shape[:2], pts[[1, 2, 3, 31, 48]])
              | _region_mask(region.shape[:2], pts[[13, 14, 15, 35, 54]]))
    if not eyes.any() or not cheeks.any():
        return skin, 0.0
    contrast = (float(luma[cheeks].mean()) - float(luma[eyes].mean())) / (float(luma.std()) + 1.0)
    return skin, contrast


def _face_from_landmarks(lm: np.ndarray, box: tuple[float, ...], w: int, h: int, score: float,
                         model: str, upsample: int, found_by: str) -> Face:
    roll, yaw = pose_from_landmarks(lm)
    return Face(box=_clip_box(tuple(box), w, h), score=float(score), landmarks=lm, roll=roll, yaw=yaw,
                model=model, upsample=upsample, found_by=found_by)


def settle_landmarks(image: np.ndarray, landmarks: np.ndarray, rounds: int,
                     settled: float = 0.0) -> tuple[np.ndarray, float]:
    """Refit up to ``rounds`` times, each from the box the last landmarks imply, stopping once a
    refit moves them less than ``settled`` (of the eye distance; each refit is a shape fit);
    returns the landmarks and how far the last refit moved them (mean, of the eye distance;
    inf without a refit)."""
    lm, drift = landmarks, float("inf")
    for _ in range(max(0, rounds)):
        refit = landmarks_for_box(image, box_from_landmarks(lm))
        drift = float(np.linalg.norm(refit - lm, axis=1).mean()) / _eye_distance(refit)
        lm = refit
        if drift < settled:
            break
    return lm, drift


def _crop_face_box(h: int, w: int) -> tuple[float, float, float, float]:
    return (CROP_FACE_BOX[0] * w, CROP_FACE_BOX[1] * h, CROP_FACE_BOX[2] * w, CROP_FACE_BOX[3] * h)


def crop_landmarks(image: np.ndarray, rounds: int = CROP_FIT_ROUNDS) -> tuple[np.ndarray, float]:
    """The landmarks of the whole image taken as a tight face crop, unjudged: fitted in the usual
    face box of such crops, then refitted ``rounds - 1`` times from the box they imply; returns them
    and how far the last refit moved them (:func:`settle_landmarks`)."""
    h, w = image.shape[:2]
    return settle_landmarks(image, landmarks_for_box(image, _crop_face_box(h, w)), rounds - 1)


def fit_crop(image: np.ndarray, rounds: int = CROP_FIT_ROUNDS) -> CropFit:
    """Treat the whole image as a tight face crop: landmarks fitted in the usual face box of such
    crops, then refitted from the box they imply until they settle; judged on shape and pixels,
    and a plausible fit that is not settled is shown to HOG (:func:`hog_check`)."""
    image = _as_dlib_image(image)
    h, w = image.shape[:2]
    lm, drift = crop_landmarks(image, rounds)
    box = box_from_landmarks(lm) if rounds > 1 else _crop_face_box(h, w)
    reason = shape_reason(lm)
    skin, contrast = face_evidence(image, lm) if reason is None else (0.0, 0.0)
    if reason is None and skin < MIN_SKIN:
        reason = "no skin at cheeks and nose"
    face = _face_from_landmarks(lm, box, w, h, 0.0, "crop", 0, "crop fit")
    fill = float(np.linalg.norm(lm[JAW_LEFT] - lm[JAW_RIGHT])) / w
    fit = CropFit(face, drift, skin, contrast, reason, fill, shape=(h, w))
    if reason is None and not fit.settled and max(h, w) <= CROP_NO_SEARCH_SIDE:
        # plausible, yet unsure: ask HOG (~3 ms); only a small crop's fit may count on it
        fit = replace(fit, hog_score=hog_check(image, lm))
    return fit


def _hog_gray(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image


def _hog_hits(small: np.ndarray, threshold: float) -> list[tuple[tuple[float, ...], float]]:
    """HOG at upsample 0 on a small copy: ((left, top, right, bottom), score) in its pixels."""
    rects, scores, _ = _model("hog").run(np.ascontiguousarray(small), 0, threshold)
    return [((r.left(), r.top(), r.right() + 1, r.bottom() + 1), float(s)) for r, s in zip(rects, scores)]


def hog_check(image: np.ndarray, landmarks: np.ndarray) -> float:
    """HOG's best score for a face where these landmarks are (-inf: none above -2).

    HOG runs once, at upsample 0, on a copy framed on the face (VERIFY_SIDE px across, padded by
    VERIFY_PAD of it with the border replicated); only hits centred near the face count. A cheap
    second look at a crop fit: HOG scores a face it would miss in a full search (a tight crop,
    a turned head) at -1 and up, and the patches the shape predictor draws a face on far lower.
    """
    left, top, right, bottom = box_from_landmarks(landmarks)
    side = max(right - left, 1e-6)
    k = VERIFY_SIDE / side
    x0, y0 = left - VERIFY_PAD * side, top - VERIFY_PAD * side
    n = int(round((1 + 2 * VERIFY_PAD) * VERIFY_SIDE))
    matrix = np.array([[k, 0, -x0 * k], [0, k, -y0 * k]], np.float64)
    small = cv2.warpAffine(_hog_gray(image), matrix, (n, n), borderMode=cv2.BORDER_REPLICATE,
                           flags=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR)
    centre, reach = n / 2, 0.25 * VERIFY_SIDE
    near = [score for (l, t, r, b), score in _hog_hits(small, -2.0)
            if abs((l + r) / 2 - centre) < reach and abs((t + b) / 2 - centre) < reach]
    return max(near, default=float("-inf"))


def quick_look(image: np.ndarray, min_score: float = DEFAULT_MIN_SCORE) -> list[Face]:
    """Faces that fill most of the image (~50-100 % of its longer side), for a few CPU-ms.

    HOG at upsample 0 on a copy QUICK_SIDE px long, padded by QUICK_PAD of it (replicated
    border: a tight crop lacks the brow and chin around the face HOG's window expects); hits
    scoring from ``min_score - QUICK_SCORE_DROP``, landmarks fitted at full resolution.
    Unchecked: :func:`find_faces` settles and checks every hit; when one is a face, it searches
    further only in a photo over CROP_NO_SEARCH_SIDE px that the face does not dominate.
    """
    image = _as_dlib_image(image)
    h, w = image.shape[:2]
    k = QUICK_SIDE / max(h, w)
    small = cv2.resize(_hog_gray(image), (max(1, round(w * k)), max(1, round(h * k))),
                       interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR)
    pad = int(round(QUICK_PAD * QUICK_SIDE))
    small = cv2.copyMakeBorder(small, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    faces = []
    for (left, top, right, bottom), score in _hog_hits(small, min_score - QUICK_SCORE_DROP):
        full = ((left - pad) / k, (top - pad) / k, (right - pad) / k, (bottom - pad) / k)
        lm = landmarks_for_box(image, full)
        faces.append(_face_from_landmarks(lm, full, w, h, score, "hog", 0, "quick look"))
    return faces


def is_crop_shaped(height: int, width: int) -> bool:
    """Whether an image has the proportions of a face crop (the crop fit is tried on those only)."""
    return height > 0 and CROP_ASPECT[0] <= width / height <= CROP_ASPECT[1]


def _second_opinion(image: np.ndarray) -> list[Face]:
    """dlib's CNN (mmod) on a copy of the image SECOND_OPINION_SIDE px long: faces HOG misses in
    tight crops (no head around the face), at a cost that does not grow with the photo."""
    h, w = image.shape[:2]
    k = SECOND_OPINION_SIDE / max(h, w)
    small = cv2.resize(image, (max(1, round(w * k)), max(1, round(h * k))),
                       interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR)
    faces = []
    for (left, top, right, bottom), score in _run_detector("cnn", np.ascontiguousarray(small), 0):
        if score < SECOND_OPINION_MIN_SCORE:
            continue
        full = (left / k, top / k, right / k, bottom / k)
        # mmod frames a face tighter than the HOG boxes the shape predictor was trained on: refit
        # from the box the landmarks imply until they settle (a frontal face fitted in the CNN's
        # box alone measures as turned)
        lm, _ = settle_landmarks(image, landmarks_for_box(image, full), CROP_FIT_ROUNDS - 1)
        faces.append(_face_from_landmarks(lm, full, w, h, score, "cnn", 0, "second opinion"))
    return faces


def detection_reason(image: np.ndarray, face: Face) -> str | None:
    """Why a detector hit is not a face, whatever its score, or None: its landmarks do not form a
    face, or the pixels show neither skin nor eyes and the fit wanders when refitted."""
    reason = shape_reason(face.landmarks)
    if reason is not None:
        return reason
    skin, eyes = face_evidence(image, face.landmarks)
    if skin + eyes / 2 < MIN_EVIDENCE and fit_instability(image, face.landmarks) > MAX_INSTABILITY:
        return "unstable landmark fit"
    return None


def _verify(image: np.ndarray, faces: list[Face], stability: bool) -> tuple[list[Face], list[tuple[Face, str]]]:
    good, rejected = [], []
    for face in faces:
        reason = detection_reason(image, face) if stability else shape_reason(face.landmarks)
        if reason is None:
            good.append(face)
        else:
            rejected.append((face, reason))
    return good, rejected


def _verify_quick(image: np.ndarray, faces: list[Face]) -> tuple[list[Face], list[tuple[Face, str]], bool]:
    """The quick look's hits: (faces, rejected, whether some were unsure).

    HOG places its box roughly on a low-resolution copy, so the landmarks are refitted from the
    box they imply until they settle (a fit in a misplaced box measures a frontal face as
    turned); a hit whose fit keeps wandering is left to the crop fit. A settled hit is a face
    when its landmarks form one and its pixels show skin or eyes; one with too little of either
    is unsure (a masked face, or the demo's suit patch): the full search and its check decide.
    """
    h, w = image.shape[:2]
    good, rejected, unsure = [], [], False
    for face in faces:
        reason = shape_reason(face.landmarks)
        if reason is not None:
            rejected.append((face, reason))
            continue
        lm, drift = settle_landmarks(image, face.landmarks, CROP_FIT_ROUNDS - 1, settled=CONFIDENT_DRIFT)
        if drift >= QUICK_MAX_DRIFT or shape_reason(lm) is not None:
            continue
        skin, eyes = face_evidence(image, lm)
        if skin + eyes / 2 >= MIN_EVIDENCE:
            good.append(_face_from_landmarks(lm, box_from_landmarks(lm), w, h, face.score, "hog", 0,
                                             "quick look"))
        else:
            unsure = True
    return good, rejected, unsure


def find_faces(image: np.ndarray, model: str = "hog", min_score: float = DEFAULT_MIN_SCORE,
               upsample: int | None = None, max_side: int = DEFAULT_MAX_SIDE, min_size: float = 0.0,
               crops: str = "auto", second_opinion: bool = True) -> FaceSearch:
    """The faces in an RGB uint8 image, as every stage finds them: detected, crops, checked.

    Cheap looks first, the full search only where they are unsure:

    1. A crop-shaped image (HOG only) gets the :func:`quick_look`: faces filling most of it. One
       found ends the search in a crop up to CROP_NO_SEARCH_SIDE px or where it dominates the
       image; otherwise HOG adds the other faces, down to ``min_size`` (:func:`other_faces_plan`:
       the full search, or a coarser copy where ``min_size`` leaves HOG's smallest faces unused).
    2. Nothing there in a small crop (<= CROP_FAST_SIDE px): it is fitted as a face crop
       (:func:`fit_crop`); a confident fit (settled, or plausible and confirmed by
       :func:`hog_check`) is the face. Crops up to CROP_NO_SEARCH_SIDE px skip the full search
       (unless the quick look saw a face it was unsure of), and get the CNN second opinion (3.)
       only when the fit is plausible, yet unconfirmed.
    3. Otherwise :func:`detect_faces` searches (same ``model``, ``min_score``, ``upsample``,
       ``max_side``, ``min_size``); nothing found in an image up to SMALL_SIDE px: dlib's CNN
       gives a second opinion on a small copy (``second_opinion``; HOG only).
    4. Still nothing in a crop-shaped image: a confident crop fit of any size is the face;
       ``crops="assume"`` also takes a merely plausible one (shape and skin: ``--assume-crop``).

    Every detector hit must have landmarks that form a face, with skin or eyes in its pixels or
    a fit that stays put when refitted (:func:`detection_reason`), whatever its score: the rest
    are ``rejected``. ``crops="off"`` skips steps 1, 2 and 4.
    """
    if crops not in ("auto", "assume", "off"):
        raise ValueError(f"crops must be auto, assume or off, not {crops!r}")
    image = _as_dlib_image(image)
    h, w = image.shape[:2]
    crop_shaped = crops != "off" and is_crop_shaped(h, w)
    fit = None
    quick: list[Face] = []
    rejected: list[tuple[Face, str]] = []
    search = True
    if crop_shaped and model == "hog":
        quick, rejected, unsure = _verify_quick(image, quick_look(image, min_score))
        if quick and (max(h, w) <= CROP_NO_SEARCH_SIDE or _dominates(quick, h, w)):
            return FaceSearch(_largest_first(quick), rejected)
        # (a bigger photo may hold smaller faces beside the quick look's: searched below)
        if not quick and max(h, w) <= CROP_FAST_SIDE:
            fit = fit_crop(image)
            if fit.confident:
                return FaceSearch([fit.face], rejected)
            # a crop this small holds no face the quick look and the fit could not see, but a
            # turned one: only the CNN, and only where the fit saw a plausible face
            search = unsure or max(h, w) > CROP_NO_SEARCH_SIDE
            second_opinion = second_opinion and (search or fit.reason is None)
    good = quick
    if search:
        if quick:   # the faces beside the quick look's (it is not fitted again)
            found = _other_faces(image, quick, min_score, upsample, max_side, min_size)
        else:
            found = detect_faces(image, model=model, min_score=min_score, upsample=upsample,
                                 max_side=max_side, min_size=min_size)
        searched, search_rejected = _verify(image, found, stability=True)
        good = quick + searched
        # without a quick-look face, the search judges what it finds, the quick look's unsure
        # hits included, with the full check: its verdicts replace the quick look's
        rejected = rejected + search_rejected if quick else search_rejected
    if not good and second_opinion and model == "hog" and max(h, w) <= SMALL_SIDE:
        good, more_rejected = _verify(image, _second_opinion(image), stability=False)
        rejected += more_rejected
    if not good and crop_shaped:
        fit = fit or fit_crop(image)
        if fit.confident:
            good = [fit.face]
        elif crops == "assume" and fit.reason is None:
            good = [replace(fit.face, found_by="assumed crop")]
    return FaceSearch(_largest_first(good), rejected)


def other_faces_plan(height: int, width: int, upsample: int | None = None,
                     max_side: int = DEFAULT_MAX_SIDE, min_size: float = 0.0) -> tuple[int | None, int]:
    """(upsample, max_side) of the search for the other faces of a photo where the quick look
    found one: :func:`search_plan`'s (``upsample`` and ``max_side`` as given), unless ``min_size``
    is larger than the smallest face its first pass sees; then a coarser copy, where HOG's window
    is ``min_size``. Never coarser than ``min_size``: a face beside a big one is as wanted as a
    face alone (a fixed share of the big face lost 50-65 px faces beside a 280 px one)."""
    scale, passes = search_plan(height, width, upsample, max_side)
    zoom = HOG_WINDOW / max(min_size, 1.0)
    if upsample is not None or zoom >= scale * 2 ** passes[0]:
        return upsample, max_side   # the full search: every face it can see is wanted
    longer = max(height, width)
    if zoom > 1.0:   # dlib's upsampling doubles: search a copy zoom / 2 of the photo, upsampled once
        return 1, max(1, min(longer, int(round(longer * zoom / 2))))
    return 0, max(1, int(round(longer * zoom)))


def _other_faces(image: np.ndarray, quick: list[Face], min_score: float, upsample: int | None,
                 max_side: int, min_size: float) -> list[Face]:
    """HOG faces of a photo where the quick look found ``quick``, searched as
    :func:`other_faces_plan` says; a hit on a quick-look face is not fitted again."""
    h, w = image.shape[:2]
    up, longer = other_faces_plan(h, w, upsample, max_side, min_size)
    found, used = _detections(image, "hog", min_score, up, longer, min_size)
    found = [d for d in found if not any(_boxes_overlap(_clip_box(d[0], w, h), q.box) for q in quick)]
    return _fit_detections(image, found, "hog", used)


def _area(box: tuple[float, ...]) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def _dominates(faces: list[Face], h: int, w: int) -> bool:
    """Whether the largest face fills most of the image (no room left for another worth masking)."""
    return max(_area(f.box) for f in faces) >= QUICK_DOMINANT_AREA * h * w


def _boxes_overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    """Two finds of one face: the boxes overlap by more than a third of the smaller."""
    ix = min(a[2], b[2]) - max(a[0], b[0])
    iy = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(0, ix) * max(0, iy)
    return inter > min(_area(a), _area(b)) / 3


def _largest_first(faces: list[Face]) -> list[Face]:
    return sorted(faces, key=lambda f: (-_area(f.box), f.box[0], f.box[1]))


# ------------------------------------------------------------------------------------------------
# Alignment

DEFAULT_ALIGN_SIZE = 256
DEFAULT_MARGIN = 0.25


def alignment_matrix(landmarks: np.ndarray, size: int = DEFAULT_ALIGN_SIZE,
                     margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """The 2x3 similarity transform (source -> crop) that puts a face upright in a size x size crop.

    The eye line is made level; the landmarks' extent (eyebrows to chin, jaw to jaw) measured in
    that level frame is made square, centred, and padded by ``margin`` of its side on every side.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    roll, _ = pose_from_landmarks(lm)
    theta = math.radians(-roll)           # rotate the eye line back to horizontal
    c, s = math.cos(theta), math.sin(theta)
    rot = np.array([[c, -s], [s, c]])
    level = lm @ rot.T
    lo, hi = level.min(axis=0), level.max(axis=0)
    side = float(max(hi - lo)) * (1.0 + 2.0 * margin)
    side = max(side, 1e-3)
    k = size / side
    center = (lo + hi) / 2.0
    # crop = k * rot @ p + t, with the level-frame centre landing at the crop centre
    t = np.array([size / 2.0, size / 2.0]) - k * center
    return np.hstack([k * rot, t[:, None]]).astype(np.float64)


def align_face(image: np.ndarray, face: Face | np.ndarray, size: int = DEFAULT_ALIGN_SIZE,
               margin: float = DEFAULT_MARGIN) -> tuple[np.ndarray, np.ndarray]:
    """An upright crop of one face and the 2x3 affine (source -> crop) that made it.

    ``face`` is a :class:`Face` or its (68, 2) landmarks. The crop is ``size`` x ``size`` with the
    eyes level and ``margin`` (a fraction of the face's extent) around the landmarks; parts outside
    the photo are filled by mirroring its border. Map points with :func:`transform_points`.
    """
    if size < 8:
        raise ValueError(f"crop size must be at least 8 px, got {size}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    landmarks = face.landmarks if isinstance(face, Face) else face
    matrix = alignment_matrix(landmarks, size, margin)
    k = math.hypot(matrix[0, 0], matrix[1, 0])
    # Work on the part of the photo the crop covers only: blurring a whole large photo per face
    # would cost more than the detection. Reflection at a clipped edge is the photo's own edge.
    h, w = image.shape[:2]
    inverse = cv2.invertAffineTransform(matrix)
    corners = transform_points(np.array([[0, 0], [size, 0], [0, size], [size, size]]), inverse)
    x0, y0 = np.floor(corners.min(axis=0)).astype(int) - 2
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + 2
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 - x0 < 2 or y1 - y0 < 2:   # the face lies outside the photo: use the whole photo
        x0, y0, x1, y1 = 0, 0, w, h
    region = np.ascontiguousarray(image[y0:y1, x0:x1])
    local = matrix.copy()
    local[:, 2] += matrix[:, :2] @ np.array([x0, y0], dtype=np.float64)
    if k < 0.5:   # shrinking a lot: low-pass first so the warp does not alias
        sigma = 0.25 / k
        region = cv2.GaussianBlur(region, (0, 0), sigmaX=sigma, sigmaY=sigma)
    crop = cv2.warpAffine(region, local, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT_101)
    return crop, matrix


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine to (N, 2) points; returns float32."""
    pts = np.asarray(points, dtype=np.float64)
    return (pts @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# The stage: one photo in, one aligned crop per face out

STAGE = "detect"


def _check_settings(model: str, min_score: float, upsample: int | None, max_side: int, size: int,
                    margin: float) -> None:
    if model not in MODELS:
        raise ValueError(f"unknown face model {model!r}: choose one of {', '.join(MODELS)}")
    if upsample is not None and not 0 <= upsample <= 4:
        raise ValueError(f"upsample must be 0-4 (each step costs 4x), got {upsample}")
    if max_side < 0:
        raise ValueError(f"max_side must be >= 0 (0 = search at full size), got {max_side}")
    if size < 8:
        raise ValueError(f"crop size must be at least 8 px, got {size}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    if not math.isfinite(min_score):
        raise ValueError(f"min_score must be a number, got {min_score}")


def face_record(face: Face, matrix: np.ndarray, index: int, count: int) -> dict[str, Any]:
    """The manifest ``info`` of one crop: the face in source pixels, its landmarks in the crop, the map."""
    info = face.to_dict()
    info.update(
        face_index=index,
        faces_in_image=count,
        landmarks_crop=np.round(transform_points(face.landmarks, matrix).astype(np.float64), 2).tolist(),
        matrix=np.round(matrix, 6).tolist(),
    )
    return info


def process(job: Job) -> list[Produced]:
    """Stage function for the shared runner: detect, then one aligned crop per face."""
    from maskprep.images import read_image
    from maskprep.runner import Produced, SkipImage, output_rel

    p = job.params
    image = read_image(job.source)
    search = find_faces(image, model=p["model"], min_score=p["min_score"], upsample=p["upsample"],
                        max_side=p["max_side"])
    faces = search.faces
    h, w = image.shape[:2]
    rejected = [dict(f.to_dict(), reason=why) for f, why in search.rejected]
    if not faces:
        scale, passes = search_plan(h, w, p["upsample"], p["max_side"])
        raise SkipImage(search.reason, {"image_size": [w, h], "search_scale": round(scale, 4),
                                        "upsample": passes, **({"rejected": rejected} if rejected else {})})
    produced = [Produced(rel="", data=b"", status="skipped", reason="not a face", info={"face": r})
                for r in rejected]   # one record per false face the check refused, with why
    for k, face in enumerate(faces, start=1):
        crop, matrix = align_face(image, face, size=p["size"], margin=p["margin"])
        info = face_record(face, matrix, k, len(faces))
        info["image_size"] = [w, h]
        info["crop_size"] = [int(crop.shape[1]), int(crop.shape[0])]
        produced.append(Produced(rel=output_rel(job, f"face{k}"), data=crop, variant=f"face{k}",
                                 info=info))
    return produced


def detect_tree(input_dir: str | os.PathLike, output_dir: str | os.PathLike,
                model: str = "hog", min_score: float = DEFAULT_MIN_SCORE, upsample: int | None = None,
                max_side: int = DEFAULT_MAX_SIDE, size: int = DEFAULT_ALIGN_SIZE,
                margin: float = DEFAULT_MARGIN, seed: int = 0, workers: int | None = None,
                overwrite: bool = False, resume: bool = False, jpeg_quality: int = 95,
                progress: bool | None = None) -> Summary:
    """Write an aligned crop of every face under ``input_dir`` to ``output_dir`` (a mirrored tree).

    Same defaults as ``maskprep detect``: ``<stem>__face<k>.<ext>`` per face (k = 1 for the largest),
    one manifest record per face with box, score, landmarks (source and crop pixels), pose, how it
    was found and the source->crop affine; photos without a face are recorded as skipped with
    reason ``no face`` (``not a face`` when the candidates failed the plausibility check).
    Raises ValueError for a bad setting and :class:`maskprep.runner.RunError` for bad folders.
    """
    from maskprep.runner import run_stage

    _check_settings(model, min_score, upsample, max_side, size, margin)
    params = {"model": model, "min_score": float(min_score), "upsample": upsample,
              "max_side": int(max_side), "size": int(size), "margin": float(margin)}
    return run_stage(STAGE, input_dir, output_dir, process, params=params, seed=seed, workers=workers,
                     overwrite=overwrite, resume=resume, jpeg_quality=jpeg_quality, progress=progress)
