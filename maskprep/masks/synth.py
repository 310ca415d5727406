"""Synthetic masks on real photos: the library behind ``maskprep synth-masks``.

``render_mask`` fits and renders one mask on one face; ``mask_faces`` masks every face of an image
with one mask type and wear mode; ``process`` is the per-file stage function for the shared
runner, and ``synth_masks`` runs it over a tree with the same defaults as the command.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

import cv2
import numpy as np

from maskprep.images import read_image
from maskprep.masks.fit import (
    DEFAULT_MAX_YAW,
    DEFAULT_MIN_FACE,
    WEAR_MODES,
    check_face,
    face_info,
    grid_outline,
)
from maskprep.masks.layer import render_layer
from maskprep.masks.light import face_exposure as _face_exposure  # noqa: F401 - used by bank.py
from maskprep.masks.render import MaskLayer, composite_layer, luminance
from maskprep.masks.templates import (
    MASK_TYPES,
    PATTERNS,
    MaskTemplate,
    load_template,
    parse_color,
    real_palette,
)
from maskprep.runner import Job, Produced, SkipImage, Summary, output_rel, run_stage

STAGE = "synth-masks"
ALPHA_DIR = ".alpha"   # hidden, so later stages never mistake the coverage labels for photos
# --color random: share of outputs in the mask's natural colour; the others draw from the palette
# of real mask colours (templates.real_palette), each colour as often as in real photos.
RANDOM_NATURAL = 0.3


@dataclass(frozen=True)
class FaceFound:
    """A detected face: box (left, top, right, bottom), detector score, (68, 2) landmarks."""

    box: tuple[int, int, int, int]
    score: float
    landmarks: np.ndarray
    image_size: tuple[int, int] | None = None   # (w, h) of the image the landmarks belong to, if recorded
    # detector, quick look, second opinion, crop fit, assumed crop, manifest
    found_by: str = "detector"


# ------------------------------------------------------------------------------------------------
# Faces: maskprep.faces.find_faces owns how they are found (search, crop fit, second opinion)

def _found(face: Any) -> FaceFound:
    # synth-masks' manifests have always called a search hit "detector"
    how = "detector" if face.found_by == "search" else face.found_by
    return FaceFound(tuple(int(v) for v in face.box), float(face.score),
                     np.asarray(face.landmarks, np.float32), found_by=how)


def search_faces(image: np.ndarray, max_side: int | None = None, min_face: float = DEFAULT_MIN_FACE,
                 assume_crop: bool = False) -> tuple[list[FaceFound], list[tuple[FaceFound, str]]]:
    """(faces, rejected candidates with why) from :func:`maskprep.faces.find_faces`.

    ``max_side`` bounds the copy the detector searches (faster, misses smaller faces); None keeps
    the detector's default. Photos larger than an explicit ``max_side`` are searched in one pass.
    No search pass is spent on faces smaller than ``min_face`` px (they would not be masked).
    """
    from maskprep.faces import DEFAULT_MAX_SIDE, find_faces as find

    upsample = None
    if max_side is not None and 0 < max_side < max(image.shape[:2]):
        # An explicit, smaller search copy asks for speed: no upsampling passes on it (the
        # detector's auto mode would upsample a copy of 640 px or less twice).
        upsample = 0
    search = find(image, max_side=DEFAULT_MAX_SIDE if max_side is None else int(max_side),
                  upsample=upsample, min_size=min_face, crops="assume" if assume_crop else "auto")
    return [_found(f) for f in search.faces], [(_found(f), why) for f, why in search.rejected]


def find_faces(image: np.ndarray, max_side: int | None = None,
               min_face: float = DEFAULT_MIN_FACE) -> list[FaceFound]:
    """The faces with 68 landmarks that ``synth-masks`` masks (see :func:`search_faces`)."""
    return search_faces(image, max_side, min_face)[0]


def crop_face(image: np.ndarray) -> FaceFound | None:
    """Treat the whole image as a tight face crop (``--assume-crop``): the crop fit of
    :func:`maskprep.faces.fit_crop`, or None when it does not look like a face."""
    from maskprep.faces import fit_crop

    fit = fit_crop(image)
    return None if fit.reason is not None else _found(fit.face)


# ------------------------------------------------------------------------------------------------
# Faces a `maskprep detect` run already found

LANDMARKS_AUTO, LANDMARKS_DETECTOR = "auto", "detector"
_KNOWN_FACES: dict[tuple[str, int, str], dict[str, list[FaceFound]]] = {}  # per-process cache


def landmarks_source(input_dir: str | os.PathLike, landmarks_from: str | os.PathLike) -> dict[str, str] | None:
    """Resolve ``--landmarks-from`` into ``{"manifest": path, "by": "output" | "source"}`` or None.

    ``auto``: IN's own manifest when ``maskprep detect`` wrote it (IN holds its aligned crops),
    keyed by crop; ``detector``: None (always search); a path: a detect manifest (file or
    folder) made from the photos in IN, keyed by photo. ValueError for a path without detect records.
    """
    from maskprep.manifest import MANIFEST_NAME, read_manifest

    value = os.fspath(landmarks_from)
    if value == LANDMARKS_DETECTOR:
        return None
    if value == LANDMARKS_AUTO:
        path = Path(input_dir) / MANIFEST_NAME
        if path.is_file() and any(r.stage == "detect" for r in read_manifest(path)):
            return {"manifest": str(path.resolve()), "by": "output"}
        return None
    path = Path(value)
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.is_file():
        raise ValueError(f"--landmarks-from: no such manifest: {path}")
    records = read_manifest(path)
    if not any(r.stage == "detect" and r.status == "ok" for r in records):
        raise ValueError(f"--landmarks-from: {path} has no faces recorded by maskprep detect")
    from maskprep.images import list_images
    from maskprep.runner import relative_to_root

    if Path(input_dir).is_dir():   # a missing IN is the runner's error to report
        root = Path(input_dir).resolve()
        listed = {r.source for r in records if r.stage == "detect"}
        if not any(relative_to_root(p, root) in listed for p in list_images(root)):
            raise ValueError(f"--landmarks-from: none of the photos in {input_dir} is in {path}; it "
                             "must come from 'maskprep detect' run on this same folder")
    return {"manifest": str(path.resolve()), "by": "source"}


def faces_from_manifest(path: str | os.PathLike, by: str = "source") -> dict[str, list[FaceFound]]:
    """The faces a ``maskprep detect`` manifest recorded, ready to mask without detecting again.

    ``by="output"``: each aligned crop (path relative to detect's output folder) -> its face, in
    crop pixels (``landmarks_crop``). ``by="source"``: each photo (path relative to detect's input
    folder) -> all its faces in photo pixels, largest first; a photo detect found no face in maps
    to an empty list.
    """
    from maskprep.manifest import latest_records, read_manifest

    if by not in ("output", "source"):
        raise ValueError(f"by must be 'output' or 'source', not {by!r}")
    table: dict[str, list[tuple[int, FaceFound]]] = {}
    for rec in latest_records(read_manifest(path)):
        if rec.stage != "detect":
            continue
        if rec.status == "skipped" and rec.reason == "no face" and by == "source":
            table.setdefault(rec.source, [])
            continue
        if rec.status != "ok" or not rec.output:
            continue
        lm = np.asarray(rec.info.get("landmarks_crop" if by == "output" else "landmarks", []), np.float32)
        if lm.shape != (68, 2):
            continue
        if by == "output":
            lo, hi = np.floor(lm.min(axis=0)), np.ceil(lm.max(axis=0))
            box = (int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1]))
        else:
            box = tuple(int(v) for v in rec.info.get("box", (0, 0, 0, 0)))
        size = rec.info.get("crop_size" if by == "output" else "image_size")
        face = FaceFound(box, float(rec.info.get("score", 0.0)), lm,  # type: ignore[arg-type]
                         tuple(int(v) for v in size) if size else None)
        key = rec.output if by == "output" else rec.source
        table.setdefault(key, []).append((int(rec.info.get("face_index", 0)), face))
    return {k: [f for _, f in sorted(v, key=lambda kv: kv[0])] for k, v in table.items()}


def known_faces(source: dict[str, str], rel: str, image_shape: tuple[int, ...]) -> list[FaceFound] | None:
    """The recorded faces of one input file, or None when the manifest does not cover it (or its
    landmarks do not fit this image, e.g. a crop resized since): then the detector searches."""
    path = source["manifest"]
    key = (path, os.stat(path).st_mtime_ns, source["by"])
    if key not in _KNOWN_FACES:
        _KNOWN_FACES.clear()
        _KNOWN_FACES[key] = faces_from_manifest(path, source["by"])
    faces = _KNOWN_FACES[key].get(rel)
    if faces is None:
        return None
    h, w = image_shape[:2]
    for f in faces:
        if f.image_size is not None:
            if f.image_size != (w, h):
                return None
            continue
        # no size recorded (an older manifest): a face may reach past the border, but not far
        lo, hi = f.landmarks.min(axis=0), f.landmarks.max(axis=0)
        if lo[0] < -0.5 * w or lo[1] < -0.5 * h or hi[0] > 1.5 * w or hi[1] > 1.5 * h:
            return None
    return faces


# ------------------------------------------------------------------------------------------------
# One mask on one face

def render_mask(image: np.ndarray, landmarks: np.ndarray, mask_type: str | MaskTemplate = "surgical",
                wear: str = "correct", color: tuple[int, int, int] | None = None,
                pattern: str = "none", rng: np.random.Generator | None = None,
                jitter: float = 1.0, realism: float = 1.0,
                draws: dict[str, Any] | None = None) -> tuple[MaskLayer, np.ndarray]:
    """Fit and render one mask for one face: the shaded mask layer and the fitted anchor grid.

    ``mask_type``: a type name, a template JSON path, or a :class:`MaskTemplate`. ``color`` None
    keeps the mask's natural colour. ``rng`` draws the fit, surface, light and camera (all recorded
    in ``layer.params``); ``jitter=0`` keeps the template's fit and ``realism=0`` skips the camera
    match (no grain, no blur). ``draws`` forces single draws (see :func:`render_layer`).
    """
    template = mask_type if isinstance(mask_type, MaskTemplate) else load_template(mask_type)
    return render_layer(image, landmarks, template, wear, color, pattern, rng, jitter, realism, draws)


def _pick_color(spec: Any, rng: np.random.Generator) -> tuple[tuple[int, int, int] | None, str]:
    """(RGB or None for natural, its name) from a parsed --color value."""
    if spec is None or spec == "natural":
        return None, "natural"
    if spec == "random":
        if rng.random() < RANDOM_NATURAL:
            return None, "natural"
        palette = real_palette()
        shares = np.array([share for _, share in palette], float)
        base = np.array(palette[int(rng.choice(len(palette), p=shares / shares.sum()))][0], float)
        rgb = tuple(int(c) for c in np.clip(np.rint(base + rng.normal(0, 5, 3)), 0, 255))
        return rgb, "#%02x%02x%02x" % rgb  # type: ignore[return-value]
    rgb = tuple(int(c) for c in spec)
    return rgb, "#%02x%02x%02x" % rgb  # type: ignore[return-value]


def mask_faces(image: np.ndarray, faces: Sequence[np.ndarray], mask_type: str = "surgical",
               wear: str = "correct", color: Any = None, pattern: str = "none",
               rng: np.random.Generator | None = None, jitter: float = 1.0,
               realism: float = 1.0) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """Mask every face (its landmarks) of an image with one mask type and wear mode.

    Returns the masked image, the union of the masks' coverage (H x W float32, 0..1) and per-face
    details (colour, pattern, the mask polygon). ``color`` is None/"natural", "random", or RGB;
    ``pattern`` is one of :data:`PATTERNS` or "random".
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    out = image.copy()   # one copy per output; each face's mask is composited into it in place
    coverage = np.zeros(image.shape[:2], np.float32)
    details = []
    for lm in faces:
        rgb, color_name = _pick_color(color, rng)
        pat = pattern
        if pattern == "random":
            pat = "none" if rng.random() < 0.8 else PATTERNS[1 + int(rng.integers(len(PATTERNS) - 1))]
        if pat != "none" and rgb is None:
            rgb = tuple(int(c) for c in load_template(mask_type).base_color)
        layer, grid = render_mask(out, lm, mask_type, wear, rgb, pat, rng, jitter, realism)
        if layer.alpha.size:
            composite_layer(out, layer, in_place=True)
            h, w = layer.alpha.shape
            region = coverage[layer.y0:layer.y0 + h, layer.x0:layer.x0 + w]
            np.maximum(region, layer.coverage, out=region)
        details.append({"color": color_name, "pattern": pat,
                        "polygon": np.round(grid_outline(grid), 1).tolist(), "render": layer.params})
    return out, coverage, details


