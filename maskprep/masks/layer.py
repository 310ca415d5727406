"""One mask on one face, layer by layer: geometry -> surface -> material -> light -> camera.

Each layer draws from its own random stream (``derive_seed`` of one seed taken from the caller's
generator and the layer's name), so changing one layer's draws leaves the others' alone; every
draw is returned in ``MaskLayer.params`` for the manifest. The mask is rendered at a higher
resolution (``camera.render_scale``) in a box holding the mask and its loops, then resampled.

Drawn templates (``kind == "drawn"``) get the synthetic surface and material; a template cut from
a real photo (``kind == "bank"``) already has both, and gets only the warp, light and camera.
"""
from __future__ import annotations

from typing import Any, Mapping

import cv2
import numpy as np

from maskprep.masks import camera, light as lightmod, surface
from maskprep.masks.fit import draw_fit, extend_grid, face_frame, fit_grid, loop_paths
from maskprep.masks.render import MaskLayer, feather, mesh_maps, quantile
from maskprep.masks.templates import MaskTemplate, colored_rgba
from maskprep.runner import derive_seed

STRAPS = {"n95": "bands"}                   # the others have ear loops
WOBBLE_MIN_PX = 0.4                         # edge wobble (1 sigma, output px) worth drawing
SMOOTH_OUTLINE_PX = 160                     # masks wider than this get a smoothed outline
LOOP_VISIBLE = 0.85                          # share of outputs whose loops show (hair hides the rest)
# Real strap colours of N95s (off-white elastic, yellow, blue) as albedo 0..1
# (muted: a strap is a thin elastic seen edge-on, partly in the shade of the head)
BAND_COLORS = ((0.86, 0.85, 0.81), (0.85, 0.8, 0.6), (0.5, 0.6, 0.72))
BAND_FADE = 0.3                              # last share of a strap fading out behind the head



class _Streams(dict):
    """One generator per layer name (``derive_seed`` of one seed), made when first asked for:
    a stream a mask does not use (the print of a plain mask) costs nothing, and each stream's
    draws are the same whether or not the others were made."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.seed = seed

    def __missing__(self, name: str) -> np.random.Generator:
        self[name] = np.random.default_rng(derive_seed(self.seed, name))
        return self[name]


def _streams(rng: np.random.Generator) -> dict[str, np.random.Generator]:
    return _Streams(int(rng.integers(1 << 62)))


_UV: dict[tuple, np.ndarray] = {}   # per-process cache: the (u, v) maps of a template at one size


def _template_uv(template: MaskTemplate, shape: tuple[int, int], src: np.ndarray) -> np.ndarray:
    """The template's (u, v) maps (H x W x 2 float32) at ``shape``, computed once per process."""
    key = (template.name, template.kind, shape, src.tobytes())
    if key not in _UV:
        if len(_UV) > 256:
            _UV.clear()
        _UV[key] = np.dstack(surface.template_uv(src, shape))
    return _UV[key]


def refine_columns(grid: np.ndarray, smooth: bool) -> np.ndarray:
    """A ``rows x (2 cols - 1)`` grid: a point between each pair of columns, on the straight line
    (``smooth=False``: the flat template) or on a Catmull-Rom curve through the row (the fitted
    face grid, whose rows follow the jaw: a straight chord there left a faceted outline)."""
    g = np.asarray(grid, np.float32)
    left, right = g[:, :-1], g[:, 1:]
    mid = (left + right) / 2
    if smooth and g.shape[1] >= 3:
        before = np.concatenate([g[:, :1] * 2 - g[:, 1:2], g[:, :-2]], axis=1)
        after = np.concatenate([g[:, 2:], g[:, -1:] * 2 - g[:, -2:-1]], axis=1)
        bend = (mid - (before + after) / 2) * 0.125   # Catmull-Rom at t = 1/2 ...
        # ... never more than a fifth of the columns' spacing (compressed columns on the far side
        # of a turned head would fold over)
        room = 0.2 * np.linalg.norm(right - left, axis=-1, keepdims=True)
        size = np.linalg.norm(bend, axis=-1, keepdims=True)
        mid = mid + bend * np.minimum(1.0, room / np.maximum(size, 1e-6))
    out = np.empty((g.shape[0], 2 * g.shape[1] - 1, 2), np.float32)
    out[:, ::2] = g
    out[:, 1::2] = mid
    return out


_SHRUNK: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}   # per process: natural-colour templates at a few sizes


