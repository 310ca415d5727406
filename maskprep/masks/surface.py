"""Surface and material of a drawn mask: a height field and an albedo texture per mask type.

Both are computed in *render space* (the output pixels, supersampled) from the warped template
coordinates ``(u, v)``: ``u`` runs -1..1 from the mask's left side to its right side, ``v`` 0..1 from
its top edge to its bottom edge. So pleats, folds, seams and threads follow the fitted mask (they
bend with the face), and their size is set in output pixels (a fibre is a fibre at any face size).

``draw_surface`` makes every random choice (recorded in the manifest); ``height_field`` and
``material`` are then pure functions of ``(u, v)``, the mask width and those draws.
"""
from __future__ import annotations

from statistics import NormalDist
from typing import Any

import functools

import cv2
import numpy as np

# Drawn mask types and the materials each is made of (real masks: spunbond/melt-blown nonwovens for
# disposables, cotton weave or a smooth polyurethane "sponge" knit for washable ones).
MATERIALS = {"surgical": ("nonwoven",), "kf94": ("nonwoven", "meltblown"),
             "n95": ("nonwoven", "meltblown"), "cloth": ("cotton", "knit", "knit")}


# Specular sheen (share of the white level at the highlight): smooth polyurethane "sponge" cloth
# masks shine, nonwovens a little
SHEEN = {"surgical": (0.03, 0.08), "kf94": (0.03, 0.08), "n95": (0.02, 0.06), "cloth": (0.04, 0.16)}

VALVE_SHARE = 0.3
VALVE_COLORS = ((0.93, 0.93, 0.91), (0.4, 0.41, 0.43), (0.14, 0.14, 0.16), (0.85, 0.72, 0.3))