# ------------------------------------------------------------------------------------------------
# Variants: which (type, wear) outputs each image gets

def _parse_choices(text: str, choices: Sequence[str], draw_word: str, what: str) -> list[str]:
    """``all`` -> every choice; ``draw_word`` -> one drawn per output; else a comma list of choices."""
    value = text.strip().lower()
    if value == "all":
        return list(choices)
    if value == draw_word:
        return [draw_word]
    names = list(dict.fromkeys(t.strip() for t in value.split(",") if t.strip()))
    bad = [t for t in names if t not in choices]
    if bad or not names:
        raise ValueError(f"unknown {what} {', '.join(bad) or text!r}: choose from "
                         f"{', '.join(choices)}, all or {draw_word}")
    return names


#: --types word for a real mask from the --templates bank (one template drawn per output).
BANK = "bank"


def parse_types(text: str, bank: bool = False) -> list[str]:
    """``all`` -> every type; ``random`` -> one drawn per output; else a comma list of types.
    With ``bank`` (a --templates bank is given) ``bank`` is one more type."""
    return _parse_choices(text, (*MASK_TYPES, BANK) if bank else MASK_TYPES, "random", "mask type")


def parse_wears(text: str) -> list[str]:
    """``mix`` -> one drawn per output; ``all`` -> every mode; else a comma list of wear modes."""
    return _parse_choices(text, WEAR_MODES, "mix", "wear mode")


