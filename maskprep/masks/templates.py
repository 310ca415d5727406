"""Mask templates: an RGBA drawing plus a grid of named anchors, loaded from ``mask_templates/``.

A template is drawn flat (see ``mask_templates/draw_templates.py``); its anchors form a
``rows x cols`` grid whose top row is the top edge (``top_center`` on the nose bridge), bottom row
the bottom edge (``chin``), outer columns the sides. Colours and patterns are applied here, on the
flat drawing, keeping its shading (pleats, seams, weave).
"""
from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
import numpy as np

from maskprep.resources import templates_dir

MASK_TYPES = ("surgical", "kf94", "cloth", "n95")

# Named colours a user can pass to --color (RGB). "natural" keeps each mask's own colour.
COLORS: dict[str, tuple[int, int, int]] = {
    "white": (238, 238, 236),
    "black": (38, 38, 42),
    "grey": (128, 130, 134),
    "blue": (70, 110, 180),
    "lightblue": (156, 200, 222),
    "navy": (36, 46, 86),
    "green": (92, 150, 110),
    "pink": (232, 160, 182),
    "red": (178, 46, 52),
    "beige": (214, 196, 168),
    "yellow": (232, 204, 86),
}
PATTERNS = ("none", "stripes", "dots", "check")
_PATTERN_LIGHT = (240, 238, 232)   # a pattern's second colour ...
_PATTERN_INK = COLORS["navy"]      # ... or this one, on a mask whose luma is within
_PATTERN_MIN_CONTRAST = 30.0       # this of the light one (white, the natural KF94 and N95)


@dataclass(frozen=True)
class MaskTemplate:
    """One mask type: its flat RGBA drawing, anchor grid and fit parameters."""

    name: str
    rgba: np.ndarray                  # H x W x 4 uint8, natural colour
    grid: np.ndarray                  # rows x cols x 2 float32 (x, y) anchor positions in ``rgba``
    base_color: tuple[int, int, int]  # the flat colour the drawing is shaded from
    fit: dict[str, float] = field(default_factory=dict)
    anchors: dict[str, tuple[float, float]] = field(default_factory=dict)
    kind: str = "drawn"               # "bank": a real mask cut from a photo (maskprep build-templates)

    @property
    def rows(self) -> int:
        """Anchor rows, top edge to bottom edge."""
        return int(self.grid.shape[0])

    @property
    def cols(self) -> int:
        """Anchor columns, left side to right side (odd: the middle one is the face's midline)."""
        return int(self.grid.shape[1])


@functools.lru_cache(maxsize=None)
def load_template(name: str) -> MaskTemplate:
    """Load a bundled template by mask type (``surgical``, ``kf94``, ``cloth``, ``n95``), or a bank
    template by the path of its JSON (written by ``maskprep build-templates``)."""
    if name not in MASK_TYPES:
        if name.endswith(".json") and Path(name).is_file():
            return load_template_file(name)
        raise ValueError(f"unknown mask type {name!r}: choose from {', '.join(MASK_TYPES)}")
    return load_template_file(templates_dir() / f"{name}.json")


def load_template_file(path: str | os.PathLike) -> MaskTemplate:
    """Load a template from its JSON (anchors, fit) and the RGBA image the JSON names beside it."""
    from PIL import Image

    path = Path(path)
    folder = path.parent
    meta = json.loads(path.read_text(encoding="utf-8"))
    with Image.open(folder / meta["image"]) as img:
        rgba = np.asarray(img.convert("RGBA"), dtype=np.uint8).copy()
    rows, cols = meta["grid"]
    points = [meta["anchors"][n] for n in meta["grid_order"]]
    grid = np.asarray(points, np.float32).reshape(rows, cols, 2)
    rgba.setflags(write=False)
    grid.setflags(write=False)
    return MaskTemplate(name=meta.get("name", path.stem), rgba=rgba, grid=grid,
                        base_color=tuple(meta["base_color"]), fit=dict(meta.get("fit", {})),
                        anchors={k: tuple(v) for k, v in meta["anchors"].items()},
                        kind=meta.get("kind", "drawn"))


