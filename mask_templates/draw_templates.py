"""Draw maskprep's mask templates: one RGBA PNG and one JSON of named anchors per mask type.

Own artwork, drawn from formulas (no image is copied from anywhere). Re-run it to regenerate the
templates; it is deterministic (fixed seeds, no clock, no platform-dependent fonts):

    python mask_templates/draw_templates.py            # writes into mask_templates/

How a template is laid out
--------------------------
Each mask is drawn flat, seen from the front, on a canvas of ``CANVAS_W x CANVAS_H`` pixels. Its
shape is a *domain* between a top curve ``top(u)`` and a bottom curve ``bottom(u)`` for ``u`` in
[-1, 1] (left to right as seen in the photo). Inside it, a point has coordinates ``(u, v)``, ``v``
running 0 at the top edge to 1 at the bottom edge. The anchors are a ``ROWS x COLS`` grid of (u, v)
points on that domain: the top row lies on the top edge (``top_center`` sits on the nose bridge),
the bottom row on the bottom edge (``chin`` under landmark 8, ``jaw_*`` along the jaw line), the
outer columns along the sides (``*_corner`` near the ears). :mod:`maskprep.masks.fit` builds the
same grid on a face from its 68 landmarks, and the renderer warps each grid cell onto the face
(piecewise-affine), so pleats and seams bend with the face.

Colours: the RGB is the mask's natural colour with its shading; ``base_color`` in the JSON is the
flat colour, so :mod:`maskprep.masks.templates` can recolour by the luminance ratio. Transparent
pixels carry the colour of the nearest mask pixel, so bilinear warping never pulls in black (no
dark fringe at the edge).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

CANVAS_W, CANVAS_H = 320, 240
ROWS, COLS = 5, 9
SUPER = 3                       # supersampling factor for anti-aliased edges
CX, HALF_W = CANVAS_W / 2, 128  # domain centre and half width (u = +-1), margins: the anti-aliased edge

OUT_DIR = Path(__file__).resolve().parent


# ----------------------------------------------------------------------------------------------
# Domains: top(u), bottom(u) in canvas pixels for u in [-1, 1]

def _domain(kind: str):
    if kind == "surgical":    # a flat pleated rectangle
        return (lambda u: 52 + 0 * u), (lambda u: 188 + 0 * u)
    if kind == "kf94":        # fish shape: peaked top, pointed sides, deep chin
        return (lambda u: 34 + 66 * np.abs(u) ** 1.25), (lambda u: 212 - 72 * np.abs(u) ** 1.6)
    if kind == "cloth":       # contoured two-piece mask with a centre seam
        return (lambda u: 40 + 34 * np.abs(u) ** 1.6), (lambda u: 206 - 40 * u ** 2)
    if kind == "n95":         # moulded cup: an oval
        def half(u):
            return 96 * np.sqrt(np.clip(1 - (0.93 * u) ** 2, 0, 1))
        return (lambda u: 122 - half(u)), (lambda u: 124 + half(u))
    raise ValueError(kind)


# ----------------------------------------------------------------------------------------------
# Per-type parameters: natural colour, how the mask sits on the face (read by fit.py)

SPECS = {
    "surgical": {
        "base_color": [156, 200, 222],   # the usual light blue of a disposable mask
        "description": "three-ply disposable mask: bound edges, nose wire (pleats and loops are rendered per output)",
        "fit": {"top": 0.34, "side_drop": 0.0, "chin_margin": 0.06, "width": 1.04, "bulge": 0.05},
    },
    "kf94": {
        "base_color": [240, 241, 243],
        "description": "Korean KF94: fish shape, horizontal fold, centre seam, welded side flaps",
        "fit": {"top": 0.28, "side_drop": 0.2, "chin_margin": 0.1, "width": 1.02, "bulge": 0.05},
    },
    "cloth": {
        "base_color": [58, 62, 74],      # charcoal cotton
        "description": "two-piece cotton mask: twill weave, centre seam, hemmed edge",
        "fit": {"top": 0.32, "side_drop": 0.0, "chin_margin": 0.08, "width": 1.0, "bulge": 0.06},
    },
    "n95": {
        "base_color": [236, 232, 220],   # moulded off-white
        "description": "moulded N95 cup: rim, nose clip (two head straps are drawn on the photo)",
        "fit": {"top": 0.28, "side_drop": 0.35, "chin_margin": 0.1, "width": 0.94, "bulge": 0.06},
    },
}

# What each anchor sits on in a face (documentation for the JSON; fit.py computes the positions).
FACE_MEANING = {
    "top_center": "nose bridge (between landmarks 27 and 30; under the nose for nose-out)",
    "chin": "just below landmark 8",
    "left_corner": "jaw line near landmark 1 (ear side)",
    "right_corner": "jaw line near landmark 15 (ear side)",
    "cheek_left": "top edge over the left cheek",
    "cheek_right": "top edge over the right cheek",
    "jaw_left_*": "along landmarks 2-7",
    "jaw_right_*": "along landmarks 9-14",
    "inner_rR_cC": "inside the mask, on the line between the top and bottom anchors of column C",
}


def anchor_names() -> list[str]:
    """Row-major names of the ROWS x COLS anchor grid."""
    mid = COLS // 2
    names = []
    for r in range(ROWS):
        for c in range(COLS):
            if r == 0:
                if c == mid:
                    name = "top_center"
                elif c == 0:
                    name = "left_corner"
                elif c == COLS - 1:
                    name = "right_corner"
                elif c == mid // 2 or c == mid + (mid + 1) // 2:
                    name = "cheek_left" if c < mid else "cheek_right"
                else:
                    name = f"top_{c}"
            elif r == ROWS - 1:
                if c == mid:
                    name = "chin"
                else:
                    name = f"jaw_left_{c}" if c < mid else f"jaw_right_{c}"
            elif c == 0:
                name = f"left_side_{r}"
            elif c == COLS - 1:
                name = f"right_side_{r}"
            else:
                name = f"inner_r{r}_c{c}"
            names.append(name)
    return names


# ----------------------------------------------------------------------------------------------
# Drawing helpers (all in supersampled canvas pixels)

def _uv(kind: str, w: int, h: int):
    top, bottom = _domain(kind)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    xs = (xs + 0.5) / SUPER
    ys = (ys + 0.5) / SUPER
    u = (xs - CX) / HALF_W
    t, b = top(np.clip(u, -1, 1)), bottom(np.clip(u, -1, 1))
    v = (ys - t) / np.maximum(b - t, 1e-6)
    # distance (canvas px) to the domain edge, positive inside: for the anti-aliased outline
    dist = np.minimum.reduce([ys - t, b - ys, (1 - np.abs(u)) * HALF_W])
    return u, v, dist, xs, ys


def _smooth(edge: np.ndarray, width: float) -> np.ndarray:
    return np.clip(edge / width + 0.5, 0.0, 1.0)


def _line(dist_px: np.ndarray, width: float) -> np.ndarray:
    """Coverage of a line of ``width`` canvas px given the distance to its centre."""
    return (np.abs(dist_px) < width / 2).astype(np.float64)  # supersampling anti-aliases it


def _bleed(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Give transparent pixels the colour of the nearest visible ones (push-pull fill)."""
    import cv2

    out = rgb.copy()
    a = alpha.astype(np.float32)
    filled = a > 0.02
    for sigma in (1, 2, 4, 8, 16, 32, 64):
        wsum = cv2.GaussianBlur(a, (0, 0), sigma)
        csum = cv2.GaussianBlur(rgb * a[..., None], (0, 0), sigma)
        ok = (wsum > 1e-4) & ~filled
        out[ok] = csum[ok] / wsum[ok, None]
        filled |= ok
    out[~filled] = rgb[a > 0.5].mean(axis=0)
    out[a > 0.02] = rgb[a > 0.02]
    return out