def draw_surface(kind: str, wear: str, rng: np.random.Generator) -> dict[str, Any]:
    """Every random choice of the surface and material layers for one mask (JSON-ready).

    Heights are fractions of the mask width. ``wear`` bunches a pulled-down mask (more, tighter folds)."""
    pulled = wear != "correct"
    d: dict[str, Any] = {
        "dome": round(float(rng.uniform(0.05, 0.11)), 4),      # bulge over nose and chin
        "wrap": round(float(rng.uniform(0.04, 0.09)), 4),      # sides recede round the cheeks
        "chin_wrap": round(float(rng.uniform(0.02, 0.06)), 4),  # the bottom turns under the chin
        "wrinkle": round(float(rng.uniform(0.004, 0.011) * (1.8 if pulled else 1.0)), 4),
        "wrinkle_seed": int(rng.integers(1 << 30)),
        # the mask tents over the nose: a ridge down the bridge and a crease each side where it
        # bends onto the cheek (the strongest folds a real mask shows); a pulled-down mask has none
        "tent": 0.0 if pulled or kind == "n95" else round(float(rng.uniform(0.03, 0.06)), 4),
        "nose_crease": 0.0 if pulled or kind == "n95" else round(float(rng.uniform(0.006, 0.014)), 4),
        # a few irregular creases where the fabric buckles (more on a bunched, pulled-down mask)
        "creases": [[round(float(x), 3) for x in (rng.uniform(-0.85, 0.85), rng.uniform(0.1, 0.9),
                                                   rng.uniform(-0.9, 0.9), rng.uniform(0.08, 0.25),
                                                   rng.uniform(0.004, 0.010))]
                    for _ in range(int(rng.integers(1, 4)) + (2 if pulled else 0))],
        "sheen": round(float(rng.uniform(*SHEEN[kind])), 3),
        # the outline is cut and bound by hand-ish machines and sits on a curved face: it wobbles
        "edge_wobble": round(float(rng.uniform(0.002, 0.005)), 4),
        "edge_seed": int(rng.integers(1 << 30)),
        "material": str(MATERIALS[kind][int(rng.integers(len(MATERIALS[kind])))]),
        "fibre": round(float(rng.uniform(0.008, 0.022)), 4),     # texture contrast
        "material_seed": int(rng.integers(1 << 30)),
    }
    if pulled and kind != "n95":
        # a mask pulled down off the nose: its top edge rolls over into a tube and bunches into
        # short folds across it, and the body is stretched between the loops (tension folds from
        # the corners down towards the middle); a moulded N95 cup keeps its shape
        n = int(rng.integers(4, 8))
        d["roll"] = round(float(rng.uniform(0.012, 0.024)), 4)
        d["bunch"] = [[round(float(x), 3) for x in (cu, rng.uniform(0.15, 0.35), rng.uniform(0.008, 0.016))]
                      for cu in np.sort(rng.uniform(-0.8, 0.8, n))]
        d["tension"] = round(float(rng.uniform(0.006, 0.012)), 4)
    if kind == "surgical":
        n = int(rng.choice([2, 3, 3, 3, 4]))
        span = rng.uniform(0.42, 0.56) * (0.75 if pulled else 1.0)
        centre = rng.uniform(0.47, 0.55)
        vs = np.linspace(centre - span / 2, centre + span / 2, n) + rng.normal(0, 0.015, n)
        d.update(pleats=[round(float(x), 4) for x in np.sort(vs)],
                 pleat_depth=round(float(rng.uniform(0.014, 0.024)), 4),
                 pleat_width=round(float(rng.uniform(0.09, 0.14) * (0.7 if pulled else 1.0)), 4),
                 # the bound edges: a tape of a denser, lighter nonwoven sewn over the top, bottom
                 # and sides (share of the mask's height; how far its colour goes towards white),
                 # a stitch line along its inner edge
                 tape=round(float(rng.uniform(0.05, 0.075)), 4),
                 tape_light=round(float(rng.uniform(0.15, 0.45)), 3),
                 stitch=round(float(rng.uniform(0.1, 0.22)), 3))
    elif kind == "kf94":
        d.update(fold=round(float(rng.uniform(0.42, 0.5)), 4),
                 fold_depth=round(float(rng.uniform(0.05, 0.09)), 4),
                 seam_depth=round(float(rng.uniform(0.02, 0.04)), 4))
    elif kind == "n95":
        d.update(dome=round(float(rng.uniform(0.12, 0.2)), 4))
        if rng.random() < VALVE_SHARE:   # an exhalation valve on one side of the cup
            d["valve"] = {"u": round(float(rng.choice([-1, 1]) * rng.uniform(0.35, 0.5)), 3),
                          "v": round(float(rng.uniform(0.5, 0.65)), 3),
                          "r": round(float(rng.uniform(0.15, 0.21)), 3),
                          "color": list(VALVE_COLORS[int(rng.integers(len(VALVE_COLORS)))])}
    elif kind == "cloth":
        d.update(seam_depth=round(float(rng.uniform(0.03, 0.07)), 4),
                 wrinkle=round(float(rng.uniform(0.004, 0.012) * (1.8 if pulled else 1.0)), 4))
    return d


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _smooth_noise(shape: tuple[int, int], cells: tuple[int, int], seed: int,
                  how: int = cv2.INTER_CUBIC) -> np.ndarray:
    """Low-frequency noise (about ``cells`` bumps across), zero mean, unit-ish amplitude."""
    rng = np.random.default_rng(seed)
    coarse = rng.standard_normal((cells[1] + 1, cells[0] + 1)).astype(np.float32)
    return cv2.resize(coarse, (shape[1], shape[0]), interpolation=how)


def _folds(u: np.ndarray, v: np.ndarray, segs: list) -> np.ndarray:
    """Sum of Gaussian ridges (height > 0) or valleys along segments ``(a, b, height, width)`` in
    (u, v), ``u`` a row and ``v`` a column vector: every segment in one vectorised pass."""
    a = np.array([s[0] for s in segs], np.float32)[:, None, None, :]
    b = np.array([s[1] for s in segs], np.float32)[:, None, None, :]
    amp = np.array([s[2] for s in segs], np.float32)[:, None, None]
    wid = np.array([s[3] for s in segs], np.float32)[:, None, None]
    vs = v * 0.75   # about the mask's aspect
    ax, ay, bx, by = a[..., 0], a[..., 1] * 0.75, b[..., 0], b[..., 1] * 0.75
    dx, dy = bx - ax, by - ay
    t = np.clip(((u - ax) * dx + (vs - ay) * dy) / np.maximum(dx * dx + dy * dy, 1e-9), 0, 1)
    dist2 = (u - ax - t * dx) ** 2 + (vs - ay - t * dy) ** 2
    return (amp * np.exp(-dist2 / (wid * wid))).sum(axis=0)


# The smooth part of the form is computed on a small grid over (u, v) and looked up per pixel
# (one remap instead of dozens of full-size passes): u -1.2..1.2, v -0.2..1.2.
_U_RANGE, _V_RANGE = (-1.2, 1.2), (-0.2, 1.2)


