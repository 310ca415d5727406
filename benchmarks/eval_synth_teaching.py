"""What do synthetic masks teach? Train a simple classifier on synthetic data, score it on real photos.

Data: ``masks/chandrikadeb7`` (real web photos, mostly tight face crops). Each class is split in
half by a fixed seed. The held-out halves (real ``with_mask`` vs real ``without_mask``) are the test
set for every condition. Three training sets, all with the same negatives (the training half of
``without_mask`` where a usable face was found):

  synthetic  maskprep masks on those same photos (random type, colour, pattern; worn correctly)
  flat box   a flat coloured box over the same lower-face region (the mask's bounding box)
  real       real ``with_mask`` photos from the training half, as many as the negatives

Sources the detector misses (most tight crops) are masked as ``synth-masks --assume-crop`` does;
``--detected-only`` keeps only detected faces.

Classifier: logistic regression (torch, L-BFGS, L2) on hand-made features of a 64x64 crop: HOG
(gradients), HSV colour histograms of the upper and lower halves, and 16x16 pixels. No pretrained
weights anywhere. Prints the three accuracies (balanced, on the same test photos) in one run.

    .venv/bin/python benchmarks/eval_synth_teaching.py [--data DIR] [--limit N] [--seed S]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from maskprep.images import ImageReadError, list_images, read_image  # noqa: E402
from maskprep.masks.fit import check_face  # noqa: E402
from maskprep.masks.synth import crop_face, find_faces, mask_faces  # noqa: E402
from maskprep.masks.templates import MASK_TYPES  # noqa: E402

SIZE = 64


def features(image: np.ndarray) -> np.ndarray:
    """HOG + HSV histograms (upper/lower half) + 16x16 pixels of a 64x64 resize."""
    from skimage.feature import hog

    small = cv2.resize(image, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    h = hog(gray, orientations=9, pixels_per_cell=(8, 8), cells_per_block=(2, 2), feature_vector=True)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    hists = []
    for part in (hsv[: SIZE // 2], hsv[SIZE // 2:]):
        hist = cv2.calcHist([part], [0, 1, 2], None, [8, 4, 4], [0, 180, 0, 256, 0, 256]).ravel()
        hists.append(hist / max(hist.sum(), 1.0))
    pix = cv2.resize(small, (16, 16), interpolation=cv2.INTER_AREA).astype(np.float32).ravel() / 255.0
    return np.concatenate([h, *hists, pix]).astype(np.float32)


def train_logreg(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, seed: int = 0):
    """Standardised logistic regression; returns a predict(x) -> probability function."""
    import torch

    torch.manual_seed(seed)
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    xt = torch.tensor((x - mean) / std)
    yt = torch.tensor(y, dtype=torch.float32)
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xt @ w + b, yt) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)

    def predict(xs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.sigmoid(torch.tensor((xs - mean) / std) @ w + b).numpy()
    return predict


def balanced_accuracy(prob: np.ndarray, y: np.ndarray) -> float:
    pred = prob >= 0.5
    return float(((pred[y == 1] == 1).mean() + (pred[y == 0] == 0).mean()) / 2)


def _read(path: Path) -> np.ndarray | None:
    try:
        return read_image(path)
    except ImageReadError:
        return None


def flat_box(image: np.ndarray, polygons: list, rng: np.random.Generator) -> np.ndarray:
    """A flat, randomly coloured rectangle over each mask's bounding box."""
    out = image.copy()
    h, w = image.shape[:2]
    for poly in polygons:
        p = np.asarray(poly)
        x0, y0 = np.clip(np.floor(p.min(axis=0)).astype(int), 0, [w, h])
        x1, y1 = np.clip(np.ceil(p.max(axis=0)).astype(int), 0, [w, h])
        out[y0:y1, x0:x1] = rng.integers(0, 256, 3)
    return out


