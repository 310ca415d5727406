"""Where a mask goes on a face: 68 landmarks + wear mode -> the target anchor grid.

The target grid has the template's ``rows x cols`` shape. Its top row is the mask's top edge
(placed by the wear mode), its bottom row follows the jaw line (landmarks 1-15) round the chin
(8), its outer columns run down the jaw from the corners near the ears, and the middle column
follows the midline landmarks (nose bridge 27-30, nose 33, lips 51/57, chin 8), so the mask bends
with the nose and the jaw of a turned head. All functions are pure: arrays in, arrays out.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from maskprep.faces import shape_reason   # the one owner of what a face's landmarks look like

WEAR_MODES = ("correct", "nose-out", "chin")

# Jaw index (0..8, fractional) of the mask's top corners, per wear mode: the lower the top edge,
# the further down the jaw its corners sit.
_CORNER_JAW = {"correct": 1.0, "nose-out": 2.0, "chin": 2.5}
_SIDE_LENGTH = 1.3            # jaw-index length of the mask's side edge below each corner
_MIDLINE = (27, 28, 29, 30, 33, 51, 57, 8)
# Landmarks the top edge must stay below, per wear mode: the eyes, the nose, the mouth.
_CEILING = {"correct": range(36, 48), "nose-out": range(31, 36), "chin": range(48, 60)}
# ... and above, so they stay covered.
_FLOOR = {"correct": range(30, 36), "nose-out": range(48, 60), "chin": (8,)}
#: Mean slip (of the bridge 27-30) of the top edge down the nose, past the template's own height.
TOP_SLIP = 0.2
_EDGE_MARGIN = 0.035          # of the face height: clearance from both, room for the feathered edge

DEFAULT_MIN_FACE = 40         # px between jaw points 0 and 16: smaller faces are skipped
DEFAULT_MAX_YAW = 0.6         # |yaw proxy| above this: too turned for a sane fit
DEFAULT_MAX_ROLL = 60.0       # degrees
_FAR_LOOP_YAW = 0.3           # yaw beyond which the far side's ear loop is hidden behind the cheek


@dataclass(frozen=True)
class FaceFrame:
    """A face's local axes from its landmarks: ``up`` (chin -> brow), ``right``, and its height."""

    up: np.ndarray
    right: np.ndarray
    height: float     # landmark 8 to landmark 27, px
    width: float      # landmark 0 to landmark 16, px


def face_frame(landmarks: np.ndarray) -> FaceFrame:
    """Local axes of a face (image coordinates, y down)."""
    lm = np.asarray(landmarks, np.float64)
    up = lm[27] - lm[8]
    height = float(np.hypot(*up))
    up = up / max(height, 1e-6)
    right = np.array([-up[1], up[0]])  # image x axis for an upright face
    return FaceFrame(up=up, right=right, height=height, width=float(np.hypot(*(lm[16] - lm[0]))))


def yaw_proxy(landmarks: np.ndarray) -> float:
    """-1..1: how far the nose tip sits towards one jaw side (0 = frontal; positive = nearer
    landmark 14, the image's right side of an upright face)."""
    lm = np.asarray(landmarks, np.float64)
    left = np.hypot(*(lm[30] - lm[2]))
    right = np.hypot(*(lm[30] - lm[14]))
    return float((left - right) / max(left + right, 1e-6))


def roll_degrees(landmarks: np.ndarray) -> float:
    """In-plane rotation of the eye line, degrees (positive = clockwise in the image)."""
    lm = np.asarray(landmarks, np.float64)
    d = lm[42:48].mean(axis=0) - lm[36:42].mean(axis=0)
    return float(np.degrees(np.arctan2(d[1], d[0])))


def check_face(landmarks: np.ndarray, min_face: float = DEFAULT_MIN_FACE,
               max_yaw: float = DEFAULT_MAX_YAW, max_roll: float = DEFAULT_MAX_ROLL) -> str | None:
    """Why a face cannot take a sane mask fit (``face too small``, ``face too turned`` (yaw or
    roll), ``implausible landmarks``), or None when it can."""
    lm = np.asarray(landmarks, np.float64)
    if lm.shape != (68, 2) or not np.all(np.isfinite(lm)):
        return "implausible landmarks"
    if face_frame(lm).width < min_face:
        return "face too small"
    if abs(yaw_proxy(lm)) > max_yaw or abs(roll_degrees(lm)) > max_roll:
        return "face too turned"
    # A detector false positive gives landmarks that do not look like a face.
    return shape_reason(lm)


