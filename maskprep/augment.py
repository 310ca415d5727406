"""Augment an image tree: flipped, blurred, colour-jittered and rotated copies beside each original.

A *variant* is a name mapped to a short list of *ops* (``"blur" -> ("blur",)``); an op is a pair of
pure functions in the albumentations style: ``draw(rng, shape, settings) -> params`` picks the
random parameters, ``apply(image, **params) -> image`` is deterministic. Parameters are drawn from a
generator seeded by (run seed, file path, variant), so a run gives byte-identical files whatever the
number of workers, and the manifest records exactly the parameters that were applied.

The ops are cheap on purpose (the expensive part of augmenting a tree is decoding and encoding):
flip is ``cv2.flip``, blur one ``cv2.GaussianBlur``, colour jitter one 3x4 affine colour matrix
(``cv2.transform``: brightness, contrast, saturation and hue in a single pass), rotation one
``cv2.warpAffine``. Arbitrary albumentations pipelines can be added as further named variants
(``custom=``), seeded the same way.

Only the training split is augmented by default (see :mod:`maskprep.dataset`); files of other splits
are copied byte for byte, so a flipped copy of a test photo never lands anywhere.

    from maskprep.augment import augment_tree
    result = augment_tree("data/", "augmented/", flip=True, blur=True, color_jitter=True, seed=1)
    print("\\n".join(result.lines()))
"""
from __future__ import annotations

import json
import math
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import cv2
import numpy as np

from maskprep.images import ImageReadError, decode_image, list_images
from maskprep.dataset import split_name, split_of, split_sort_key
from maskprep.manifest import variant_path
from maskprep.runner import Job, Produced, Summary, derive_seed, output_rel, relative_to_root, run_stage

STAGE = "augment"
REFERENCE_SIDE = 224        # blur strength is defined at the classifier's input size (see draw_blur)
DEFAULT_SPLITS = ("train",)
ALL_SPLITS = "all"
PYRAMID_BLUR_SIGMA = 2.0    # wider Gaussian blurs run on a shrunk copy (see gaussian_blur)
ROUND = 4                   # decimals kept for drawn parameters; the rounded values are the ones applied

# Luma and the two chroma axes (YIQ). Saturation scales and hue rotates the chroma plane and leave
# luma alone, so the luma statistics depend on brightness and contrast only.
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114],
                        [0.596, -0.274, -0.322],
                        [0.211, -0.523, 0.312]], dtype=np.float64)
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)
LUMA = _RGB_TO_YIQ[0]


@dataclass(frozen=True)
class AugmentSettings:
    """The ranges random parameters are drawn from.

    ``blur_sigma``: Gaussian sigma in pixels for an image whose shorter side is 224 px (the
    classifier's input); larger images get a proportionally larger sigma, so the blur survives the
    resize. ``brightness``, ``contrast``, ``saturation``: a factor drawn from ``1 +- value``.
    ``hue``: a rotation of the colour wheel drawn from ``+- value`` turns (0.03 = +-10.8 degrees).
    ``rotate``: the largest rotation in degrees (drawn from ``+- rotate``).
    """

    blur_sigma: tuple[float, float] = (0.6, 1.6)
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.3
    hue: float = 0.03
    rotate: float = 10.0

    def __post_init__(self) -> None:
        lo, hi = self.blur_sigma
        if not 0 < lo <= hi:
            raise ValueError(f"blur sigma range must be 0 < low <= high, got {lo}, {hi}")
        for name in ("brightness", "contrast", "saturation"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0 <= self.hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5] turns, got {self.hue}")
        if not 0 <= self.rotate <= 180:
            raise ValueError(f"rotate must be in [0, 180] degrees, got {self.rotate}")


# ---------------------------------------------------------------------------------------------
# Pure image ops: arrays in, arrays out (H x W x 3 uint8 RGB).

def hflip(image: np.ndarray) -> np.ndarray:
    """The left-right mirror image (exact: pixels are only moved)."""
    return cv2.flip(image, 1)


