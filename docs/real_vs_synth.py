"""Regenerate docs/real_vs_synth.png: real masked crops next to maskprep masks of the same size.

Each row is one mask type, each column pair one wear mode: left a real masked crop from
../shared/data/masks/chandrikadeb7/with_mask (taken in file order, not matched to the type),
right a bare face from .../without_mask masked by maskprep (the face fitted as a tight crop, as
``synth-masks --assume-crop`` does). Deterministic: fixed files, fixed seeds.

    .venv/bin/python docs/real_vs_synth.py [--data ../shared/data] [--out docs/real_vs_synth.png]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from maskprep.images import list_images, read_image, write_image  # noqa: E402
from maskprep.masks.fit import WEAR_MODES  # noqa: E402
from maskprep.masks.synth import crop_face, mask_faces  # noqa: E402
from maskprep.masks.templates import MASK_TYPES  # noqa: E402

TILE = 160


def _square(image: np.ndarray) -> np.ndarray:
    return cv2.resize(image, (TILE, TILE), interpolation=cv2.INTER_AREA)


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    out = tile.copy()
    cv2.rectangle(out, (0, TILE - 16), (TILE, TILE), (0, 0, 0), -1)
    cv2.putText(out, text, (3, TILE - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def build(data: Path) -> np.ndarray:
    """The comparison sheet (RGB uint8)."""
    real = list_images(data / "masks" / "chandrikadeb7" / "with_mask")
    bare = list_images(data / "masks" / "chandrikadeb7" / "without_mask")
    real_it = iter(real[::7])
    faces = []
    for path in bare[::5]:           # bare crops whose face the crop fit accepts
        image = read_image(path)
        found = crop_face(image)
        if found is not None and min(image.shape[:2]) >= 100:
            faces.append((image, found.landmarks))
        if len(faces) == len(MASK_TYPES) * len(WEAR_MODES):
            break
    rows = []
    k = 0
    for mask_type in MASK_TYPES:
        row = []
        for wear in WEAR_MODES:
            image, lm = faces[k % len(faces)]
            out, _, _ = mask_faces(image, [lm], mask_type, wear, color="random",
                                   rng=np.random.default_rng(100 + k))
            row.append(_label(_square(read_image(next(real_it))), "real"))
            row.append(_label(_square(out), f"{mask_type} {wear}"))
            row.append(np.full((TILE, 6, 3), 255, np.uint8))
            k += 1
        rows.append(np.hstack(row))
    return np.vstack(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "real_vs_synth.png")
    args = parser.parse_args()
    write_image(args.out, build(args.data))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
