"""Put a fitted mask on a photo: piecewise-affine warp, alpha blending (after a contact shadow).

Pure functions on arrays. The warp maps every cell of the template's anchor grid onto the same
cell of the face grid (two triangles per cell) with one ``cv2.remap``, so there are no seams
between triangles. Blending is ``a*mask + (1-a)*face`` with a feathered alpha and never a
saturating add, so no output pixel leaves the range between the mask and the face it covers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import functools

import cv2
import numpy as np


@dataclass
class MaskLayer:
    """A rendered mask for one face, cropped to its bounding box at ``(x0, y0)`` in the image.

    ``alpha`` covers the mask and its loops; ``cover`` (None: same as alpha) only the mask body, the
    coverage --save-alpha writes. ``shadow`` (None: none) multiplies the face before blending: the
    contact shadow, <= 1 everywhere. ``params`` holds every random draw made to render it."""

    rgb: np.ndarray      # h x w x 3 float32, 0..255 (already shaded)
    alpha: np.ndarray    # h x w float32, 0..1
    x0: int
    y0: int
    shadow: np.ndarray | None = None
    cover: np.ndarray | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def coverage(self) -> np.ndarray:
        """Alpha of the mask body (without loops or straps)."""
        return self.alpha if self.cover is None else self.cover

    def full_alpha(self, shape: tuple[int, int]) -> np.ndarray:
        """The body's alpha pasted into an image-sized float32 array."""
        out = np.zeros(shape[:2], np.float32)
        h, w = self.alpha.shape
        out[self.y0:self.y0 + h, self.x0:self.x0 + w] = self.coverage
        return out


def quantile(values: np.ndarray, q: float) -> float:
    """``np.percentile(values, 100 * q)`` (linear interpolation, same result) by a partial sort:
    several times cheaper on the small arrays the render layers measure."""
    return quantiles(values, (q,))[0]


