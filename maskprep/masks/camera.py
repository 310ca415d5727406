"""The camera layer: bring a mask rendered at a higher resolution down to the photo's pixels, with
the photo's softness, grain and JPEG artefacts. Pure functions on arrays."""
from __future__ import annotations

import cv2
import numpy as np

from maskprep.masks import surface
from maskprep.masks.render import _blur_of_luminance, _detail, luminance


SUPERSAMPLE_PX = 120   # render px across a small mask (supersampled, then area-resampled)


def render_scale(mask_width: float) -> float:
    """Render pixels per output pixel for a mask ``mask_width`` output px wide: small masks are
    rendered larger (about SUPERSAMPLE_PX render px across: creases, edges and loops anti-aliased when
    resampled), large ones at the photo's own size (their creases span several pixels anyway), very
    large ones (over 480 px: their photos are soft; the cost grows with the area) a little smaller.
    Rendering a 340 px mask at 0.7x visibly blurred it next to a sharp face."""
    if mask_width > 480:
        return round(max(0.5, 480.0 / mask_width), 2)
    scale = float(np.clip(SUPERSAMPLE_PX / max(mask_width, 1.0), 1.0, 2.5))
    return 1.0 if scale < 1.25 else round(scale, 2)


def downsample(rgb: np.ndarray, alphas: list[np.ndarray], size: tuple[int, int],
               scale: float) -> tuple[np.ndarray, list[np.ndarray]]:
    """Area-resample a render (colour premultiplied by ``alphas[0]``) to ``size`` (w, h)."""
    if scale == 1 and rgb.shape[1::-1] == tuple(size):
        return rgb, alphas
    how = cv2.INTER_AREA if scale > 1 else cv2.INTER_LINEAR
    a = cv2.resize(alphas[0], size, interpolation=how)
    pre = cv2.resize(rgb * alphas[0][..., None], size, interpolation=how)
    plain = cv2.resize(rgb, size, interpolation=how)
    out = np.where(a[..., None] > 1e-3, pre / np.maximum(a[..., None], 1e-3), plain)
    rest = [cv2.resize(x, size, interpolation=how) for x in alphas[1:]]
    return np.clip(out, 0, 255), [np.clip(a, 0, 1), *rest]


def draw_camera(face_rgb: np.ndarray, cover: np.ndarray, rng: np.random.Generator,
                amount: float = 1.0) -> dict:
    """The camera draws for one mask: blur (measured on the face), grain level (measured on the
    covered skin) and a JPEG quality (drawn: the source's compression is unknown)."""
    covered = cover[::2, ::2] > 0.5
    lum = luminance(face_rgb)
    blur = _blur_of_luminance(lum) * amount if covered.sum() >= 16 else 0.0
    detail = _detail(lum[::2, ::2], covered) if covered.sum() >= 16 else 0.0
    return {"blur": round(float(blur), 3), "grain": round(float(min(detail * 0.35, 2.5) * amount), 3),
            "jpeg": int(rng.integers(70, 96)) if amount > 0 else 0,
            "grain_seed": int(rng.integers(1 << 30))}


def apply_camera(rgb: np.ndarray, alphas: list[np.ndarray], d: dict) -> tuple[np.ndarray, list[np.ndarray]]:
    """Blur the mask (and its edges) like the photo, add its grain, round-trip it through JPEG.

    The grain and JPEG touch only the mask's colour, never the face: blending stays a convex mix."""
    out = rgb
    if d["blur"] > 0.1:   # a soft photo has soft mask edges and seams too
        # colour and alphas blurred together: one pass of the filter over a stacked array
        both = cv2.GaussianBlur(np.dstack([out, *alphas]), (0, 0), d["blur"])
        out = both[..., :3]
        alphas = [np.clip(both[..., 3 + k], 0, 1) for k in range(len(alphas))]
    if d["grain"] > 0.2:
        noise = surface.white_noise(out.shape[:2], d["grain_seed"])
        out = out + noise[..., None] * d["grain"]
    out = np.clip(out, 0, 255)
    if d["jpeg"] and min(out.shape[:2]) >= 8:
        bgr = cv2.cvtColor(np.rint(out).astype(np.uint8), cv2.COLOR_RGB2BGR)
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(d["jpeg"])])
        if ok:
            out = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return out.astype(np.float32, copy=False), alphas
