"""64-bit perceptual hashes (pHash, dHash), flip-aware, robust to resizing, recompression and letterboxing.

A hash is a Python ``int`` in ``0 .. 2**64-1`` (stored as ``numpy.uint64`` in arrays). Each image gets a hash
of itself and of its mirror image, so a horizontally flipped copy is found by comparing one image's hash
with the other's mirrored hash. Uniform borders (black letterbox bars, white margins) are trimmed first, so
a letterboxed rescale of a photo hashes like the photo.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

HASH_BITS = 64
# A border row/column counts as "uniform" when its pixels stay within this many grey levels of the edge.
_BORDER_TOLERANCE = 12
# Masked-copy detection hashes the picture with its lower-central part (where a mask goes) blanked out.
MASK_REGION = (0.12, 0.40, 0.88, 1.0)  # x0, y0, x1, y1 as fractions of the (trimmed) image


def to_gray(image: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) or gray (H, W) -> gray uint8."""
    if image.ndim == 2:
        return image
    return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)


def shrink(gray: np.ndarray, max_side: int = 256) -> np.ndarray:
    """Downscale (area averaging) so the longer side is at most ``max_side``; hashes only need a thumbnail."""
    h, w = gray.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1.0:
        return gray
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA)


def trim_uniform_border(gray: np.ndarray, tolerance: int = _BORDER_TOLERANCE,
                        min_keep: float = 0.3) -> np.ndarray:
    """Cut uniform bars off the four edges (letterbox/pillarbox, flat margins).

    A bar is removed only while it is uniform along its whole length; if trimming would keep less than
    ``min_keep`` of either side, the image is returned as it is (a flat image has nothing to trim to).
    """
    h, w = gray.shape
    if h < 8 or w < 8:
        return gray
    g = gray.astype(np.int16)

    def uniform(line: np.ndarray, ref: int) -> bool:
        return int(np.abs(line - ref).max()) <= tolerance

    top, bottom, left, right = 0, h, 0, w
    ref = int(np.median(g[0]))
    while top < bottom - 1 and uniform(g[top, left:right], ref):
        top += 1
    ref = int(np.median(g[h - 1]))
    while bottom - 1 > top and uniform(g[bottom - 1, left:right], ref):
        bottom -= 1
    ref = int(np.median(g[top:bottom, 0]))
    while left < right - 1 and uniform(g[top:bottom, left], ref):
        left += 1
    ref = int(np.median(g[top:bottom, w - 1]))
    while right - 1 > left and uniform(g[top:bottom, right - 1], ref):
        right -= 1
    if (bottom - top) < min_keep * h or (right - left) < min_keep * w:
        return gray
    return gray[top:bottom, left:right]


def _bits_to_int(bits: np.ndarray) -> int:
    return int.from_bytes(np.packbits(bits.astype(np.uint8).ravel()).tobytes(), "big")


def _phash32(small: np.ndarray) -> int:
    low = cv2.dct(np.ascontiguousarray(small, dtype=np.float32))[:8, :8]
    return _bits_to_int(low > np.median(low))


def phash(gray: np.ndarray) -> int:
    """64-bit DCT hash: low 8x8 frequencies of a 32x32 thumbnail, each compared with their median."""
    return _phash32(cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA))


def dhash(gray: np.ndarray) -> int:
    """64-bit gradient hash: is each pixel of a 9x8 thumbnail brighter than its right neighbour."""
    small = cv2.resize(gray, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    return _bits_to_int(small[:, :-1] > small[:, 1:])


def blank_mask_region(gray: np.ndarray, region: tuple[float, float, float, float] = MASK_REGION) -> np.ndarray:
    """The picture with the lower-central area (where a face mask sits on a face crop) set to mid grey."""
    h, w = gray.shape
    x0, y0, x1, y1 = region
    out = gray.copy()
    out[int(y0 * h):max(int(y1 * h), int(y0 * h) + 1), int(x0 * w):max(int(x1 * w), int(x0 * w) + 1)] = 128
    return out


@dataclass(frozen=True)
class ImageHashes:
    """All hashes of one image. ``*_flip`` are the hashes of the mirror image."""

    phash: int
    phash_flip: int
    dhash: int
    dhash_flip: int
    masked: int        # pHash with the lower-central region blanked (finds masked copies of face crops)
    masked_flip: int
    top: int           # pHash of the upper 40 % (forehead and eyes on a face crop)

    def as_dict(self) -> dict[str, str]:
        return {k: f"{getattr(self, k):016x}" for k in self.__dataclass_fields__}


def prepare(image: np.ndarray) -> np.ndarray:
    """The grey, downscaled (longer side <= 256), border-trimmed picture every hash is computed on."""
    return trim_uniform_border(shrink(to_gray(image)))


def compute_hashes(image: np.ndarray) -> ImageHashes:
    """Every hash the audit uses, from one RGB (or gray) uint8 image."""
    return hashes_of_prepared(prepare(image))


def hashes_of_prepared(gray: np.ndarray) -> ImageHashes:
    """:func:`compute_hashes` on a picture already passed through :func:`prepare`."""
    # One 32x32 thumbnail serves the whole-picture, mirrored and blanked hashes (area resizing commutes
    # with mirroring, and blanking a region of the thumbnail is blanking it in the picture).
    small = cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    mirrored = small[:, ::-1]
    masked = blank_mask_region(small)
    top = gray[: max(1, int(round(gray.shape[0] * MASK_REGION[1]))), :]
    return ImageHashes(
        phash=_phash32(small), phash_flip=_phash32(mirrored),
        dhash=dhash(gray), dhash_flip=dhash(np.ascontiguousarray(gray[:, ::-1])),
        masked=_phash32(masked), masked_flip=_phash32(masked[:, ::-1]),
        top=phash(top),
    )


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two 64-bit hashes."""
    return (int(a) ^ int(b)).bit_count()