def gaussian_blur(image: np.ndarray, ksize: int, sigma: float) -> np.ndarray:
    """Gaussian blur with an odd square kernel ``ksize`` and standard deviation ``sigma`` (pixels).

    Up to ``sigma`` = 2 this is exactly ``cv2.GaussianBlur``. A wider blur (large photos; a direct
    kernel costs in proportion to its width: 3 JPEG encodes at sigma 3, 10 at sigma 18) is computed
    on a copy shrunk by ``f = sigma // 2`` and enlarged back, with the small sigma chosen so the
    shrink, blur and enlarge add up to ``sigma``: on photos of the shared set it differs from the
    direct blur by 0.1-0.3 grey levels on average (99 % of pixels within 1, none by more than 3),
    and is 2-10 times faster.
    """
    sigma = float(sigma)
    if sigma <= PYRAMID_BLUR_SIGMA:
        return cv2.GaussianBlur(image, (int(ksize), int(ksize)), sigma, borderType=cv2.BORDER_REFLECT_101)
    h, w = image.shape[:2]
    f = max(2, int(sigma // 2))
    # Mirror a 3-sigma margin first (the direct blur's border rule) and round the size up to a
    # multiple of f, so the shrink and the enlargement are exact integer scales with aligned pixels.
    pad = math.ceil(3.0 * sigma)
    bottom, right = pad + (-(h + 2 * pad)) % f, pad + (-(w + 2 * pad)) % f
    padded = cv2.copyMakeBorder(image, pad, bottom, pad, right, cv2.BORDER_REFLECT_101)
    ph, pw = padded.shape[:2]
    small = cv2.resize(padded, (pw // f, ph // f), interpolation=cv2.INTER_AREA)
    # Variances add: box shrink (f^2 - 1) / 12, linear enlarge f^2 / 6, and the small blur itself.
    small_sigma = math.sqrt(max(sigma ** 2 - (f * f - 1) / 12.0 - f * f / 6.0, 0.25)) / f
    k = 2 * math.ceil(3.0 * small_sigma) + 1
    small = cv2.GaussianBlur(small, (k, k), small_sigma, borderType=cv2.BORDER_REFLECT_101)
    large = cv2.resize(small, (pw, ph), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(large[pad:pad + h, pad:pad + w])


def jitter_matrix(brightness: float, contrast: float, saturation: float, hue: float,
                  mean_luma: float) -> np.ndarray:
    """The 3x4 affine RGB transform of one colour jitter (see :func:`color_jitter`)."""
    theta = 2.0 * math.pi * hue
    chroma = np.array([[1.0, 0.0, 0.0],
                       [0.0, math.cos(theta), -math.sin(theta)],
                       [0.0, math.sin(theta), math.cos(theta)]])
    chroma[1:, 1:] *= saturation
    linear = brightness * contrast * (_YIQ_TO_RGB @ chroma @ _RGB_TO_YIQ)
    # Contrast pulls luma towards (or pushes it from) the mean luma of the brightened image.
    offset = (1.0 - contrast) * brightness * mean_luma
    return np.hstack([linear, np.full((3, 1), offset)]).astype(np.float32)


def color_jitter(image: np.ndarray, brightness: float = 1.0, contrast: float = 1.0,
                 saturation: float = 1.0, hue: float = 0.0) -> np.ndarray:
    """Brightness, contrast, saturation and hue changes as one affine colour transform (one pass).

    Before clipping to 0..255: mean luma is multiplied by ``brightness``; the spread of luma about
    its mean by ``brightness * contrast``; the chroma (colourfulness) by ``brightness * contrast *
    saturation`` (as with torchvision's ColorJitter, a brighter or more contrasted image is also more
    colourful); the hue turns by ``hue`` turns. Factors of 1 (and hue 0) leave the image unchanged.
    """
    mean_luma = float(np.dot(LUMA, cv2.mean(image)[:3]))
    return cv2.transform(image, jitter_matrix(brightness, contrast, saturation, hue, mean_luma))


def rotate(image: np.ndarray, angle: float) -> np.ndarray:
    """Rotate by ``angle`` degrees (counter-clockwise) about the centre; same size, mirrored borders."""
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), float(angle), 1.0)
    return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


# ---------------------------------------------------------------------------------------------
# Parameter draws: (rng, image shape, settings) -> JSON-ready params for the matching apply.

def draw_flip(rng: np.random.Generator, shape: Sequence[int], settings: AugmentSettings) -> dict[str, Any]:
    return {}


def draw_blur(rng: np.random.Generator, shape: Sequence[int], settings: AugmentSettings) -> dict[str, Any]:
    """Sigma drawn at the 224-px reference, scaled up for larger images; kernel wide enough for 3 sigma."""
    lo, hi = settings.blur_sigma
    scale = max(1.0, min(shape[0], shape[1]) / REFERENCE_SIDE)
    sigma = round(float(rng.uniform(lo, hi)) * scale, ROUND)
    ksize = max(3, 2 * math.ceil(3.0 * sigma) + 1)
    return {"ksize": ksize, "sigma": sigma}


def draw_jitter(rng: np.random.Generator, shape: Sequence[int], settings: AugmentSettings) -> dict[str, Any]:
    s = settings
    return {
        "brightness": round(float(rng.uniform(1 - s.brightness, 1 + s.brightness)), ROUND),
        "contrast": round(float(rng.uniform(1 - s.contrast, 1 + s.contrast)), ROUND),
        "saturation": round(float(rng.uniform(1 - s.saturation, 1 + s.saturation)), ROUND),
        "hue": round(float(rng.uniform(-s.hue, s.hue)), ROUND),
    }


def draw_rotation(rng: np.random.Generator, shape: Sequence[int], settings: AugmentSettings) -> dict[str, Any]:
    return {"angle": round(float(rng.uniform(-settings.rotate, settings.rotate)), 2)}


@dataclass(frozen=True)
class Op:
    """One transform: ``draw`` picks its parameters, ``apply(image, **params)`` is deterministic."""

    draw: Callable[[np.random.Generator, Sequence[int], AugmentSettings], dict[str, Any]]
    apply: Callable[..., np.ndarray]
    random: bool = True   # False for ops without parameters (flip): always the same result


# The order here is the order ops run in a combination: geometry first, then colour, blur last.
OPS: dict[str, Op] = {
    "rotate": Op(draw_rotation, rotate),
    "flip": Op(draw_flip, hflip, random=False),
    "jitter": Op(draw_jitter, color_jitter),
    "blur": Op(draw_blur, gaussian_blur),
}

# Named variants: the file suffix (``<stem>__<name>.<ext>``) and the ops it runs.
VARIANTS: dict[str, tuple[str, ...]] = {
    "flip": ("flip",),
    "blur": ("blur",),
    "jitter": ("jitter",),
    "rotate": ("rotate",),
}
COPY_PREFIX = "aug"   # --copies N writes <stem>__aug1 .. __augN, each a random combination of ops


Step = tuple[str, dict[str, Any]]


def plan_variants(rng_for: Callable[..., np.random.Generator], shape: Sequence[int],
                  variants: Sequence[str], copies: int = 0,
                  settings: AugmentSettings = AugmentSettings()) -> list[tuple[str, list[Step]]]:
    """The variants of one image and the ops (with drawn parameters) each runs, in order.

    ``rng_for(*salt)`` gives the generator for a salt (``rng_for("blur")``, ``rng_for("aug", 2)``):
    each variant draws from its own stream, so adding ``--blur`` does not change the jitter drawn.
    A copy ``aug<k>`` runs each op of the pool with probability 1/2 and at least one random op; the
    pool is the ops of ``variants`` (flip, blur and jitter when none are named).
    """
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    plan: list[tuple[str, list[Step]]] = []
    for name in variants:
        rng = rng_for(name)
        plan.append((name, [(op, OPS[op].draw(rng, shape, settings)) for op in VARIANTS[name]]))
    if copies:
        chosen = {op for name in variants for op in VARIANTS[name]} or {"flip", "blur", "jitter"}
        pool = [op for op in OPS if op in chosen]
        if not any(OPS[op].random for op in pool):
            raise ValueError("--copies draws random combinations: add --blur, --color-jitter or --rotate")
        for k in range(1, copies + 1):
            rng = rng_for(COPY_PREFIX, k)
            while True:
                picked = [op for op, coin in zip(pool, rng.random(len(pool))) if coin < 0.5]
                if any(OPS[op].random for op in picked):
                    break
            plan.append((f"{COPY_PREFIX}{k}", [(op, OPS[op].draw(rng, shape, settings)) for op in picked]))
    return plan


def apply_steps(image: np.ndarray, steps: Iterable[Step]) -> np.ndarray:
    """Run ops with fixed parameters, in order."""
    for op, params in steps:
        image = OPS[op].apply(image, **params)
    return image


def augment_image(image: np.ndarray, variants: Sequence[str] = ("flip", "blur", "jitter"), copies: int = 0,
                  seed: int = 0, settings: AugmentSettings = AugmentSettings()
                  ) -> list[tuple[str, dict[str, dict[str, Any]], np.ndarray]]:
    """``[(variant, {op: params}, image)]`` for one RGB uint8 image; the same seed gives the same images."""
    def rng_for(*salt: object) -> np.random.Generator:
        return np.random.default_rng(derive_seed(seed, *salt))

    return [(name, dict(steps), apply_steps(image, steps))
            for name, steps in plan_variants(rng_for, image.shape, variants, copies, settings)]


# ---------------------------------------------------------------------------------------------
# Albumentations pipelines as extra named variants (library use; JSON-serialised so that worker
# processes rebuild them, and recorded in run.json).

_CUSTOM_CACHE: dict[str, Any] = {}


def custom_variant(transform: Any) -> dict[str, Any]:
    """Serialise an albumentations transform (or ``A.Compose``) for ``augment_tree(custom={name: ...})``."""
    import albumentations as A
    return A.to_dict(transform)


def _custom_pipeline(spec: Mapping[str, Any]) -> Any:
    key = json.dumps(spec, sort_keys=True)
    pipeline = _CUSTOM_CACHE.get(key)
    if pipeline is None:
        import albumentations as A
        transform = A.from_dict(dict(spec))
        if not isinstance(transform, A.Compose):
            transform = A.Compose([transform])
        pipeline = A.Compose(transform.transforms, save_applied_params=True)
        _CUSTOM_CACHE[key] = pipeline
    return pipeline


def apply_custom(image: np.ndarray, spec: Mapping[str, Any], seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Run a serialised albumentations pipeline seeded by ``seed``; returns the image and the applied params."""
    pipeline = _custom_pipeline(spec)
    pipeline.set_random_seed(seed)
    result = pipeline(image=image)
    applied: dict[str, Any] = {}
    for name, params in result.get("applied_transforms", []):
        key, n = name, 1
        while key in applied:  # the same transform twice in one pipeline: Blur, Blur#2
            n += 1
            key = f"{name}#{n}"
        applied[key] = _plain(params)
    return np.ascontiguousarray(result["image"]), applied


def _plain(value: Any) -> Any:
    """Albumentations params (numpy scalars/arrays, tuples) as JSON values; anything else as text."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist() if value.size <= 64 else f"array{list(value.shape)}"
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


# ---------------------------------------------------------------------------------------------
# The runner stage.

def process(job: Job) -> list[Produced]:
    """One input file: the original copied byte for byte, then one file per variant (training splits only)."""
    p = job.params
    if not job.source.is_file():
        raise ImageReadError("missing", job.source)
    data = job.source.read_bytes()
    image = decode_image(data, name=job.source)   # a bad file fails here and is recorded, never copied
    split = p.get("root_split") or split_of(job.rel)
    wanted = p.get("splits", list(DEFAULT_SPLITS))
    augmented = split is None or ALL_SPLITS in wanted or split in wanted
    base_info = {"split": split, "mode": "augmented" if augmented else "copied"}
    out = [Produced(rel=job.rel, data=data, variant="", info=base_info)]
    if not augmented:
        return out
    settings = AugmentSettings(**{k: tuple(v) if isinstance(v, list) else v
                                  for k, v in p.get("settings", {}).items()})
    for name, steps in plan_variants(job.rng, image.shape, p.get("variants", []), p.get("copies", 0), settings):
        out.append(Produced(rel=output_rel(job, name), data=apply_steps(image, steps), variant=name,
                            params=dict(steps), info={"split": split}))
    for name, spec in sorted(p.get("custom", {}).items()):
        result, applied = apply_custom(image, spec, derive_seed(job.seed, "custom", name) % (2 ** 32))
        out.append(Produced(rel=output_rel(job, name), data=result, variant=name, params=applied,
                            info={"split": split}))
    return out


def parse_splits(value: str | Iterable[str] | None) -> list[str]:
    """``"train,val"`` -> ``["train", "val"]`` (canonical names; ``valid`` -> ``val``); ``"all"`` -> ``["all"]``."""
    if value is None:
        return list(DEFAULT_SPLITS)
    names = [v.strip() for v in (value.split(",") if isinstance(value, str) else value) if v.strip()]
    if not names:
        raise ValueError("--splits needs at least one split name (train, val, test) or 'all'")
    out: list[str] = []
    for name in names:
        canonical = ALL_SPLITS if name.lower() == ALL_SPLITS else split_name(name)
        if canonical is None:
            raise ValueError(f"unknown split {name!r}: use train, val (valid, validation), test, or all")
        if canonical not in out:
            out.append(canonical)
    return out


@dataclass
class AugmentResult:
    """What an augment run did: the runner's summary plus the input count per split and what happened to it."""

    summary: Summary
    splits: dict[str, int] = field(default_factory=dict)      # split ("" for none) -> inputs
    augmented_splits: list[str] = field(default_factory=list)  # splits (of those present) that were augmented
    warnings: list[str] = field(default_factory=list)

    @property
    def augmented_inputs(self) -> int:
        return sum(n for s, n in self.splits.items() if s in self.augmented_splits)

    @property
    def copied_inputs(self) -> int:
        return sum(n for s, n in self.splits.items() if s not in self.augmented_splits)

    def lines(self) -> list[str]:
        out = self.summary.lines()
        if list(self.splits) == [""]:
            out.append(f"  no split folders (train/, val/, test/) found: all {self.splits['']} input(s) "
                       "augmented; split by origin afterwards so copies of one photo stay together")
            return out
        parts = []
        for split in sorted(self.splits, key=split_sort_key):
            label = split or "(no split folder)"
            mode = "augmented" if split in self.augmented_splits else "copied unchanged"
            parts.append(f"{label} {self.splits[split]} {mode}")
        out.append("  splits: " + "; ".join(parts))
        return out


def augment_tree(
    input_dir: str | Path,
    output_dir: str | Path,
    *,
    flip: bool = False,
    blur: bool = False,
    color_jitter: bool = False,
    rotate: float = 0.0,
    copies: int = 0,
    splits: str | Iterable[str] | None = None,
    settings: AugmentSettings | None = None,
    custom: Mapping[str, Any] | None = None,
    seed: int = 0,
    workers: int | None = None,
    jpeg_quality: int = 95,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> AugmentResult:
    """Write every image of ``input_dir`` to ``output_dir`` (same tree) with its augmented variants.

    The original is copied byte for byte; each chosen variant becomes ``<stem>__<variant>.<ext>`` in
    the input's format (JPEG at ``jpeg_quality``): ``flip``, ``blur``, ``jitter`` (``color_jitter``),
    ``rotate`` (uniform in ``+-rotate`` degrees), ``aug1..augN`` (``copies`` random combinations) and
    one per ``custom`` entry (``{name: custom_variant(albumentations transform)}``). Only files under
    the ``splits`` folders (default ``train``; ``"all"`` for every split) are augmented; files outside
    any split folder always are; ``input_dir`` itself named like a split (``data/test``) counts as
    one. Warnings (evaluation splits augmented on request) go to ``on_warning`` before the run
    starts (default: :func:`warnings.warn`). Raises ValueError for bad options, RunError for folder
    problems.
    """
    variants = [name for name, on in (("flip", flip), ("blur", blur), ("jitter", color_jitter),
                                      ("rotate", rotate > 0)) if on]
    custom = {str(k): dict(v) for k, v in (custom or {}).items()}
    clash = [k for k in custom if k in VARIANTS or k.startswith(COPY_PREFIX) or "__" in k or "/" in k or not k]
    if clash:
        raise ValueError(f"custom variant name(s) {', '.join(map(repr, clash))} clash with built-in names")
    if copies < 0:
        raise ValueError("copies must be 0 or more")
    if not variants and not copies and not custom:
        raise ValueError("nothing to do: choose at least one of --flip, --blur, --color-jitter, "
                         "--rotate DEG, --copies N")
    settings = settings or AugmentSettings()
    if rotate > 0:
        settings = AugmentSettings(**{**asdict(settings), "rotate": float(rotate)})
    wanted = parse_splits(splits)
    plan_variants(lambda *s: np.random.default_rng(0), (1, 1), variants, copies, settings)  # validate early

    in_root = Path(input_dir)
    files = list_images(in_root) if in_root.is_dir() else []
    rels = [relative_to_root(p, in_root.resolve()) for p in files]
    # IN itself may be a split folder (``maskprep augment data/test out/``): its name counts too.
    root_split = split_name(in_root.resolve().name) if in_root.is_dir() else None
    counts = Counter(root_split or split_of(r) or "" for r in rels)
    present = set(counts)
    augmented = sorted(s for s in present if s == "" or ALL_SPLITS in wanted or s in wanted)
    notes: list[str] = []
    if wanted != list(DEFAULT_SPLITS):
        extra = sorted(s for s in present if s and s != "train" and s in augmented)
        if extra:
            notes.append(f"warning: augmenting {', '.join(extra)} as asked (--splits): variants of "
                            "evaluation photos make their scores count each photo several times; "
                            "keep val/test unaugmented unless you know why")
        if "train" in present and "train" not in augmented:
            notes.append("warning: the train split is not augmented (--splits leaves it out)")
    _check_name_clashes(rels, variants + [f"{COPY_PREFIX}{k}" for k in range(1, copies + 1)] + list(custom))
    for line in notes:
        if on_warning is None:
            warnings.warn(line, UserWarning, stacklevel=2)
        else:
            on_warning(line)

    params = {"variants": variants, "copies": int(copies), "splits": wanted, "root_split": root_split,
              "settings": asdict(settings), "custom": custom}
    summary = run_stage(STAGE, input_dir, output_dir, process, params=params, seed=seed, workers=workers,
                        overwrite=overwrite, resume=resume, jpeg_quality=jpeg_quality,
                        files=files if in_root.is_dir() else None, progress=progress)
    return AugmentResult(summary=summary, splits=dict(counts), augmented_splits=augmented, warnings=notes)


def _check_name_clashes(rels: Sequence[str], names: Sequence[str]) -> None:
    """Refuse a run where a variant's output name is also an input file (``a.jpg`` beside ``a__flip.jpg``)."""
    existing = set(rels)
    for rel in rels:
        for name in names:
            target = variant_path(rel, name)
            if target in existing:
                raise ValueError(f"the {name} variant of {rel} would overwrite the input file {target}: "
                                 "rename one of them or choose other variants")
