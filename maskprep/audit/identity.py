"""Same person on both sides of a split: 128-d dlib face descriptors, distance below 0.6.

Opt-in (``--identity``): detection plus one descriptor per face costs about 0.5-1.5 s per photo on one
core (docs/audit.md: 28 photos, 49 faces in 13-21 s with 2 workers).
Models are loaded lazily, once per process, never at import time.
"""
from __future__ import annotations

from typing import Any

import numpy as np

SAME_PERSON_DISTANCE = 0.6   # dlib's own threshold for its face recognition model (99.38% on LFW)
_MODELS: dict[str, Any] = {}


def _models() -> dict[str, Any]:
    if not _MODELS:
        import dlib

        from maskprep.resources import dlib_model_path
        _MODELS["detector"] = dlib.get_frontal_face_detector()
        _MODELS["shape"] = dlib.shape_predictor(str(dlib_model_path("shape_predictor_5_face_landmarks.dat")))
        _MODELS["encoder"] = dlib.face_recognition_model_v1(
            str(dlib_model_path("dlib_face_recognition_resnet_model_v1.dat")))
    return _MODELS


def _detect_boxes(image: np.ndarray, max_side: int = 800) -> list[tuple[int, int, int, int]]:
    """Face boxes (l, t, r, b): maskprep.faces when it is installed, dlib's HOG detector otherwise."""
    try:
        from maskprep.faces import detect_faces
    except ImportError:
        detect_faces = None
    if detect_faces is not None:
        return [tuple(int(v) for v in f.box) for f in detect_faces(image, model="hog", max_side=max_side)]
    import cv2
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    small = image if scale == 1.0 else cv2.resize(image, (round(w * scale), round(h * scale)),
                                                  interpolation=cv2.INTER_AREA)
    # Small pictures (tight face crops) need one upsampling for the HOG detector to see the face.
    upsample = 1 if max(small.shape[:2]) < 500 else 0
    rects = _models()["detector"](small, upsample)
    return [(int(r.left() / scale), int(r.top() / scale), int(r.right() / scale), int(r.bottom() / scale))
            for r in rects]


def face_descriptors(image: np.ndarray) -> tuple[list[tuple[int, int, int, int]], np.ndarray]:
    """``(boxes, descriptors)`` for every face found in an RGB uint8 image; descriptors are (k, 128) float32."""
    import dlib
    boxes = _detect_boxes(image)
    models = _models()
    rgb = np.ascontiguousarray(image)
    out = []
    for l, t, r, b in boxes:
        shape = models["shape"](rgb, dlib.rectangle(l, t, r, b))
        out.append(np.asarray(models["encoder"].compute_face_descriptor(rgb, shape), dtype=np.float32))
    desc = np.stack(out) if out else np.zeros((0, 128), dtype=np.float32)
    return boxes, desc


def same_person_pairs(descriptors: np.ndarray, owners: np.ndarray,
                      threshold: float = SAME_PERSON_DISTANCE) -> list[tuple[int, int, float]]:
    """Face index pairs ``(a, b, distance)`` closer than ``threshold``, skipping faces of one image."""
    n = len(descriptors)
    pairs = []
    block = 2048
    sq = (descriptors.astype(np.float64) ** 2).sum(1)
    for s in range(0, n, block):
        e = min(n, s + block)
        d2 = sq[s:e, None] + sq[None, :] - 2.0 * descriptors[s:e].astype(np.float64) @ descriptors.T
        d = np.sqrt(np.maximum(d2, 0.0))
        ii, jj = np.nonzero(d < threshold)
        for a, b in zip(ii + s, jj):
            if a < b and owners[a] != owners[b]:
                pairs.append((int(a), int(b), float(d[a - s, b])))
    return pairs