def quantiles(values: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    """:func:`quantile` at each of ``qs`` from one partial sort (the same numbers)."""
    flat = np.asarray(values).ravel()
    if flat.size == 0:
        raise ValueError("quantile of an empty array")
    spots = []
    for q in qs:
        pos = q * (flat.size - 1)
        lo = int(np.floor(pos))
        spots.append((lo, min(lo + 1, flat.size - 1), pos - lo))
    part = np.partition(flat, sorted({k for lo, hi, _ in spots for k in (lo, hi)}))
    return [float(part[lo] + (part[hi] - part[lo]) * f) for lo, hi, f in spots]


@functools.lru_cache(maxsize=16)
def _triangles(rows: int, cols: int) -> np.ndarray:
    """Index triples (into a flattened rows x cols grid), two triangles per cell."""
    tris = []
    for r in range(rows - 1):
        for c in range(cols - 1):
            a, b, d, e = r * cols + c, r * cols + c + 1, (r + 1) * cols + c, (r + 1) * cols + c + 1
            tris.append((a, b, e))
            tris.append((a, e, d))
    return np.asarray(tris, np.int32)


def warp_mesh(src: np.ndarray, src_grid: np.ndarray, dst_grid: np.ndarray,
              out_shape: tuple[int, int]) -> tuple[np.ndarray, int, int]:
    """Piecewise-affine warp of ``src`` (any channels) from ``src_grid`` to ``dst_grid``.

    Returns the warped pixels cropped to the destination grid's bounding box (clipped to
    ``out_shape``) and the crop's top-left ``(x0, y0)``. Outside the grid the last channel (alpha) is 0.
    Border pixels of ``src`` are replicated, so a template whose edge is transparent stays so.
    """
    dst = np.asarray(dst_grid, np.float64).reshape(-1, 2)
    height, width = out_shape[:2]
    x0 = int(np.clip(np.floor(dst[:, 0].min()) - 1, 0, width))
    y0 = int(np.clip(np.floor(dst[:, 1].min()) - 1, 0, height))
    x1 = int(np.clip(np.ceil(dst[:, 0].max()) + 2, 0, width))
    y1 = int(np.clip(np.ceil(dst[:, 1].max()) + 2, 0, height))
    channels = src.shape[2] if src.ndim == 3 else 1
    if x1 <= x0 or y1 <= y0:
        return np.zeros((0, 0, channels), src.dtype), x0, y0
    map_x, map_y, inside = mesh_maps(src_grid, dst_grid, (x0, y0, x1, y1))
    # Replicate the border for colour (no black pulled in), then clear the alpha (the last
    # channel) outside the grid.
    warped = cv2.remap(src, map_x, map_y, interpolation=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)
    if warped.ndim == 2:
        warped = warped[..., None]
    warped[..., -1] *= inside.astype(warped.dtype)
    return warped, x0, y0


COARSE_MAP_AREA = 40_000   # boxes at least this large get their maps every COARSE_STEP px, interpolated
COARSE_STEP = 2   # 4 left a jagged far side on turned heads (compressed columns)


@functools.lru_cache(maxsize=64)
def _pixel_centres(rows: int, cols: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) float32 planes of the render pixel each (coarse) sample sits on; read-only, kept per
    process (a few sizes per template and face size)."""
    ys, xs = np.mgrid[0:rows, 0:cols].astype(np.float32) * step + (step - 1) / 2.0
    xs.setflags(write=False)
    ys.setflags(write=False)
    return xs, ys


def mesh_maps(src_grid: np.ndarray, dst_grid: np.ndarray,
              box: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The piecewise-affine map from ``dst_grid`` back to ``src_grid`` over the destination
    ``box`` (x0, y0, x1, y1): (map_x, map_y) for ``cv2.remap`` and a uint8 mask of the pixels inside
    the grid."""
    rows, cols = dst_grid.shape[:2]
    dst = np.asarray(dst_grid, np.float64).reshape(-1, 2)
    srcp = np.asarray(src_grid, np.float64).reshape(-1, 2)
    x0, y0, x1, y1 = box
    h, w = y1 - y0, x1 - x0

    tris = _triangles(rows, cols)
    # The piecewise-affine map is continuous, so on big crops it is computed every ``step`` px
    # and interpolated (exact inside each triangle up to sub-pixel error along its edges).
    step = 1 if h * w < COARSE_MAP_AREA else COARSE_STEP
    extra = 1 if step > 1 else 0   # one more coarse sample to interpolate up to the far edge
    ch, cw = -(-h // step) + extra, -(-w // step) + extra
    # Triangle id per (coarse) pixel (0 = none); later triangles win on shared edges, where
    # neighbouring affine maps agree anyway.
    ids = np.zeros((ch, cw), np.uint8 if len(tris) < 255 else np.uint16)
    offset = (step - 1) / 2.0  # coarse sample j sits at pixel centre j*step + offset
    local = dst - (x0, y0)
    # All triangles' affine maps (destination -> template) in one batched solve.
    d_tri = local[tris]                                         # n x 3 x 2
    s_tri = srcp[tris]
    area = (d_tri[:, 1, 0] - d_tri[:, 0, 0]) * (d_tri[:, 2, 1] - d_tri[:, 0, 1]) - \
           (d_tri[:, 2, 0] - d_tri[:, 0, 0]) * (d_tri[:, 1, 1] - d_tri[:, 0, 1])
    usable = np.abs(area) > 1e-3
    lhs = np.concatenate([d_tri, np.ones((len(tris), 3, 1))], axis=2)
    lhs[~usable] = np.eye(3)
    maps = np.linalg.solve(lhs, s_tri)                          # n x 3 x 2
    coeffs = np.zeros((len(tris) + 1, 6), np.float32)
    coeffs[0] = (0, 0, -1e4, 0, 0, -1e4)  # outside: sample far off the template (transparent)
    coeffs[1:] = maps.transpose(0, 2, 1).reshape(-1, 6)
    shift = 4
    pts = np.round((d_tri - offset) / step * (1 << shift)).astype(np.int32)
    keep = np.nonzero(usable)[0]
    for k, tri in zip((keep + 1).tolist(), pts[keep]):
        cv2.fillConvexPoly(ids, tri, k, lineType=cv2.LINE_8, shift=shift)

    xs, ys = _pixel_centres(ch, cw, step)
    if ids.dtype == np.uint8:   # each coefficient's plane by a table lookup: cheaper than indexing
        table = np.zeros((6, 256), np.float32)
        table[:, :len(coeffs)] = coeffs.T
        c = [cv2.LUT(ids, table[k]) for k in range(6)]
    else:
        c = coeffs.T.copy()[:, ids]
    map_x = c[0] * xs + c[1] * ys + c[2]
    map_y = c[3] * xs + c[4] * ys + c[5]
    if step > 1:
        # an exact x``step`` linear resize puts coarse sample j back on pixel j*step + offset
        map_x = cv2.resize(map_x, (cw * step, ch * step), interpolation=cv2.INTER_LINEAR)[:h, :w]
        map_y = cv2.resize(map_y, (cw * step, ch * step), interpolation=cv2.INTER_LINEAR)[:h, :w]
        hull = np.zeros((h, w), np.uint8)
        g = local.reshape(rows, cols, 2)
        outline = np.concatenate([g[0], g[1:, -1], g[-1, -2::-1], g[-2:0:-1, 0]])
        cv2.fillPoly(hull, [np.round(outline * (1 << shift)).astype(np.int32)], 1,
                     lineType=cv2.LINE_8, shift=shift)
        ids = hull
    return map_x, map_y, (ids > 0).astype(np.uint8)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Rec. 601 luma as float32 (0..255)."""
    rgb = rgb.astype(np.float32, copy=False)
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def _detail(lum: np.ndarray, where: np.ndarray) -> float:
    """Median absolute high-pass of a luminance image over ``where``: how sharp/grainy it is."""
    return float(np.median(np.abs(lum - cv2.GaussianBlur(lum, (0, 0), 0.5))[where]))


# Sharpness ratio (fine / coarse high-pass, 90th percentiles) -> Gaussian blur of an equally soft
# render. Measured on the identities photos: sharp photos give 0.3-0.55; a sharp photo blurred
# by sigma 1, 2, 3 px gives about 0.17, 0.115, 0.10; the soft alex-lacamoire.png gives 0.144.
_SHARPNESS = (0.10, 0.115, 0.17, 0.25, 0.30)
_BLUR_SIGMA = (3.0, 2.0, 1.0, 0.4, 0.0)


def _blur_of_luminance(lum: np.ndarray) -> float:
    if min(lum.shape) < 8:
        return 0.0
    # percentiles over every other pixel: the same answer at a quarter of the sorting cost
    fine = quantile(np.abs(lum - cv2.GaussianBlur(lum, (0, 0), 0.7))[::2, ::2], 0.9)
    coarse = quantile(np.abs(lum - cv2.GaussianBlur(lum, (0, 0), 2.5))[::2, ::2], 0.9)
    ratio = float(fine / max(coarse, 1e-3))
    return float(np.interp(ratio, _SHARPNESS, _BLUR_SIGMA))


def feather(alpha: np.ndarray, sigma: float) -> np.ndarray:
    """Soften an alpha edge by ``sigma`` px (a real mask edge is never a hard cut-out)."""
    if sigma <= 0.05:
        return alpha
    return np.clip(cv2.GaussianBlur(alpha, (0, 0), sigma), 0.0, 1.0)


def composite(face: np.ndarray, mask_rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``a*mask + (1-a)*face`` rounded to uint8; every pixel stays between its two inputs."""
    a = np.clip(alpha.astype(np.float32, copy=False), 0.0, 1.0)[..., None]
    out = a * mask_rgb.astype(np.float32, copy=False) + (1.0 - a) * face.astype(np.float32, copy=False)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def composite_layer(image: np.ndarray, layer: MaskLayer, in_place: bool = False) -> np.ndarray:
    """Composite one face's mask layer into ``image`` (a copy of it unless ``in_place``): the
    contact shadow darkens the face, then the mask is alpha-blended over it."""
    out = image if in_place else image.copy()
    h, w = layer.alpha.shape
    region = out[layer.y0:layer.y0 + h, layer.x0:layer.x0 + w]
    face = region
    if layer.shadow is not None:
        face = region.astype(np.float32) * layer.shadow[..., None]
    region[...] = composite(face, layer.rgb, layer.alpha)
    return out
