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
        _MODELS["shape"] = dlib.shape_predictor(str(dlib_model_path("shape_predictor_5_face_landmarks.dat")))
        _MODELS["encoder"] = dlib.face_recognition_model_v1(
            str(dlib_model_path("dlib_face_recognition_resnet_model_v1.dat")))
    return _MODELS


def _detect_boxes(image: np.ndarray, max_side: int = 800) -> list[tuple[int, int, int, int]]:
    """Face boxes (l, t, r, b) from :func:`maskprep.faces.find_faces`, the finder every stage
    shares: tight crops are recognised and false faces refused as in ``detect`` and ``synth-masks``."""
    from maskprep.faces import box_from_landmarks, find_faces

    boxes = []
    for face in find_faces(image, max_side=max_side).faces:
        # a crop fit has no detector box: frame its landmarks the way the detector would
        box = face.box if face.found_by == "search" else box_from_landmarks(face.landmarks)
        boxes.append(tuple(int(round(v)) for v in box))
    return boxes


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