@functools.lru_cache(maxsize=32)
def _form_basis(gw: int, gh: int) -> dict[str, np.ndarray]:
    """The parts of :func:`_form_grid` that depend on the grid's size only (the draws scale
    them): computed once per process and size, read-only."""
    u = np.linspace(*_U_RANGE, gw, dtype=np.float32)[None, :]
    v = np.linspace(*_V_RANGE, gh, dtype=np.float32)[:, None]
    uc, vc = np.clip(u, -1.0, 1.0), np.clip(v, 0.0, 1.0)
    r2 = uc ** 2 + ((vc - 0.5) * 2) ** 2
    b = {"u": u, "v": v, "uc": uc, "vc": vc, "dome_u": 1 - u ** 2,
         "dome_v": np.exp(-((v - 0.5) / 0.42) ** 2), "u2": u ** 2,
         "chin": np.clip(v - 0.7, 0, None) ** 2,
         "kf94_seam": 1 - np.minimum(np.abs(uc) / 0.5, 1.0),
         "kf94_flaps": 0.02 * _smoothstep((np.abs(uc) - 0.8) / 0.06),
         "n95_cup": np.sqrt(np.clip(1 - 0.8 * r2, 0, None)),
         "cloth_seam": (1 - np.minimum(np.abs(uc) / 0.7, 1.0)) ** 1.5,
         "roll": (np.exp(-((vc - 0.04) / 0.045) ** 2) - 0.5 * np.exp(-((vc - 0.11) / 0.025) ** 2)),
         "tent_u": np.clip(1 - np.abs(u) / 0.5, 0, None) ** 1.5,
         "tent_v": 1 - _smoothstep(vc / 0.6)}
    for a in b.values():
        a.setflags(write=False)
    return b


def _form_grid(kind: str, d: dict[str, Any], width_px: float) -> np.ndarray:
    """The mask's smooth form (heights in mask widths) on a (u, v) grid: dome, cheek wrap, the turn
    under the chin, the type's broad folds, the nose tent and its creases, buckles and wrinkles."""
    gw = int(np.clip(width_px * 0.8, 80, 256))   # a crease (0.05 wide in u) spans >= 3 cells
    gh = int(gw * 0.6)
    b = _form_basis(gw, gh)
    uc, vc = b["uc"], b["vc"]
    h = (d["dome"] * b["dome_u"] * b["dome_v"]
         - d["wrap"] * b["u2"] - d["chin_wrap"] * b["chin"] / 0.09)
    if kind == "kf94":
        fold = d["fold"]
        h = h + d["fold_depth"] * (1 - np.abs(vc - fold) / max(fold, 1 - fold))
        below = _smoothstep((vc - fold) / 0.1)
        h = h + d["seam_depth"] * b["kf94_seam"] * below
        h = h - b["kf94_flaps"]    # welded side flaps
    elif kind == "n95":
        h = h + d["dome"] * b["n95_cup"]
    elif kind == "cloth":
        h = h + d["seam_depth"] * b["cloth_seam"]
    h = np.broadcast_to(h, (gh, gw)).astype(np.float32)
    if d.get("roll", 0) > 0:   # the rolled top edge: a tube along it, a dark fold under it
        h = h + d["roll"] * b["roll"]
    if d.get("tent", 0) > 0:
        # the ridge down the nose bridge, falling off to the cheeks, fading below the nose
        h = h + d["tent"] * b["tent_u"] * b["tent_v"]
    h = np.ascontiguousarray(h, dtype=np.float32)
    # folds along segments, all in one pass: (a, b, height, width) each
    segs = []
    if d.get("tent", 0) > 0:
        # the crease each side: from beside the bridge down and out towards the cheek
        segs += [((0.1 * sgn, 0.04), (0.55 * sgn, 0.5), -d["nose_crease"], 0.06) for sgn in (-1.0, 1.0)]
    for k, (cu, length, depth) in enumerate(d.get("bunch", ())):
        # the bunched top edge: short folds across it, fanning out a little, ridge and valley in turn
        segs.append(((cu, -0.02), (cu * (1 + 0.3 * length), length), depth * (1 if k % 2 else -1), 0.045))
    if d.get("tension", 0) > 0:
        # stretched between the loops: shallow ridges from each side's corners towards the middle
        for sgn in (-1.0, 1.0):
            segs += [((0.95 * sgn, 0.08), (0.35 * sgn, 0.5), d["tension"], 0.045),
                     ((0.95 * sgn, 0.55), (0.4 * sgn, 0.85), 0.7 * d["tension"], 0.045)]
    for cu, cv, ang, length, depth in d.get("creases", ()):
        # a soft buckle: a low ridge (or a valley, by the sign of ``cu``'s draw) a few % wide
        du, dv = np.cos(ang) * length / 2, np.sin(ang) * length / 2
        segs.append(((cu - du, cv - dv), (cu + du, cv + dv),
                     depth * (1 if int(cu * 1000) % 2 else -1), 0.05))
    if segs:
        h += _folds(uc, vc, segs)
    if d["wrinkle"] > 0:
        h += d["wrinkle"] * _smooth_noise((gh, gw), (7, 5), d["wrinkle_seed"])
    return h.astype(np.float32)


