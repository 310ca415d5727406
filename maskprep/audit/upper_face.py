"""Where a mask may sit on a face, from dlib's 68 landmarks: for the check of a face crop masked up to the
eyes (:func:`maskprep.audit.geometry.confirm_by_landmarks`).

A painted mask that reaches the eyes covers more than the fixed lower-central area
(``hashing.MASK_REGION``) the other checks leave out, so two views of one photo, aligned, correlate
poorly there and the pair is rejected. The landmarks of the face say where a mask sits on *that*
face: the lower face, from the jaw up to the lower eyelids and the nose bridge. Everything else (eyes,
brows, forehead, hair, background) must agree pixel for pixel in a copy of one photo; a different
photo of the same person differs there in pose, expression, hair and background.

The landmarks come from :mod:`maskprep.faces` (read-only use of its public functions): HOG's quick look,
or, where it sees no face (a masked face, often), the face-crop fit. A bad fit makes the excluded
area wrong, which lowers the correlation of a real copy and never raises that of two photos.
"""
from __future__ import annotations

import cv2
import numpy as np

from maskprep import faces

# iBUG-300W points around what a mask may cover: the jaw (1-15), the lower eyelids (40, 41 and 46, 47)
# and the nose bridge (28). A mirrored face maps this set onto itself, so mirroring the x coordinates
# of the landmarks is enough to use them on a mirrored view.
LOWER_FACE = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 28, 40, 41, 46, 47)
LOWER_FACE_GROW = 1.1       # the hull grown about its centre: straps and the mask's edge spill over
MIN_UPPER_AREA = 0.2        # share of a view left to compare outside the lower face; less is too little
FIT_ROUNDS = 2              # refits of the face-crop fit (faces.crop_landmarks)


def view_landmarks(view: np.ndarray) -> np.ndarray:
    """The 68 landmarks of the largest face of a grey view: HOG's quick look when it sees one, else the
    view fitted as a face crop (dlib places the eyes well on a masked face given the crop's box)."""
    found = faces.quick_look(view)
    if found:
        return found[0].landmarks
    return faces.crop_landmarks(view, FIT_ROUNDS + 1)[0]


def mirror_landmarks(landmarks: np.ndarray, width: int) -> np.ndarray:
    """Landmarks of the mirrored view (x flipped; LOWER_FACE is symmetric, so no re-indexing)."""
    out = np.array(landmarks, dtype=np.float32, copy=True)
    out[:, 0] = width - 1 - out[:, 0]
    return out


def lower_face_mask(shape: tuple[int, int], landmarks: np.ndarray) -> np.ndarray:
    """Bool mask of the lower face (where a mask may be painted), grown by LOWER_FACE_GROW."""
    pts = np.asarray(landmarks, np.float64)[list(LOWER_FACE)]
    centre = pts.mean(axis=0)
    pts = centre + (pts - centre) * LOWER_FACE_GROW
    out = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(out, cv2.convexHull(np.round(pts).astype(np.int32)), 1)
    return out > 0
