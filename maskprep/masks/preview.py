"""A contact sheet of originals beside their masked versions, read back from a synth-masks manifest."""
from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import numpy as np

from maskprep.images import ImageReadError, read_image, write_image
from maskprep.manifest import read_manifest

TILE = 200


def _tile(image: np.ndarray, box: tuple[float, float, float, float] | None) -> np.ndarray:
    """A square TILE x TILE view, zoomed on ``box`` (the faces) when given."""
    import cv2

    h, w = image.shape[:2]
    if box is not None:
        x0, y0, x1, y1 = box
        side = max(x1 - x0, y1 - y0) * 1.5
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        l, t = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
        r, b = int(min(w, cx + side / 2)), int(min(h, cy + side / 2))
        if r - l > 4 and b - t > 4:
            image = image[t:b, l:r]
            h, w = image.shape[:2]
    scale = TILE / max(h, w)
    small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))),
                       interpolation=cv2.INTER_AREA)
    tile = np.full((TILE, TILE, 3), 235, np.uint8)
    y, x = (TILE - small.shape[0]) // 2, (TILE - small.shape[1]) // 2
    tile[y:y + small.shape[0], x:x + small.shape[1]] = small
    return tile


def preview_sheet(input_dir: str | os.PathLike, output_dir: str | os.PathLike,
                  sheet_path: str | os.PathLike, limit: int = 12, per_row: int = 4) -> int:
    """Write a PNG: one row per photo, the original then up to ``per_row`` masked versions, zoomed
    on the faces. A photo whose original is gone gets a grey tile in its place; one none of whose
    files can be read is left out. Returns how many photos it shows (at most ``limit``)."""
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    rows: "OrderedDict[str, list]" = OrderedDict()
    for rec in read_manifest(output_dir):
        if rec.status != "ok" or not rec.output or rec.variant.endswith(".alpha"):
            continue
        rows.setdefault(rec.source, []).append(rec)
    shown: list[list[np.ndarray]] = []
    for source, recs in rows.items():
        if len(shown) >= limit:
            break
        boxes = [f["box"] for f in recs[0].info.get("faces", []) if "box" in f]
        box = None
        if boxes:
            b = np.asarray(boxes, float)
            box = (b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max())
        tiles = []
        for rec in recs[:per_row]:
            try:
                tiles.append(_tile(read_image(output_dir / rec.output), box))
            except ImageReadError:
                continue
        try:
            original = _tile(read_image(input_dir / source), box)
        except ImageReadError:
            if not tiles:
                continue
            original = np.full((TILE, TILE, 3), 200, np.uint8)
        shown.append([original, *tiles])
    columns = max((len(tiles) for tiles in shown), default=1)
    lines = []
    for tiles in shown:
        tiles = tiles + [np.full((TILE, TILE, 3), 255, np.uint8)] * (columns - len(tiles))
        lines.append(np.hstack([np.pad(t, ((2, 2), (2, 2), (0, 0)), constant_values=255)
                                for t in tiles]))
    if not lines:
        lines = [np.full((TILE, TILE, 3), 255, np.uint8)]
    write_image(sheet_path, np.vstack(lines))
    return len(shown)