@functools.lru_cache(maxsize=1)
def real_palette() -> tuple[tuple[tuple[int, int, int], float], ...]:
    """The colours real masks come in and each one's share: ``mask_templates/palette.json``,
    measured from real masked photos by ``mask_templates/measure_palette.py``."""
    meta = json.loads((templates_dir() / "palette.json").read_text(encoding="utf-8"))
    return tuple((tuple(int(c) for c in entry["rgb"]), float(entry["share"]))  # type: ignore[misc]
                 for entry in meta["colors"])


def parse_color(text: str) -> tuple[int, int, int] | str:
    """``natural``/``random``, a name from :data:`COLORS`, or ``#rrggbb`` -> RGB (or the keyword)."""
    value = text.strip().lower()
    if value in ("natural", "random"):
        return value
    value = value.replace("gray", "grey")   # both spellings name one colour
    if value in COLORS:
        return COLORS[value]
    if re.fullmatch(r"#?[0-9a-f]{6}", value):
        value = value.lstrip("#")
        return tuple(int(value[i:i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]
    raise ValueError(f"unknown colour {text!r}: use natural, random, #rrggbb or one of "
                     f"{', '.join(COLORS)}")


def _pattern(kind: str, shape: tuple[int, int], color: np.ndarray, scale: float,
             rng: np.random.Generator) -> np.ndarray:
    """A flat printed pattern (H x W x 3 float, 0..255) in template pixels."""
    h, w = shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    from maskprep.masks.render import luminance

    # The second colour: off-white, or dark ink on a white mask (off-white on it is invisible).
    second = np.array(_PATTERN_LIGHT, np.float32)
    if abs(float(luminance(color)) - float(luminance(second))) < _PATTERN_MIN_CONTRAST:
        second = np.array(_PATTERN_INK, np.float32)
    phase = float(rng.uniform(0, 1))
    if kind == "stripes":
        period = 22.0 * scale
        band = ((xs + ys * 0.6) / period + phase) % 1.0 < 0.5
        return np.where(band[..., None], color, second)
    if kind == "dots":
        period = 18.0 * scale
        cx = xs / period + phase
        gx = cx % 1.0 - 0.5
        # every other column of dots is staggered by half a period: the column is the one the dot
        # centre is in (with its phase), or a phase cuts dots in two halves shifted apart
        gy = (ys / period + (np.floor(cx) % 2) * 0.5) % 1.0 - 0.5
        dot = gx ** 2 + gy ** 2 < 0.06
        return np.where(dot[..., None], second, color)
    if kind == "check":
        period = 20.0 * scale
        a = ((xs / period + phase) % 1.0) < 0.5
        b = ((ys / period + phase) % 1.0) < 0.5
        weight = (a.astype(np.float32) + b.astype(np.float32)) / 2.0
        return second * (1 - weight[..., None]) + color * weight[..., None]
    return np.broadcast_to(color, (h, w, 3)).astype(np.float32)


def colored_rgba(template: MaskTemplate, color: tuple[int, int, int] | None = None,
                 pattern: str | None = "none", rng: np.random.Generator | None = None) -> np.ndarray:
    """The template's RGBA in another colour and/or pattern, keeping its shading.

    ``color=None`` with no pattern returns the natural drawing. Shading is the ratio of each
    pixel's luminance to the base colour's, so pleats and seams survive any colour.
    """
    pattern = pattern or "none"   # "" and None mean no pattern, with or without a colour
    if color is None and pattern == "none":
        return template.rgba
    from maskprep.masks.render import luminance   # cv2: not needed by the CLI's help text

    if pattern not in PATTERNS:
        raise ValueError(f"unknown pattern {pattern!r}: choose from {', '.join(PATTERNS)}")
    rng = rng if rng is not None else np.random.default_rng(0)
    rgb = template.rgba[..., :3].astype(np.float32)
    base = np.asarray(template.base_color, np.float32)
    shade = luminance(rgb) / max(float(luminance(base)), 1.0)
    target = np.asarray(color if color is not None else template.base_color, np.float32)
    flat = _pattern(pattern, rgb.shape[:2], target, template.rgba.shape[1] / 320.0, rng)
    out = np.clip(flat * shade[..., None], 0, 255)
    return np.dstack([out.astype(np.uint8), template.rgba[..., 3]])