def plan_variants(job: Job, types: Sequence[str], wears: Sequence[str],
                  per_image: int, bank: Sequence[str] = ()) -> list[tuple[str, str, str]]:
    """``(mask type, wear mode, variant name)`` for each output of one input file.

    Random choices come from the file's seed, so they do not depend on --workers. With a template
    ``bank`` (JSON paths), type ``bank`` (named, or drawn by ``random``) is one of its templates,
    drawn per output and returned as its path in place of the type.
    """
    choices = (*MASK_TYPES, BANK) if bank else MASK_TYPES
    plan = []
    for k in range(per_image):
        for t in types:
            for w in wears:
                rng = job.rng("plan", k, t, w)
                mask_type = choices[int(rng.integers(len(choices)))] if t == "random" else t
                wear = WEAR_MODES[int(rng.integers(len(WEAR_MODES)))] if w == "mix" else w
                # Unique: a draw only happens where its list has that one entry, and k is in the name.
                name = f"{mask_type}_{wear}" + (f"_{k + 1}" if per_image > 1 else "")
                if mask_type == BANK:
                    mask_type = bank[int(rng.integers(len(bank)))]
                plan.append((mask_type, wear, name))
    return plan


# ------------------------------------------------------------------------------------------------
# The stage

def process(job: Job) -> list[Produced]:
    """Stage function: every detected face of one photo masked, one output per variant."""
    p = job.params
    image = read_image(job.source)
    faces = None
    if p.get("landmarks_from"):
        faces = known_faces(p["landmarks_from"], job.rel, image.shape)
    rejected: list[tuple[FaceFound, str]] = []
    if faces is not None:
        faces = [replace(f, found_by="manifest") for f in faces]
    else:
        faces, rejected = search_faces(image, p.get("max_side"), p.get("min_face", DEFAULT_MIN_FACE),
                                       bool(p.get("assume_crop")))
    good, skipped = [], []
    for f, why in [(f, None) for f in faces] + rejected:
        reason = why or check_face(f.landmarks, min_face=p.get("min_face", DEFAULT_MIN_FACE),
                                   max_yaw=p.get("max_yaw", DEFAULT_MAX_YAW))
        crop = f.found_by in ("crop fit", "assumed crop")
        entry = {"box": list(f.box), "score": None if crop else round(f.score, 3), "found_by": f.found_by,
                 **({"assumed_crop": True} if f.found_by == "assumed crop" else {}),
                 "landmarks": np.round(f.landmarks, 1).tolist(), **face_info(f.landmarks)}
        if why:
            entry["rejected"] = why
        (skipped if reason else good).append((f, entry, "not a face" if why else reason))
    if not good and not skipped:
        raise SkipImage("no face")
    if not good:
        raise SkipImage(skipped[0][2], {"faces": [dict(e, reason=r) for _, e, r in skipped]})

    color = parse_color(p.get("color", "natural"))
    bank = p.get("bank") or {}
    produced: list[Produced] = []
    for mask_type, wear, variant in plan_variants(job, p.get("types", ["surgical"]),
                                                  p.get("wears", ["correct"]),
                                                  int(p.get("per_image", 1)), bank.get("files", ())):
        rng = job.rng("render", variant)
        # A bank template is a real mask: its own colours, no printed pattern.
        from_bank = mask_type not in MASK_TYPES
        kind: dict[str, Any] = {"type": mask_type, "wear": wear}
        template: Any = mask_type
        if from_bank:   # a real mask, mirrored half the time (its own stream: the render's is untouched)
            from maskprep.masks.bank import mirrored

            flip = bool(job.rng("mirror", variant).random() < 0.5)
            template = mirrored(load_template(mask_type)) if flip else mask_type
            kind = {"type": BANK, "template": os.path.relpath(mask_type, bank["dir"]),
                    "mirrored": flip, "wear": wear}
        out, coverage, details = mask_faces(image, [f.landmarks for f, _, _ in good], template, wear,
                                            None if from_bank else color,
                                            "none" if from_bank else p.get("pattern", "none"), rng,
                                            jitter=p.get("jitter", 1.0), realism=p.get("realism", 1.0))
        rel = output_rel(job, variant)
        draws = [d.pop("render") for d in details]   # every random draw, per face: into params
        faces_info = [dict(entry, **d) for (_, entry, _), d in zip(good, details)]
        info: dict[str, Any] = {"faces": faces_info}
        if skipped:
            info["faces_skipped"] = [dict(e, reason=r) for _, e, r in skipped]
        if p.get("save_alpha"):
            info["alpha"] = alpha_rel(rel)
        produced.append(Produced(rel=rel, data=out, variant=variant, info=info,
                                 params={**kind,
                                         "color": sorted({d["color"] for d in details}),
                                         "pattern": sorted({d["pattern"] for d in details}),
                                         "render": draws}))
        if p.get("save_alpha"):
            alpha_png = np.rint(coverage * 255).astype(np.uint8)
            produced.append(Produced(rel=info["alpha"], data=alpha_png, variant=f"{variant}.alpha",
                                     params=kind,
                                     info={"alpha_of": rel}))
    for _, entry, reason in skipped:  # one record per face left unmasked, with why
        produced.append(Produced(rel="", data=b"", status="skipped", reason=reason,
                                 info={"face": entry}))
    return produced


