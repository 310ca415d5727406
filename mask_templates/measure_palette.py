"""Measure the colours real masks come in, from real masked face crops: writes ``palette.json``.

For every photo of a folder of masked face crops (by default ../shared/data/masks/chandrikadeb7/
with_mask), the median colour of the lower-middle of the crop (where the mask is) is taken, relative
to the photo's own whites (so a white mask in a dim photo still counts as white); the colours are then
clustered (k-means, fixed seed; skin-coloured samples dropped) into a palette with each colour's share. Deterministic.

    .venv/bin/python mask_templates/measure_palette.py [--data DIR] [--k 14]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from maskprep.images import ImageReadError, list_images, read_image  # noqa: E402
from maskprep.masks.render import luminance  # noqa: E402

OUT = Path(__file__).resolve().parent / "palette.json"
REGION = (0.36, 0.64, 0.66, 0.86)   # x0, x1, y0, y1 fractions: the lower middle of a tight crop


def mask_colour(image: np.ndarray) -> np.ndarray:
    """The median colour of the mask region of one crop, scaled to the photo's whites (0..255)."""
    h, w = image.shape[:2]
    x0, x1, y0, y1 = REGION
    patch = image[int(y0 * h):int(y1 * h), int(x0 * w):int(x1 * w)].reshape(-1, 3).astype(np.float32)
    white = float(np.percentile(luminance(image[::2, ::2]), 99))
    return np.clip(np.median(patch, axis=0) * 245.0 / max(white, 60.0), 0, 255)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path,
                        default=ROOT.parent / "shared" / "data" / "masks" / "chandrikadeb7" / "with_mask")
    parser.add_argument("--k", type=int, default=14)
    args = parser.parse_args()
    colours = []
    for path in list_images(args.data):
        try:
            colours.append(mask_colour(read_image(path)))
        except ImageReadError:
            continue
    data = np.asarray(colours, np.float32)
    # a crop framed differently shows skin there: drop skin-coloured samples (the YCrCb skin range
    # maskprep.masks.synth.skin_fraction uses); a few pink or beige masks go with them
    ycc = cv2.cvtColor(np.clip(data, 0, 255).astype(np.uint8)[None], cv2.COLOR_RGB2YCrCb)[0]
    skin = (ycc[:, 1] >= 138) & (ycc[:, 1] <= 178) & (ycc[:, 2] >= 77) & (ycc[:, 2] <= 127)
    data = data[~skin]
    cv2.setRNGSeed(0)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 100, 0.5)
    _, labels, centres = cv2.kmeans(data, args.k, None, criteria, 5, cv2.KMEANS_PP_CENTERS)
    counts = np.bincount(labels.ravel(), minlength=args.k)
    order = np.argsort(-counts)
    palette = [{"rgb": [int(round(c)) for c in centres[i]], "share": round(float(counts[i] / counts.sum()), 4)}
               for i in order]
    OUT.write_text(json.dumps({"source": "masks/chandrikadeb7/with_mask (median colour of the lower "
                                         "middle of each crop, scaled to the photo's whites)",
                               "photos": int(len(data)), "colors": palette,
                               "generator": "mask_templates/measure_palette.py"}, indent=1) + "\n",
                   encoding="utf-8")
    print(f"wrote {OUT}: {len(palette)} colours from {len(data)} photos")


if __name__ == "__main__":
    main()