def draw(kind: str) -> tuple[np.ndarray, dict]:
    """Render one template: (RGBA uint8 array, JSON-ready dict)."""
    spec = SPECS[kind]
    w, h = CANVAS_W * SUPER, CANVAS_H * SUPER
    u, v, dist, xs, ys = _uv(kind, w, h)
    base = np.array(spec["base_color"], np.float64) / 255.0
    shade = np.ones_like(u)          # multiplies the base colour
    detail = np.zeros(u.shape + (3,))  # added colour (seams, stitches)

    # Only what is printed, sewn or welded is drawn here: the form (dome, pleats, folds) and the
    # material's texture are rendered per output by maskprep.masks.surface, under the photo's light.
    if kind == "surgical":
        # bound edges (sewn tape, a touch lighter) top and bottom, side tapes, their stitch lines
        edge = np.minimum(v * 136, (1 - v) * 136)
        side = (1 - np.abs(u)) * HALF_W
        tape = (edge < 7) | (side < 6)
        shade *= np.where(tape, 1.04, 1.0)
        shade *= 1 - 0.10 * (_line(edge - 7, 0.8) + _line(side - 6, 0.8) * (edge > 7))
        # nose wire inside the top tape: a faint ridge line
        wire = (np.abs(u) < 0.36) * _line((v * 136 - 3.5), 1.6)
        shade *= 1 - 0.06 * wire
    elif kind == "kf94":
        top, bottom = _domain(kind)
        fold_v = 0.46
        d = (v - fold_v) * (bottom(u) - top(u))
        shade *= 1 - 0.10 * np.exp(-(d / 1.2) ** 2)                       # welded fold seam
        seam_x = (xs - CX)
        lower = d > 0
        shade *= 1 - 0.08 * np.exp(-(seam_x / 1.0) ** 2) * lower          # centre seam, chin panel
        flap = np.abs(u) - 0.80
        shade *= 1 - 0.08 * np.exp(-((flap * HALF_W) / 1.0) ** 2)         # welded side flaps
        # welded edge: a band of small embossed dots
        band = (dist > 1.5) & (dist < 6.5)
        dots = (np.sin(xs * 2.1) * np.sin(ys * 2.1)) > 0.6
        shade *= 1 - 0.06 * (band & dots)
    elif kind == "cloth":
        # centre seam line (its ridge is in the height field) and a hem stitched inside the edge
        seam_x = xs - CX
        shade *= 1 - 0.25 * np.exp(-(seam_x / 1.0) ** 2)
        stitch = _line(dist - 5.5, 0.9) * (np.sin((xs + ys) * 1.1) > -0.2)
        detail += stitch[..., None] * 0.06
    elif kind == "n95":
        # moulded rim line; a metal nose clip under the outer shell shows as a faint strip
        shade *= 1 - 0.04 * (dist < 7) - 0.07 * _line(dist - 7, 1.2)
        clip = (np.abs(u) < 0.2) & (v > 0.05) & (v < 0.09)
        shade *= np.where(clip, 0.93, 1.0)

    # loops and straps are drawn per output on the photo (maskprep.masks.fit.loop_paths), not here
    alpha = _smooth(dist * SUPER, 1.5)
    rgb = base * shade[..., None] + detail

    # down-sample the supersampled drawing (area average of premultiplied colour)
    def down(a):
        return a.reshape(CANVAS_H, SUPER, CANVAS_W, SUPER, *a.shape[2:]).mean(axis=(1, 3))
    a_small = down(alpha)
    rgb_small = down(rgb * alpha[..., None]) / np.maximum(a_small[..., None], 1e-6)
    rgb_small = np.clip(rgb_small, 0, 1).astype(np.float32)
    rgb_small = _bleed(rgb_small, a_small.astype(np.float32))
    rgba = np.dstack([np.clip(rgb_small * 255 + 0.5, 0, 255),
                      np.clip(a_small * 255 + 0.5, 0, 255)]).astype(np.uint8)

    top, bottom = _domain(kind)
    names = anchor_names()
    anchors = {}
    for r in range(ROWS):
        for c in range(COLS):
            uu = -1 + 2 * c / (COLS - 1)
            vv = r / (ROWS - 1)
            t, b = float(top(np.array(uu))), float(bottom(np.array(uu)))
            anchors[names[r * COLS + c]] = [round(CX + uu * HALF_W, 2), round(t + (b - t) * vv, 2)]
    meta = {
        "name": kind,
        "description": spec["description"],
        "image": f"{kind}.png",
        "size": [CANVAS_W, CANVAS_H],
        "base_color": spec["base_color"],
        "grid": [ROWS, COLS],
        "grid_order": names,
        "anchors": anchors,
        "fit": spec["fit"],
        "anchor_meaning": FACE_MEANING,
        "generator": "mask_templates/draw_templates.py",
    }
    return rgba, meta


def main(out_dir: Path = OUT_DIR) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for kind in SPECS:
        rgba, meta = draw(kind)
        Image.fromarray(rgba, "RGBA").save(out_dir / f"{kind}.png", optimize=True)
        (out_dir / f"{kind}.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {kind}.png ({(out_dir / f'{kind}.png').stat().st_size // 1024} KiB) and {kind}.json")


if __name__ == "__main__":
    main()