def alpha_rel(output: str) -> str:
    """Where the coverage label of ``output`` goes: ``.alpha/<output>``, with ``.png`` added to a
    name that is not a PNG (``a__v.jpg`` -> ``.alpha/a__v.jpg.png``). Keeping the whole name keeps
    the labels of ``a.jpg`` and ``a.png`` apart; swapping the extension made them one file."""
    return f"{ALPHA_DIR}/{output}" if output.lower().endswith(".png") else f"{ALPHA_DIR}/{output}.png"


def synth_masks(input_dir: str | os.PathLike, output_dir: str | os.PathLike,
                types: str | Iterable[str] | None = None, wear: str | Iterable[str] = "correct",
                per_image: int = 1, color: str = "natural", pattern: str = "none",
                save_alpha: bool = False, min_face: float = DEFAULT_MIN_FACE,
                max_yaw: float = DEFAULT_MAX_YAW, realism: float = 1.0,
                max_side: int | None = None, assume_crop: bool = False,
                landmarks_from: str | os.PathLike = LANDMARKS_AUTO,
                templates: str | os.PathLike | None = None, seed: int = 0,
                workers: int | None = None, overwrite: bool = False, resume: bool = False,
                jpeg_quality: int = 95, progress: bool | None = None) -> Summary:
    """Mask every face of every photo under ``input_dir`` into ``output_dir`` (a mirrored tree).

    Same defaults as ``maskprep synth-masks``. ``landmarks_from``: ``"auto"`` (a folder written by
    ``maskprep detect`` reuses the landmarks it recorded for each crop), ``"detector"`` (always
    search) or the path of a detect manifest made from the photos in ``input_dir``. ``templates``:
    a bank folder written by ``maskprep build-templates``; it adds the type ``bank`` (and is the
    default type when ``types`` is None; else ``surgical``). Raises ValueError for a bad option
    value and :class:`maskprep.runner.RunError` for bad folders.
    """
    from maskprep.masks.bank import bank_templates

    bank = bank_templates(templates) if templates is not None else []
    if types is None:
        types = BANK if bank else "surgical"
    if not bank and BANK in str(types if isinstance(types, str) else ",".join(types)).split(","):
        raise ValueError("--types bank needs --templates BANK, a folder written by "
                         "'maskprep build-templates'")
    type_list = parse_types(types if isinstance(types, str) else ",".join(types), bank=bool(bank))
    wear_list = parse_wears(wear if isinstance(wear, str) else ",".join(wear))
    parse_color(color)
    if pattern not in (*PATTERNS, "random"):
        raise ValueError(f"unknown pattern {pattern!r}: choose from {', '.join(PATTERNS)} or random")
    if per_image < 1:
        raise ValueError("per_image must be at least 1")
    params = {"types": type_list, "wears": wear_list, "per_image": int(per_image), "color": color,
              "pattern": pattern, "save_alpha": bool(save_alpha), "min_face": float(min_face),
              "max_yaw": float(max_yaw), "realism": float(realism), "max_side": max_side,
              "assume_crop": bool(assume_crop),
              "landmarks_from": landmarks_source(input_dir, landmarks_from)}
    if bank:
        params["bank"] = {"dir": str(Path(templates).resolve()), "files": bank}
    return run_stage(STAGE, input_dir, output_dir, process, params=params, seed=seed, workers=workers,
                     overwrite=overwrite, resume=resume, jpeg_quality=jpeg_quality, progress=progress)