def _shrunk(template: MaskTemplate, rgba: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``rgba`` area-resized to ``size``; cached when it is the template's own drawing."""
    if rgba is not template.rgba:
        return cv2.resize(rgba, size, interpolation=cv2.INTER_AREA)
    key = (template.name, template.kind, id(template.rgba), size)
    if key not in _SHRUNK:
        if len(_SHRUNK) > 64:
            _SHRUNK.clear()
        # the drawing itself is kept with it: its id cannot be reused while the entry lives
        _SHRUNK[key] = (rgba, cv2.resize(rgba, size, interpolation=cv2.INTER_AREA))
    return _SHRUNK[key][1]


def render_layer(image: np.ndarray, landmarks: np.ndarray, template: MaskTemplate,
                 wear: str = "correct", color: tuple[int, int, int] | None = None,
                 pattern: str = "none", rng: np.random.Generator | None = None,
                 jitter: float = 1.0, realism: float = 1.0,
                 draws: Mapping[str, Any] | None = None) -> tuple[MaskLayer, np.ndarray]:
    """Render one mask for one face: the layer (colour, alpha, contact shadow, draws) and the
    fitted anchor grid. ``draws`` overrides single draws (``loops``: True/False).

    ``jitter=0`` keeps the template's own fit; ``realism=0`` skips the camera layer."""
    rng = rng if rng is not None else np.random.default_rng(0)
    force = dict(draws or {})
    streams = _streams(rng)
    lm = np.asarray(landmarks, np.float64)
    frame = face_frame(lm)
    drawn = template.kind != "bank"
    params: dict[str, Any] = {}

    # geometry
    g = streams["geometry"]
    fit = draw_fit(template.fit, g, slip=drawn) if jitter > 0 else dict(template.fit)
    dst = fit_grid(lm, template.rows, template.cols, wear, fit, g, jitter)
    straps = STRAPS.get(template.name, "loops")
    loops_on = bool(force.get("loops", g.random() < LOOP_VISIBLE)) and drawn
    paths = loop_paths(dst, lm, straps) if loops_on else []
    params["fit"] = {k: round(float(v), 4) for k, v in fit.items()}
    params["loops"] = straps if loops_on else "hidden"

    # colour and print, flat in template space (the warp makes them follow the mask)
    printed = color is not None or (pattern or "none") != "none"   # else the drawing as it is
    rgba = colored_rgba(template, color, pattern, streams["print"] if printed else None)
    src = template.grid.astype(np.float32)
    target_w = float(np.hypot(*(dst[0, -1] - dst[0, 0])))
    scale = camera.render_scale(target_w)
    template_w = float(src[0, -1, 0] - src[0, 0, 0])
    # in steps of 1/16, rounded up: a handful of sizes per template, cached for its own colours
    factor = min(1.0, np.ceil(16 * 1.5 * scale * target_w / template_w) / 16)
    if factor < 0.8:   # shrink first: a big down-scaling warp would alias the drawing
        tw, th = max(8, int(round(rgba.shape[1] * factor))), max(8, int(round(rgba.shape[0] * factor)))
        rgba = _shrunk(template, rgba, (tw, th))
        src = (src + 0.5) * np.array([tw / template.rgba.shape[1], th / template.rgba.shape[0]],
                                     np.float32) - 0.5

    # the box: mask and loops, in image px, then in render px
    # on a big mask, twice as many columns, the face's on a smooth curve: no facets along the
    # jaw-side outline (on a small one the facets are under a pixel or two: not worth the triangles)
    if target_w > SMOOTH_OUTLINE_PX:
        src_ext = extend_grid(refine_columns(src, False), col_margin=2.0)   # the same margin
        dst_ext = extend_grid(refine_columns(dst, True), col_margin=2.0)
    else:
        src_ext, dst_ext = extend_grid(src), extend_grid(dst)
    pts = np.concatenate([dst_ext.reshape(-1, 2), *paths]) if paths else dst_ext.reshape(-1, 2)
    hgt, wid = image.shape[:2]
    x0 = int(np.clip(np.floor(pts[:, 0].min()) - 2, 0, wid))
    y0 = int(np.clip(np.floor(pts[:, 1].min()) - 2, 0, hgt))
    x1 = int(np.clip(np.ceil(pts[:, 0].max()) + 3, 0, wid))
    y1 = int(np.clip(np.ceil(pts[:, 1].max()) + 3, 0, hgt))
    if x1 - x0 < 2 or y1 - y0 < 2:
        empty = np.zeros((0, 0), np.float32)
        return MaskLayer(np.zeros((0, 0, 3), np.float32), empty, x0, y0, params=params), dst
    w, h = x1 - x0, y1 - y0
    W, H = max(2, int(round(w * scale))), max(2, int(round(h * scale)))

    def to_render(p: np.ndarray) -> np.ndarray:
        return (np.asarray(p, np.float64) - (x0, y0) + 0.5) * scale - 0.5

    map_x, map_y, inside = mesh_maps(src_ext, to_render(dst_ext), (0, 0, W, H))
    mask_w_render = target_w * scale
    synthetic = drawn and template.name in surface.MATERIALS
    if synthetic:
        sd = surface.draw_surface(template.name, wear, streams["surface"])
        params["surface"] = sd
    if synthetic and sd["edge_wobble"] * target_w >= WOBBLE_MIN_PX:
        # an irregular outline: the template is sampled through slightly wobbling maps (on a small
        # mask the wobble is under a pixel: not drawn)
        dx, dy = surface.edge_wobble((H, W), sd["edge_wobble"] * template_w, sd["edge_seed"])
        # ... but hardly along the top edge: the nose wire and the tape keep it straight
        top_y, bottom_y = float(src[0, :, 1].mean()), float(src[-1, :, 1].mean())
        calm = np.clip((map_y - top_y) * (2.5 / max(bottom_y - top_y, 1e-3)), 0.15, 1.0)
        if wear != "correct":   # ... unless pulled down: the rolled, bunched edge is wavy
            calm = 1.0 + 2.0 * (1.0 - calm) / 0.85
        map_x, map_y = map_x + dx * calm, map_y + dy * calm
    warped = cv2.remap(rgba, map_x, map_y, interpolation=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)
    alpha_t = warped[..., 3] * (inside * np.float32(1 / 255.0))   # float32 from here on
    # a soft edge (a real mask's edge is never a cut-out): about 0.6 % of the mask's width
    # ... but never more than a pixel (a big, sharp face has crisp mask edges)
    body = feather(alpha_t, float(np.clip(0.006 * target_w, 0.45, 1.0)) * scale)
    # surface, material and light only where the mask body is (the box also holds the loops)
    bx, by, bw, bh = cv2.boundingRect((body > 0).astype(np.uint8))
    if bw == 0 or bh == 0:
        bx, by, bw, bh = 0, 0, W, H
    sl = (slice(by, by + bh), slice(bx, bx + bw))
    rgb = warped[sl][..., :3].astype(np.float32)
    if synthetic:
        uv = cv2.remap(_template_uv(template, rgba.shape[:2], src), map_x[sl], map_y[sl],
                       interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        u, v = uv[..., 0], uv[..., 1]

    # surface and material (drawn masks only)
    if synthetic:
        height = surface.height_field(template.name, u, v, mask_w_render, sd)
        normal = surface.normals(height)
        albedo = rgb / 245.0 * surface.material(u, v, mask_w_render, scale, sd)[..., None]
        if "tape" in sd:   # bound edges: a lighter tape, its stitch line darker
            tape, stitch = surface.bound_edges(u, v, mask_w_render, scale, sd)
            albedo = albedo + (1.0 - albedo) * (sd["tape_light"] * tape)[..., None]
            albedo = albedo * (1.0 - sd["stitch"] * stitch)[..., None]
        if "valve" in sd:
            cover_v = surface.valve(u, v, sd["valve"])[..., None]
            albedo = albedo * (1 - cover_v) + np.asarray(sd["valve"]["color"], np.float32) * cover_v
    else:   # a cut-out (or a drawing without a synthetic surface) keeps its own shading
        albedo = rgb / 255.0

    # light
    lg = streams["light"]
    strength = float(force.get("light_strength", lg.uniform(0.75, 1.25)))
    light = lightmod.estimate_light(image, lm, strength)
    face = image[y0:y1, x0:x1]
    # the face's light falling off across the mask (measured on the uncovered upper face: the
    # beard, lips and nostrils under the mask are its colour, not its light)
    gx = x0 + (np.arange(bx, bx + bw, dtype=np.float32) + 0.5) / scale - 0.5
    gy = y0 + (np.arange(by, by + bh, dtype=np.float32) + 0.5) / scale - 0.5
    scene = light.falloff(gx[None, :], gy[:, None])
    solid = body[sl] > 0.5
    gains = np.asarray(light.gains, np.float32)
    if synthetic:
        lit = lightmod.shade(normal, light) * surface.occlusion(height, mask_w_render) * scene
        # exposure: the best-lit tenth of the mask (its form and the face's falloff together)
        # reaches the white level (a white mask is as bright as the photo's whites allow); the
        # rest is shaded below it, never lifted past it (a flat paper white, clipped)
        if solid.any():
            norm = max(quantile(lit[solid][::3], 0.9), 0.5)
            lit, scene = lit / norm, scene / norm
        level = light.white
    else:   # only the exposure of this photo is applied, and the falloff only darkens
        if solid.any():
            scene = scene / max(1.0, quantile(scene[solid][::3], 0.98))
        lit = scene
        level = 255.0 * lightmod.exposure_gain(image, lm)
    out = np.zeros((H, W, 3), np.float32)
    out[sl] = albedo * (level * lit)[..., None] * gains
    if synthetic and sd.get("sheen", 0) > 0:   # white light reflected off the fabric, any colour
        out[sl] += (sd["sheen"] * level * light.diffuse / 0.3 * lightmod.sheen(normal, light)
                    * scene)[..., None] * gains

    # loops / straps, behind the mask body
    alpha = body
    if paths:
        loop_a = np.zeros((H, W), np.uint8)
        # elastic of an N95 ~3 mm on a ~150 mm face, a loop's cord ~1.3 mm
        thick = max(1, int(round((0.018 if straps == "bands" else 0.009) * frame.width * scale)))
        for path in paths:
            pts = np.round(to_render(path) * 16).astype(np.int32)
            if straps == "bands":   # the strap fades out where it turns behind the head
                n = len(pts) - 1
                for i in range(n):
                    fade = min(1.0, (1.0 - i / n) / BAND_FADE)
                    cv2.line(loop_a, tuple(pts[i]), tuple(pts[i + 1]), int(round(255 * fade)),
                             thickness=thick, lineType=cv2.LINE_AA, shift=4)
            else:
                cv2.polylines(loop_a, [pts], False, 255, thickness=thick, lineType=cv2.LINE_AA,
                              shift=4)
        if straps == "bands":
            band = BAND_COLORS[int(lg.integers(len(BAND_COLORS)))]
            params["strap_color"] = list(band)
            loop_rgb = np.asarray(band, np.float32)
        elif template.name == "cloth":
            solid = body[sl] > 0.9
            loop_rgb = np.clip(np.median(albedo[solid], axis=0), 0, 1) if solid.any() \
                else np.array([0.3, 0.3, 0.3], np.float32)
        else:
            loop_rgb = np.array([0.95, 0.95, 0.94], np.float32)
        loop_col = loop_rgb[None, None, :] * level * 0.9 * gains
        # only inside the loops' box (the rest of the layer keeps the body alone)
        lx, ly, lw, lh = cv2.boundingRect(loop_a)
        alpha = body.copy()
        if lw and lh:
            ls = (slice(ly, ly + lh), slice(lx, lx + lw))
            under = body[ls]
            behind = loop_a[ls].astype(np.float32) * (1.0 / 255.0) * (1 - under)
            both = under + behind
            mixed = (out[ls] * under[..., None] + loop_col * behind[..., None]) / \
                np.maximum(both, 1e-4)[..., None]
            out[ls] = np.where(both[..., None] > 1e-4, mixed, loop_col)
            alpha[ls] = both

    # contact shadow on the skin along the top edge
    top = to_render(dst[0])
    strength_c = float(np.clip(lg.uniform(0.1, 0.28) * light.diffuse / 0.6, 0.05, 0.35))
    shadow = lightmod.contact_shadow(top, frame.up * 1.0, (H, W), 0.03 * frame.width * scale,
                                     strength_c, body)
    params["light"] = dict(light.as_params(), strength=round(strength, 3), shadow=round(strength_c, 3))

    # camera: highlights roll off towards 255 (a shoulder, not a hard clip)
    out = np.clip(lightmod.tone(out), 0, 255)
    out, (alpha, body, shadow) = camera.downsample(out, [alpha, body, shadow], (w, h), scale)
    cd = camera.draw_camera(face, body, streams["camera"], realism)
    params["camera"] = dict(cd, scale=scale)
    if realism > 0:
        out, (alpha, body) = camera.apply_camera(out, [alpha, body], cd)
    f32 = np.float32
    return MaskLayer(out.astype(f32, copy=False), alpha.astype(f32, copy=False), x0, y0,
                     shadow=np.minimum(shadow, 1.0).astype(f32, copy=False),
                     cover=body.astype(f32, copy=False), params=params), dst
