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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

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
      dim faces HOG misses, but about 100x slower on CPU).
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

    faces = []
    for (left, top, right, bottom), score in found:
        full_box = (left / scale, top / scale, right / scale, bottom / scale)
        box = _clip_box(full_box, w, h)
        if box[2] - box[0] < 2 or box[3] - box[1] < 2:
            continue
        # The predictor starts from the box: give it the unclipped one for faces cut by the border.
        lm = landmarks_for_box(image, full_box)
        roll, yaw = pose_from_landmarks(lm)
        faces.append(Face(box=box, score=float(score), landmarks=lm, roll=roll, yaw=yaw,
                          model=model, upsample=used))
    faces.sort(key=lambda f: (-(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]), f.box[0], f.box[1]))
    return faces


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
    faces = detect_faces(image, model=p["model"], min_score=p["min_score"], upsample=p["upsample"],
                         max_side=p["max_side"])
    h, w = image.shape[:2]
    if not faces:
        scale, passes = search_plan(h, w, p["upsample"], p["max_side"])
        raise SkipImage("no face", {"image_size": [w, h], "search_scale": round(scale, 4),
                                    "upsample": passes})
    produced = []
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
    one manifest record per face with box, score, landmarks (source and crop pixels), pose and the
    source->crop affine; photos without a face are recorded as skipped with reason ``no face``.
    Raises ValueError for a bad setting and :class:`maskprep.runner.RunError` for bad folders.
    """
    from maskprep.runner import run_stage

    _check_settings(model, min_score, upsample, max_side, size, margin)
    params = {"model": model, "min_score": float(min_score), "upsample": upsample,
              "max_side": int(max_side), "size": int(size), "margin": float(margin)}
    return run_stage(STAGE, input_dir, output_dir, process, params=params, seed=seed, workers=workers,
                     overwrite=overwrite, resume=resume, jpeg_quality=jpeg_quality, progress=progress)