def build(data: Path, limit: int | None, seed: int, assume_crop: bool = True,
          realism: float = 1.0, log=print) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Features for every training condition and the shared real test set."""
    rng = np.random.default_rng(seed)
    with_mask = list_images(data / "with_mask")
    without = list_images(data / "without_mask")
    rng.shuffle(with_mask)
    rng.shuffle(without)
    half_w, half_o = len(with_mask) // 2, len(without) // 2
    train_src, test_neg = without[:half_o], without[half_o:]
    train_real, test_pos = with_mask[:half_w], with_mask[half_w:]
    if limit:
        train_src, test_neg = train_src[:limit], test_neg[:limit]
        train_real, test_pos = train_real[:limit], test_pos[:limit]

    t0 = time.perf_counter()
    neg, synth, box = [], [], []
    for i, path in enumerate(train_src):
        image = _read(path)
        if image is None:
            continue
        faces = [f.landmarks for f in find_faces(image) if check_face(f.landmarks) is None]
        if not faces and assume_crop:   # what `synth-masks --assume-crop` does
            crop = crop_face(image)
            faces = [crop.landmarks] if crop is not None and check_face(crop.landmarks) is None else []
        if not faces:
            continue
        r = np.random.default_rng([seed, i])
        mask_type = MASK_TYPES[int(r.integers(len(MASK_TYPES)))]
        masked, _, details = mask_faces(image, faces, mask_type, "correct", color="random",
                                        pattern="random", rng=r, realism=realism)
        neg.append(features(image))
        synth.append(features(masked))
        box.append(features(flat_box(image, [d["polygon"] for d in details], r)))
    log(f"  {len(neg)} of {len(train_src)} training sources had a usable face "
        f"({time.perf_counter() - t0:.0f} s to detect, mask and featurise)")
    real = [features(im) for im in map(_read, train_real[:len(neg)]) if im is not None]
    test_x = [features(im) for im in map(_read, test_pos) if im is not None]
    test_y = [1] * len(test_x)
    negs = [features(im) for im in map(_read, test_neg) if im is not None]
    test_x += negs
    test_y += [0] * len(negs)

    def pair(pos):
        x = np.array(pos + neg, np.float32)
        y = np.array([1] * len(pos) + [0] * len(neg), np.float32)
        return x, y

    return {"synthetic": pair(synth), "flat box": pair(box), "real": pair(real),
            "test": (np.array(test_x, np.float32), np.array(test_y, np.float32))}


def evaluate(data: Path, limit: int | None = None, seed: int = 0, assume_crop: bool = True,
             realism: float = 1.0, log=print) -> dict[str, float]:
    """Balanced accuracy on the real held-out photos for each training condition."""
    sets = build(data, limit, seed, assume_crop, realism, log)
    test_x, test_y = sets.pop("test")
    log(f"  test: {int(test_y.sum())} real with_mask + {int((1 - test_y).sum())} real without_mask")
    scores = {}
    for name, (x, y) in sets.items():
        predict = train_logreg(x, y, seed=seed)
        scores[name] = balanced_accuracy(predict(test_x), test_y)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path,
                        default=ROOT.parent / "shared" / "data" / "masks" / "chandrikadeb7")
    parser.add_argument("--limit", type=int, default=None, help="photos per split (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--detected-only", action="store_true",
                        help="only photos where the detector finds a face (no --assume-crop)")
    parser.add_argument("--realism", type=float, default=1.0,
                        help="synth-masks --realism for the synthetic set (0 = no photo matching)")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    started = time.perf_counter()
    scores = evaluate(args.data, args.limit, args.seed, assume_crop=not args.detected_only,
                      realism=args.realism)
    print("balanced accuracy on real held-out photos (chance = 0.50):")
    for name in ("flat box", "synthetic", "real"):
        print(f"  trained on {name:10s} {scores[name]:.3f}")
    gap_box = scores["real"] - scores["flat box"]
    if gap_box > 0:
        closed = (scores["synthetic"] - scores["flat box"]) / gap_box
        print(f"  synthetic closes {100 * closed:.0f}% of the gap between the flat box and real photos")
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