_PLEAT_T = np.linspace(0.0, 1.0, 512)
_PLEAT_U = np.linspace(-1.0, 1.0, 48)


# The parts of the pleat table no draw changes (bound tape, nose wire, the pleats' taper at the
# sides), computed once per process
_PLEAT_TAPE = 0.004 * _smoothstep(np.minimum(_PLEAT_T, 1 - _PLEAT_T) / 0.06) - 0.004
_PLEAT_WIRE = (0.005 * np.exp(-((_PLEAT_T - 0.03) / 0.014) ** 2)
               - 0.006 * np.exp(-((_PLEAT_T - 0.075) / 0.02) ** 2))
_PLEAT_TAPER = 1 - _smoothstep((np.abs(_PLEAT_U) - 0.86) / 0.14) * 0.7
_PLEAT_FIXED = _PLEAT_TAPE[:, None] + np.outer(_PLEAT_WIRE, np.abs(_PLEAT_U) < 0.4)


def _pleat_table(d: dict[str, Any]) -> np.ndarray:
    """A surgical mask's pleats, tape and nose wire as heights (mask widths) on a 512 (v, 0..1) x
    48 (u, -1..1) table: a slow rise to each crease, then a sharp drop (lit band, dark crease);
    pleats pressed flat at the side tapes; the bound edge a flat tape, a crease under the wire."""
    t = _PLEAT_T[:, None]
    width = d["pleat_width"]
    # every pleat at once: 0..1 over its rise, the crease at 1
    x = (t - (np.asarray(d["pleats"], np.float64)[None, :] - width)) / width
    rise = _smoothstep(x) * (x < 1.0)
    drop = np.exp(-np.clip(x - 1.0, 0, None) * 4.0) * (x >= 1.0)   # the crease: steep
    prof = (d["pleat_depth"] * (rise + drop * 0.999) * (x > 0)).sum(axis=1)
    return (np.outer(prof, _PLEAT_TAPER) + _PLEAT_FIXED).astype(np.float32)


def height_field(kind: str, u: np.ndarray, v: np.ndarray, width_px: float,
                 d: dict[str, Any]) -> np.ndarray:
    """Height of the mask surface above its flat outline, in render pixels (float32, like ``u``).

    The global form (dome, cheek wrap, the turn under the chin, the nose tent and its creases,
    buckles) plus the type's folds: surgical pleats (a slow rise to each crease, then a sharp drop:
    lit band, dark crease), the KF94's horizontal centre fold and chin seam, the N95's moulded cup,
    the cloth mask's centre seam."""
    grid = _form_grid(kind, d, width_px)
    gh, gw = grid.shape
    gx = (u - _U_RANGE[0]) * ((gw - 1) / (_U_RANGE[1] - _U_RANGE[0]))
    gy = (v - _V_RANGE[0]) * ((gh - 1) / (_V_RANGE[1] - _V_RANGE[0]))
    h = cv2.remap(grid, gx.astype(np.float32), gy.astype(np.float32), cv2.INTER_LINEAR,
                  borderMode=cv2.BORDER_REPLICATE)
    if kind == "surgical":   # the sharp pleat creases, from a fine (v) x coarse (u) table
        h += cv2.remap(_pleat_table(d), ((np.clip(u, -1.0, 1.0) + 1.0) * 23.5).astype(np.float32),
                       (np.clip(v, 0.0, 1.0) * 511.0).astype(np.float32), cv2.INTER_LINEAR)
    elif kind == "n95" and "valve" in d:
        h += 0.035 * valve(np.clip(u, -1, 1), np.clip(v, 0, 1), d["valve"])
    return (h * width_px).astype(np.float32)


