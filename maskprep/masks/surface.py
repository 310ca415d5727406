"""Surface and material of a drawn mask: a height field and an albedo texture per mask type.

Both are computed in *render space* (the output pixels, supersampled) from the warped template
coordinates ``(u, v)``: ``u`` runs -1..1 from the mask's left side to its right side, ``v`` 0..1 from
its top edge to its bottom edge. So pleats, folds, seams and threads follow the fitted mask (they
bend with the face), and their size is set in output pixels (a fibre is a fibre at any face size).

``draw_surface`` makes every random choice (recorded in the manifest); ``height_field`` and
``material`` are then pure functions of ``(u, v)``, the mask width and those draws.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

# Drawn mask types and the materials each is made of (real masks: spunbond/melt-blown nonwovens for
# disposables, cotton weave or a smooth polyurethane "sponge" knit for washable ones).
MATERIALS = {"surgical": ("nonwoven",), "kf94": ("nonwoven", "meltblown"),
             "n95": ("nonwoven", "meltblown"), "cloth": ("cotton", "knit", "knit")}


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
        "wrinkle": round(float(rng.uniform(0.002, 0.008) * (1.8 if pulled else 1.0)), 4),
        "wrinkle_seed": int(rng.integers(1 << 30)),
        "material": str(MATERIALS[kind][int(rng.integers(len(MATERIALS[kind])))]),
        "fibre": round(float(rng.uniform(0.008, 0.022)), 4),     # texture contrast
        "material_seed": int(rng.integers(1 << 30)),
    }
    if kind == "surgical":
        n = int(rng.choice([2, 3, 3, 3, 4]))
        span = rng.uniform(0.42, 0.56) * (0.75 if pulled else 1.0)
        centre = rng.uniform(0.47, 0.55)
        vs = np.linspace(centre - span / 2, centre + span / 2, n) + rng.normal(0, 0.015, n)
        d.update(pleats=[round(float(x), 4) for x in np.sort(vs)],
                 pleat_depth=round(float(rng.uniform(0.009, 0.016)), 4),
                 pleat_width=round(float(rng.uniform(0.09, 0.14) * (0.7 if pulled else 1.0)), 4))
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


def _smooth_noise(shape: tuple[int, int], cells: tuple[int, int], seed: int) -> np.ndarray:
    """Low-frequency noise (about ``cells`` bumps across), zero mean, unit-ish amplitude."""
    rng = np.random.default_rng(seed)
    coarse = rng.standard_normal((cells[1] + 1, cells[0] + 1)).astype(np.float32)
    return cv2.resize(coarse, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


def height_field(kind: str, u: np.ndarray, v: np.ndarray, width_px: float,
                 d: dict[str, Any]) -> np.ndarray:
    """Height of the mask surface above its flat outline, in render pixels (float32, like ``u``).

    The global form (dome, cheek wrap, the turn under the chin) plus the type's folds: surgical
    pleats (a slow rise to each crease, then a sharp drop: lit band, dark crease), the KF94's
    horizontal centre fold and chin seam, the N95's moulded cup, the cloth mask's centre seam."""
    uc = np.clip(u, -1.0, 1.0)
    vc = np.clip(v, 0.0, 1.0)
    # the global form runs on smoothly past the outline (no kink at the edge for the shading to find)
    ue, ve = np.clip(u, -1.3, 1.3), np.clip(v, -0.3, 1.3)
    h = (d["dome"] * (1 - ue ** 2) * np.exp(-((ve - 0.5) / 0.42) ** 2)
         - d["wrap"] * ue ** 2 - d["chin_wrap"] * np.clip(ve - 0.7, 0, None) ** 2 / 0.09)
    if kind == "surgical":
        taper = 1 - _smoothstep((np.abs(uc) - 0.86) / 0.14) * 0.7   # pleats pressed flat at the side tape
        # the profile across v is one curve: tabulate it once, look it up per pixel
        t = np.linspace(0.0, 1.0, 1025)
        prof = np.zeros_like(t)
        width = d["pleat_width"]
        for pv in d["pleats"]:
            x = (t - (pv - width)) / width      # 0..1 over the rise, the crease at 1
            rise = _smoothstep(x) * (x < 1.0)
            drop = np.exp(-np.clip(x - 1.0, 0, None) * 4.0) * (x >= 1.0)   # the crease: steep
            prof += d["pleat_depth"] * (rise + drop * 0.999) * (x > 0)
        edge = np.minimum(t, 1 - t)
        tape = 0.004 * _smoothstep(edge / 0.06) - 0.004  # bound edge: a flat tape, slightly lower
        wire = -0.006 * np.exp(-((t - 0.075) / 0.02) ** 2)   # nose wire: a crease under the top tape
        h += (taper * np.interp(vc, t, prof).astype(np.float32) + np.interp(vc, t, tape)
              + np.interp(vc, t, wire) * (np.abs(uc) < 0.4))
    elif kind == "kf94":
        fold = d["fold"]
        h += d["fold_depth"] * (1 - np.abs(vc - fold) / max(fold, 1 - fold))
        below = _smoothstep((vc - fold) / 0.1)
        h += d["seam_depth"] * (1 - np.minimum(np.abs(uc) / 0.5, 1.0)) * below
        h -= 0.02 * _smoothstep((np.abs(uc) - 0.8) / 0.06)    # welded side flaps
    elif kind == "n95":
        r2 = uc ** 2 + ((vc - 0.5) * 2) ** 2
        h += d["dome"] * np.sqrt(np.clip(1 - 0.8 * r2, 0, None))
        if "valve" in d:
            h += 0.035 * valve(uc, vc, d["valve"])
    elif kind == "cloth":
        h += d["seam_depth"] * (1 - np.minimum(np.abs(uc) / 0.7, 1.0)) ** 1.5
    if d["wrinkle"] > 0:
        h += d["wrinkle"] * _smooth_noise(u.shape, (5, 4), d["wrinkle_seed"])
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
    gx = cv2.Sobel(height, cv2.CV_32F, 1, 0, ksize=3) / 8.0
    gy = cv2.Sobel(height, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    n = np.dstack([-gx, -gy, np.ones_like(gx)])
    return n / np.linalg.norm(n, axis=2, keepdims=True)


def material(u: np.ndarray, v: np.ndarray, width_px: float, scale: float,
             d: dict[str, Any]) -> np.ndarray:
    """Albedo multiplier (mean about 1) of the mask's material, in render pixels.

    ``scale`` is render pixels per output pixel: fibres and threads keep their size in the output.
    Nonwoven: short fibres (noise stretched along random directions); melt-blown: soft blotches;
    cotton: a weave that follows the mask's (u, v); knit: fine pores."""
    rng = np.random.default_rng(d["material_seed"])
    shape = u.shape
    amp = d["fibre"]
    kind = d["material"]
    noise = rng.standard_normal(shape).astype(np.float32)
    if kind == "nonwoven":
        a = cv2.GaussianBlur(noise, (0, 0), sigmaX=1.6 * scale, sigmaY=0.45 * scale)
        b = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0),
                             sigmaX=0.45 * scale, sigmaY=1.6 * scale)
        tex = (a + b) / max(float(np.std(a + b)), 1e-6)
    elif kind == "meltblown":
        tex = cv2.GaussianBlur(noise, (0, 0), 1.2 * scale)
        tex = tex / max(float(np.std(tex)), 1e-6) * 0.8
        fine = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), 0.5 * scale)
        tex += 0.6 * fine / max(float(np.std(fine)), 1e-6)
    elif kind == "cotton":
        # threads about 1.6 output px apart, never fewer than 60 across the mask
        period = min(1.6 * scale, width_px / 60.0)
        x = u * width_px / 2 / period
        y = v * width_px * 0.75 / period
        tex = 0.9 * np.sin(2 * np.pi * (x + y) / 2) + 0.5 * np.sin(2 * np.pi * x)
        tex += cv2.GaussianBlur(noise, (0, 0), 0.6 * scale)
    else:  # knit / sponge
        tex = cv2.GaussianBlur(noise, (0, 0), 0.5 * scale)
        tex = tex / max(float(np.std(tex)), 1e-6) * 0.7
    return (1.0 + amp * tex).astype(np.float32)


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