def _jaw_points(lm: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Points (N x 2) on the jaw polyline at fractional landmark indices ``s`` (0..16)."""
    s = np.clip(np.asarray(s, np.float64), 0, 16)
    i = np.minimum(np.floor(s).astype(int), 15)
    f = (s - i)[:, None]
    return lm[i] * (1 - f) + lm[i + 1] * f


def _resample(poly: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Points at normalised arc lengths ``ts`` along a polyline."""
    seg = np.hypot(*np.diff(poly, axis=0).T)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    total = cum[-1] if cum[-1] > 0 else 1.0
    x = np.interp(ts * total, cum, poly[:, 0])
    y = np.interp(ts * total, cum, poly[:, 1])
    return np.stack([x, y], axis=-1)


def top_center(lm: np.ndarray, wear: str, fit: Mapping[str, float]) -> np.ndarray:
    """Where the middle of the mask's top edge sits for a wear mode."""
    if wear == "correct":       # on the nose bridge
        return lm[27] + float(fit.get("top", 0.3)) * (lm[30] - lm[27])
    if wear == "nose-out":      # under the nose, above the upper lip
        return lm[33] + 0.45 * (lm[51] - lm[33])
    if wear == "chin":          # under the lower lip
        return lm[57] + 0.3 * (lm[8] - lm[57])
    raise ValueError(f"unknown wear mode {wear!r}: choose from {', '.join(WEAR_MODES)}")


def fit_grid(landmarks: np.ndarray, rows: int, cols: int, wear: str = "correct",
             fit: Mapping[str, float] | None = None,
             rng: np.random.Generator | None = None, jitter: float = 1.0) -> np.ndarray:
    """Target anchor grid (``rows x cols x 2`` float32, image px) for one face and wear mode.

    ``fit`` holds the template's fit parameters (``top``: how far down the nose bridge the top
    edge sits; ``side_drop``: corners lower on the jaw; ``chin_margin``: how far below the jaw
    line the bottom edge hangs; ``width``: horizontal scale; ``bulge``: upward bow of the top edge
    over the cheeks). ``rng`` adds a small natural variation (scaled by ``jitter``). ValueError for
    an unknown wear mode or landmarks that are not 68 finite points.
    """
    if wear not in WEAR_MODES:
        raise ValueError(f"unknown wear mode {wear!r}: choose from {', '.join(WEAR_MODES)}")
    fit = dict(fit or {})
    lm = np.asarray(landmarks, np.float64)
    if lm.shape != (68, 2) or not np.all(np.isfinite(lm)):
        # a NaN grid would only fail later, in the warp, with a message about integers
        raise ValueError(f"landmarks must be 68 finite (x, y) points, got shape {lm.shape}"
                         f"{' with NaN/inf' if lm.shape == (68, 2) else ''}")
    frame = face_frame(lm)
    h = frame.height
    if rng is not None and jitter > 0:
        j_top = rng.normal(0.0, 0.012 * jitter) * h
        j_side = rng.normal(0.0, 0.12 * jitter)
        j_chin = rng.normal(0.0, 0.01 * jitter)
    else:
        j_top = j_side = j_chin = 0.0

    top_c = top_center(lm, wear, fit) + frame.up * j_top
    s_corner = _CORNER_JAW[wear] + float(fit.get("side_drop", 0.0)) + j_side
    s_bottom = s_corner + _SIDE_LENGTH
    # a pulled-down mask hangs from its loops just under the chin: not lower (not a bib)
    chin_margin = float(fit.get("chin_margin", 0.06)) + j_chin - (0.02 if wear == "chin" else 0.0)
    centre = lm[33] if wear != "chin" else lm[57]
    width = float(fit.get("width", 1.0))
    bulge = float(fit.get("bulge", 0.05)) * (1.0 if wear == "correct" else 0.4)

    us = np.linspace(-1.0, 1.0, cols)
    a = np.abs(us)[:, None]
    right_side = us >= 0
    right_corner, left_corner = _jaw_points(lm, np.array([16 - s_corner, s_corner]))
    corners = np.where(right_side[:, None], right_corner, left_corner)
    # top edge: from the corner to the top centre, bowed up over the cheeks
    top = corners * a + top_c * (1 - a) + frame.up * h * bulge * np.sin(np.pi * a)
    # bottom edge: along the jaw round the chin, a little outside the jaw line
    s = s_bottom + (8 - s_bottom) * (1 - a[:, 0])
    p = _jaw_points(lm, np.where(right_side, 16 - s, s))
    bottom = p + (p - centre) * (0.015 + chin_margin * (1 - a) ** 2)
    # The corners sit a touch outside the jaw line too (the mask stands off the cheek).
    top[0] += (top[0] - centre) * 0.015
    top[-1] += (top[-1] - centre) * 0.015

    # Keep the top edge clear of what the wear mode leaves uncovered (eyes, nose, mouth): the
    # bow over the cheeks or a small face must never cover them.
    # And keep it above what the mode covers (a broad smile lifts the mouth corners).
    hi = float((lm[list(_CEILING[wear])] @ frame.up).min()) - _EDGE_MARGIN * h
    lo = float((lm[list(_FLOOR[wear])] @ frame.up).max()) + _EDGE_MARGIN * h
    if lo > hi:  # squeezed landmarks: split the difference
        lo = hi = (lo + hi) / 2
    heights = top @ frame.up
    clamped = np.clip(heights, lo, hi)
    if wear == "chin":
        # a pulled-down mask hangs from loops that pull its corners up towards the ears: only the
        # part of the edge in front of the mouth must stay under it
        mouth = lm[48:60] @ frame.right
        across = top @ frame.right
        free = (across < mouth.min() - 0.08 * frame.width) | (across > mouth.max() + 0.08 * frame.width)
        clamped = np.where(free, np.minimum(heights, hi + 0.25 * h), clamped)
    top += np.outer(clamped - heights, frame.up)
    top_c = top[cols // 2].copy()

    # Narrower than the jaw: the sides end near the ear root, and on a turned head the far side
    # (foreshortened, its jaw landmarks on the face outline) stays inside the outline.
    yaw = yaw_proxy(lm)
    far = 1 if yaw > 0 else 0
    for arr in (top, bottom):
        offs = (arr - top_c) @ frame.right
        shrink = np.full(cols, 1 - width)
        shrink[(us > 0) if far else (us < 0)] += min(abs(yaw) * 0.45, 0.18) * np.abs(us[(us > 0) if far else (us < 0)]) ** 2
        arr -= np.outer(offs * shrink, frame.right)

    # Middle column: follow the midline landmarks below the top edge (nose tip, lips, chin).
    mid = cols // 2
    points = lm[list(_MIDLINE)]
    depth = (top_c - points) @ frame.up   # distance below the top edge
    below = points[(depth > 0.04 * h) & (depth < float((top_c - bottom[mid]) @ frame.up))]
    midline = np.concatenate([top_c[None], below, bottom[mid][None]])
    vs = np.linspace(0.0, 1.0, rows)
    mid_pts = _resample(midline, vs)

    straight_mid = top[mid][None, :] * (1 - vs[:, None]) + bottom[mid][None, :] * vs[:, None]
    bend = mid_pts - straight_mid
    # every column at once: top to bottom, bent like the midline, less so towards the sides
    grid = (top[None] * (1 - vs[:, None, None]) + bottom[None] * vs[:, None, None]
            + bend[:, None] * ((1 - np.abs(us)) ** 1.5)[None, :, None])
    return grid.astype(np.float32)


def extend_grid(grid: np.ndarray, row_margin: float = 0.5, col_margin: float = 1.0) -> np.ndarray:
    """Add one row above/below and one column each side by linear extrapolation.

    Applied identically to the template grid and the face grid, so the template's margin (ear
    loops, straps, the anti-aliased edge) lands just outside the fitted outline.
    """
    g = np.asarray(grid, np.float32)
    top = g[0] + (g[0] - g[1]) * row_margin
    bottom = g[-1] + (g[-1] - g[-2]) * row_margin
    g = np.concatenate([top[None], g, bottom[None]], axis=0)
    left = g[:, 0] + (g[:, 0] - g[:, 1]) * col_margin
    right = g[:, -1] + (g[:, -1] - g[:, -2]) * col_margin
    return np.concatenate([left[:, None], g, right[:, None]], axis=1)


def grid_outline(grid: np.ndarray) -> np.ndarray:
    """The grid's outer boundary as a closed polygon (N x 2), clockwise from the left corner."""
    g = np.asarray(grid)
    return np.concatenate([g[0], g[1:, -1], g[-1, -2::-1], g[-2:0:-1, 0]], axis=0)


def draw_fit(fit: Mapping[str, float], rng: np.random.Generator, slip: bool = True) -> dict[str, float]:
    """One output's fit, drawn around a template's: how tight (width), how high on the nose
    (top), how low the corners sit (side_drop), how far under the chin (chin_margin).

    ``slip``: the top edge's draw has the measured tail of masks slipped down the nose (drawn
    templates); off for a bank template, whose real mask already sits where it sat in its photo."""
    out = {k: float(v) for k, v in fit.items()}
    out["width"] = round(out.get("width", 1.0) * float(rng.uniform(0.92, 1.0)), 4)
    if slip:
        # Real masks worn over the nose (benchmarks/mask_placement.py on chandrikadeb7/with_mask)
        # sit about where the template's top puts them, but a quarter of them have slipped well
        # down the bridge: a normal spread plus a one-sided tail towards the nose tip.
        down = float(rng.exponential(TOP_SLIP))
        out["top"] = round(float(np.clip(out.get("top", 0.3) - 0.08 + rng.normal(0, 0.04) + down,
                                         0.1, 0.8)), 4)
    else:
        out["top"] = round(float(np.clip(out.get("top", 0.3) + rng.normal(0, 0.06), 0.12, 0.5)), 4)
    out["side_drop"] = round(out.get("side_drop", 0.0) + float(rng.uniform(-0.2, 0.3)), 4)
    out["chin_margin"] = round(out.get("chin_margin", 0.06) + float(rng.uniform(-0.02, 0.03)), 4)
    out["bulge"] = round(out.get("bulge", 0.05) + float(rng.uniform(-0.02, 0.02)), 4)
    return out


def ear_points(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each ear's root is (left, right in the image): (2, 2) arrays holding the upper and
    the lower attachment. Estimated from the jaw ends (landmarks 0-3, 13-16) and the pose: the
    ear sits outside the jaw's top end, further out on the near side of a turned head and hidden
    just behind the cheek outline on the far side."""
    lm = np.asarray(landmarks, np.float64)
    frame = face_frame(lm)
    yaw = yaw_proxy(lm)
    out = []
    for side, (top_i, low_i) in ((-1, (0, 1)), (1, (16, 15))):
        near = max(0.0, -side * yaw)      # this side turned towards the camera
        farness = max(0.0, side * yaw)
        outward = frame.right * side * frame.width * (0.06 + 0.1 * near - 0.06 * min(farness * 3, 1))
        upper = lm[top_i] + frame.up * frame.height * 0.04 + outward
        lower = lm[low_i] + outward * 1.2
        out.append(np.stack([upper, lower]))
    return out[0], out[1]


def loop_paths(grid: np.ndarray, landmarks: np.ndarray, straps: str = "loops") -> list[np.ndarray]:
    """Polylines (N x 2, image px) of the ear loops or head straps leaving the mask's sides.

    ``loops``: from the top and bottom corners of each side to the ear root, bowed out round the
    cheek; ``bands`` (N95): from the cup's sides out to the head's outline, curving up over the ear
    (upper strap) and down under it (lower strap) as they wrap round the head, cut where they pass
    behind it. Both sides show on a frontal face; on a turned head the far side's loop is
    foreshortened (it ends at the cheek's outline) and hidden once the head is turned further."""
    g = np.asarray(grid, np.float64)
    lm = np.asarray(landmarks, np.float64)
    frame = face_frame(lm)
    paths = []
    yaw = yaw_proxy(lm)
    ears = ear_points(lm)
    t = np.linspace(0.0, 1.0, 20)[:, None]
    for side, ear in ((0, ears[0]), (-1, ears[1])):
        sgn = -1 if side == 0 else 1
        farness = max(0.0, sgn * yaw)
        if farness > _FAR_LOOP_YAW:
            continue   # the far side of a well-turned head: its loop runs behind the cheek
        col = g[:, side]
        jaw_top, jaw_low = lm[0 if side == 0 else 16], lm[3 if side == 0 else 13]
        if straps == "bands":
            # they end where they pass behind the head's outline: the upper one over the side of
            # the head just above the ear root (the temple), the lower one under the ear where
            # the jaw turns to the neck; on the far side of a turned head the outline is the
            # cheek's, so they end further in
            out = sgn * frame.width * (0.02 - 0.06 * min(farness * 3, 1))
            starts = (col[1], col[-2])
            ends = (jaw_top + frame.up * frame.height * 0.2 + frame.right * out,
                    lm[2 if side == 0 else 14] - frame.up * frame.height * 0.08
                    + frame.right * (out + sgn * 0.01 * frame.width))
            # a strap round the head: out first, then up / down as it turns away (the short lower
            # one turns sharply under the ear)
            bows = (0.6, 1.0)
        else:
            starts = (col[0] * 0.85 + col[1] * 0.15, col[-1] * 0.8 + col[-2] * 0.2)
            ends = (ear[0], ear[1])
            bows = (0.1, 0.1)
        for a, b, bow in zip(starts, ends, bows):
            # control point: the end's position across the face at the start's height (the cord
            # wraps round the cheek, so it runs outwards before it turns to the ear), sagging a little
            across = (b - a) @ frame.right
            if straps == "bands":   # out to the cheek's outline first, then up / down round the head
                across = sgn * max(abs(across), 0.04 * frame.width)
            corner = a + frame.right * across
            mid = (a + b) / 2
            ctrl = mid + (corner - mid) * bow - frame.up * 0.015 * frame.height
            paths.append((1 - t) ** 2 * a + 2 * (1 - t) * t * ctrl + t ** 2 * b)
    return paths


def face_info(landmarks: np.ndarray) -> dict[str, Any]:
    """JSON-ready geometry of a face (for the manifest)."""
    lm = np.asarray(landmarks, np.float64)
    return {"yaw": round(yaw_proxy(lm), 3), "roll": round(roll_degrees(lm), 1),
            "width": round(face_frame(lm).width, 1)}