def occlusion(height: np.ndarray, width_px: float, strength: float = 1.0) -> np.ndarray:
    """Ambient occlusion of a height field (H x W float32, <= 1): creases and folds lie below their
    surroundings and see less of the room's light, so they read as dark lines under any light."""
    sigma = max(0.01 * width_px, 0.8)
    cavity = cv2.GaussianBlur(height, (0, 0), sigma, borderType=cv2.BORDER_REFLECT) - height
    return np.clip(1.0 - strength * cavity / max(0.01 * width_px, 1e-3), 0.7, 1.0).astype(np.float32)


def valve(u: np.ndarray, v: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """Coverage (0..1, soft rim) of a round valve drawn by :func:`draw_surface` (mask coordinates,
    v scaled to about the mask's aspect so the valve is round)."""
    r = np.hypot(u - spec["u"], (v - spec["v"]) * 1.3) / spec["r"]
    return np.clip((1.0 - r) * 8.0, 0.0, 1.0)


def normals(height: np.ndarray) -> np.ndarray:
    """Unit surface normals (H x W x 3, z towards the camera) of a height field in pixels."""
    gx = cv2.Sobel(height, cv2.CV_32F, 1, 0, ksize=3, scale=-1.0 / 8.0)
    gy = cv2.Sobel(height, cv2.CV_32F, 0, 1, ksize=3, scale=-1.0 / 8.0)
    inv = 1.0 / np.sqrt(1.0 + gx * gx + gy * gy)
    return np.dstack([gx * inv, gy * inv, inv])


def _unit(x: np.ndarray) -> np.ndarray:
    """``x`` scaled to unit standard deviation (left as is where it is flat)."""
    return x / max(float(np.std(x)), 1e-6)


# Unit normal noise by lookup: the normal distribution's quantiles at 256 evenly spaced levels
# (scaled to unit std). A byte drawn per pixel and looked up costs a quarter of a standard_normal
# draw; blurred into fibres, or added as camera grain of a level or two, it is the same noise.
_NORMAL_LUT = np.array([NormalDist().inv_cdf((k + 0.5) / 256) for k in range(256)], np.float32)
_NORMAL_LUT /= _NORMAL_LUT.std()


def _normal(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Fresh unit normal noise of ``shape`` (float32) from ``rng`` (see ``_NORMAL_LUT``)."""
    raw = np.frombuffer(rng.bytes(shape[0] * shape[1]), np.uint8).reshape(shape)
    return cv2.LUT(raw, _NORMAL_LUT)


def _noise_field(kind: str, scale: float, shape: tuple[int, int], seed: int) -> np.ndarray:
    """A ``shape`` texture of one material at one render scale (about unit std), drawn fresh from
    ``seed``: every output gets its own field, so no two masks share a grain that a model could
    match after a shift, and a large layer never repeats. The field is drawn with a margin of
    three blur widths and cropped, so its edges have the same statistics as its middle."""
    scale = max(0.25, float(scale))   # never a blur below a quarter pixel
    rng = np.random.default_rng(seed)
    if kind == "white":        # camera grain
        return _normal(rng, shape)
    pad = int(np.ceil(3 * 1.6 * scale)) + 1
    h, w = shape[0] + 2 * pad, shape[1] + 2 * pad

    def draw() -> np.ndarray:
        return _normal(rng, (h, w))

    if kind == "nonwoven":     # short fibres: noise stretched along both directions
        a = cv2.GaussianBlur(draw(), (0, 0), sigmaX=1.6 * scale, sigmaY=0.45 * scale)
        b = cv2.GaussianBlur(draw(), (0, 0), sigmaX=0.45 * scale, sigmaY=1.6 * scale)
        tex = _unit(a + b)
    elif kind == "meltblown":  # soft blotches plus a fine grain
        blot = cv2.GaussianBlur(draw(), (0, 0), 1.2 * scale)
        fine = cv2.GaussianBlur(draw(), (0, 0), 0.5 * scale)
        tex = 0.8 * _unit(blot) + 0.6 * _unit(fine)
    elif kind == "cotton":     # the weave's irregularity
        tex = cv2.GaussianBlur(draw(), (0, 0), 0.6 * scale)
    else:                      # knit / sponge: fine pores
        tex = 0.7 * _unit(cv2.GaussianBlur(draw(), (0, 0), 0.5 * scale))
    return np.ascontiguousarray(tex[pad:pad + shape[0], pad:pad + shape[1]], dtype=np.float32)


def white_noise(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Unit white noise of ``shape`` (float32), drawn fresh from ``seed``."""
    return _noise_field("white", 1.0, shape, seed)


def material(u: np.ndarray, v: np.ndarray, width_px: float, scale: float,
             d: dict[str, Any]) -> np.ndarray:
    """Albedo multiplier (mean about 1) of the mask's material, in render pixels.

    ``scale`` is render pixels per output pixel: fibres and threads keep their size in the output.
    Nonwoven: short fibres (noise stretched along random directions); melt-blown: soft blotches;
    cotton: a weave that follows the mask's (u, v); knit: fine pores."""
    shape = u.shape
    amp = d["fibre"]
    kind = d["material"]
    if kind == "cotton":
        # threads about 1.6 output px apart, never fewer than 60 across the mask
        period = min(1.6 * scale, width_px / 60.0)
        x = u * width_px / 2 / period
        y = v * width_px * 0.75 / period
        tex = 0.9 * np.sin(2 * np.pi * (x + y) / 2) + 0.5 * np.sin(2 * np.pi * x)
        tex += _noise_field("cotton", scale, shape, d["material_seed"])
    else:
        tex = _noise_field(kind, scale, shape, d["material_seed"])
    return (1.0 + amp * tex).astype(np.float32)


def bound_edges(u: np.ndarray, v: np.ndarray, width_px: float, scale: float,
                d: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """A surgical mask's bound edges, in render pixels: (tape, stitch) float32 maps like ``u``.

    ``tape`` (0..1, soft-edged) is where the binding tape lies along the top, bottom and sides;
    ``stitch`` (0..1) is the stitch line along its inner edge: dashes about 2.5 mm long on a mask
    big enough to show them, a continuous faint line (their average) on a smaller one."""
    tape_v = d["tape"]
    tape_u = tape_v * 1.4            # v spans about 0.7 of the mask's width, u spans 2 widths
    height_px = width_px * 0.7
    # distance (render px) inside the tape's inner edge: > 0 on the tape
    inside = np.maximum(np.maximum(tape_v - v, v - (1 - tape_v)) * height_px,
                        (np.abs(u) - (1 - tape_u)) * width_px / 2)
    tape = np.clip(inside / max(0.7 * scale, 0.7) + 0.5, 0.0, 1.0)
    # the stitch line: just inside the tape's inner edge, about 0.5 output px wide
    line_w = max(0.5 * scale, 0.6)
    off = max(0.25 * tape_v * height_px, line_w)
    stitch = np.exp(-((inside - off) / line_w) ** 2)
    period = 0.014 * width_px                   # ~2.5 mm on a ~175 mm wide mask
    if period >= 3.0 * scale:                   # dashes show: at least 3 output px each
        along = np.where(np.abs(u) > 1 - tape_u - off * 2 / width_px, v * height_px,
                         u * width_px / 2)
        stitch = stitch * (np.sin(2 * np.pi * along / period) > -0.3)
    else:
        stitch = stitch * 0.6
    return tape.astype(np.float32), stitch.astype(np.float32)


def edge_wobble(shape: tuple[int, int], amount: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Smooth displacements (dx, dy, float32 maps of ``shape``, unit: the mask's width times
    ``amount``) that make a drawn outline slightly irregular, about 9 bumps along the mask."""
    return (amount * _smooth_noise(shape, (9, 6), seed, cv2.INTER_LINEAR),
            amount * _smooth_noise(shape, (9, 6), seed + 1, cv2.INTER_LINEAR))


def template_uv(grid: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(u, v) of every pixel of a drawn template (float32 maps of ``shape``) from its anchor grid:
    ``u`` by the columns' x positions, ``v`` between the top and bottom rows at that x."""
    g = np.asarray(grid, np.float64)
    cols = g.shape[1]
    xs = np.arange(shape[1], dtype=np.float64)
    ys = np.arange(shape[0], dtype=np.float64)
    us = np.linspace(-1.0, 1.0, cols)
    gx = g[0, :, 0]
    slope = (us[-1] - us[0]) / max(gx[-1] - gx[0], 1e-6)
    u_row = np.interp(xs, gx, us, left=np.nan, right=np.nan)
    u_row = np.where(np.isnan(u_row), us[0] + (xs - gx[0]) * slope, u_row)
    top = np.interp(xs, g[0, :, 0], g[0, :, 1])
    bottom = np.interp(xs, g[-1, :, 0], g[-1, :, 1])
    v = (ys[:, None] - top[None, :]) / np.maximum(bottom - top, 1e-6)[None, :]
    u = np.broadcast_to(u_row[None, :], shape)
    return u.astype(np.float32), v.astype(np.float32)
