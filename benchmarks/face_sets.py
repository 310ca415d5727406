"""The labelled sets the face-finding benchmark and tests measure on, built from ../shared/data.

- ``no_face_set``: images with no face in them: square patches of kaggle_fmd scene photos away from
  every annotated face box (kaggle_fmd boxes all faces, masked or not), patches just below a face
  (necks, shoulders, clothes: skin and cloth without a face), textures from scikit-image's sample
  images, and the demo's false face (the astronaut's suit patch). No hand photos ship with the
  data or the installed packages, so skin-coloured body patches stand in for them.
- ``annotated_faces``: the 25 hand-annotated faces of dlib's test set, (photo, box) pairs.
- ``demo_tilted_astronaut``: the demo's tilted, brightened astronaut shot and its suit-patch box.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from maskprep.images import read_image

#: Patches smaller than this are enlarged to it, as a crop dataset's small images are.
PATCH_SIDE = 150
TEXTURES = ("brick", "grass", "gravel", "coffee", "chelsea", "horse", "rocket", "coins", "moon",
            "page", "camera", "hubble_deep_field", "retina", "cell", "cat")


def _photos(kaggle: Path) -> Iterator[tuple[Path, list[tuple[str, tuple[int, int, int, int]]]]]:
    """kaggle_fmd's photos in a fixed order, each with its annotated (label, face box) pairs
    (read as the caller goes: the sets stop after a few photos)."""
    images = kaggle / "images"
    for path in sorted(images.glob("*.png")) + sorted(images.glob("*.jpg")):
        yield path, _objects(kaggle / "annotations" / f"{path.stem}.xml")


def _objects(xml_path: Path) -> list[tuple[str, tuple[int, int, int, int]]]:
    root = ET.parse(xml_path).getroot()
    return [(o.findtext("name"),
             tuple(int(float(o.find("bndbox").find(k).text)) for k in ("xmin", "ymin", "xmax", "ymax")))
            for o in root.iter("object")]


def _sized(patch: np.ndarray) -> np.ndarray:
    if max(patch.shape[:2]) < PATCH_SIDE:
        patch = cv2.resize(patch, (PATCH_SIDE, PATCH_SIDE), interpolation=cv2.INTER_CUBIC)
    return np.ascontiguousarray(patch)


def _clear_of_faces(x: int, y: int, s: int, boxes) -> bool:
    """A patch clear of every face box grown by half its size (a full head around the face)."""
    for left, top, right, bottom in boxes:
        bw, bh = right - left, bottom - top
        if (x < right + bw and x + s > left - bw and y < bottom + bh and y + s > top - bh):
            return False
    return True


def scene_patches(kaggle: Path, count: int, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """``count`` face-free patches (48 px up to half the photo), one per kaggle_fmd photo."""
    rng = np.random.default_rng(seed)
    out = []
    for path, objects in _photos(kaggle):
        if len(out) >= count:
            break
        boxes = [box for _, box in objects]
        image = read_image(path)
        h, w = image.shape[:2]
        for _ in range(30):
            s = int(rng.integers(48, max(49, min(h, w) // 2)))
            x, y = int(rng.integers(0, w - s + 1)), int(rng.integers(0, h - s + 1))
            if _clear_of_faces(x, y, s, boxes):
                out.append((f"scene/{path.stem}_{x}_{y}_{s}", _sized(image[y:y + s, x:x + s])))
                break
    return out


def body_patches(kaggle: Path, count: int, seed: int = 1) -> list[tuple[str, np.ndarray]]:
    """Patches below an unmasked face (neck, shoulders, chest), clear of every face box."""
    rng = np.random.default_rng(seed)
    out = []
    for path, objects in _photos(kaggle):
        if len(out) >= count:
            break
        boxes = [box for _, box in objects]
        image = None
        for label, b in objects:
            if label != "sin_mascarilla":
                continue
            s = max(b[2] - b[0], b[3] - b[1])
            if s < 24:
                continue
            image = read_image(path) if image is None else image
            h, w = image.shape[:2]
            x = int(b[0] + rng.integers(-s // 3, s // 3 + 1))
            y = b[3] + int(rng.integers(s // 4, s // 2 + 1))
            side = int(s * 1.2)
            if x < 0 or y + side > h or x + side > w:
                continue
            others = [o for o in boxes if o != b]
            if _clear_of_faces(x, y, side, others) and y >= b[3]:
                out.append((f"body/{path.stem}_{x}_{y}_{side}", _sized(image[y:y + side, x:x + side])))
                break
    return out


def texture_patches(per_texture: int = 4, seed: int = 2) -> list[tuple[str, np.ndarray]]:
    """Random square patches of scikit-image's sample pictures (none shows a human face)."""
    from skimage import data

    rng = np.random.default_rng(seed)
    out = []
    for name in TEXTURES:
        image = getattr(data, name)()
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        image = np.ascontiguousarray(image[..., :3])
        image = (image * 255).astype(np.uint8) if image.dtype == bool else image.astype(np.uint8)
        h, w = image.shape[:2]
        for k in range(per_texture):
            s = int(rng.integers(64, max(65, min(h, w) // 2)))
            x, y = int(rng.integers(0, w - s + 1)), int(rng.integers(0, h - s + 1))
            out.append((f"texture/{name}_{k}", _sized(image[y:y + s, x:x + s])))
    return out


def demo_tilted_astronaut() -> np.ndarray:
    """The demo's ``astronaut_tilt`` shot (examples/demo.py): 0.9 crop, 8 degrees, 1.15 gain, JPEG 92."""
    from skimage import data

    image = data.astronaut()
    h, w = image.shape[:2]
    ch, cw = int(h * 0.9), int(w * 0.9)
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    shot = image[y0:y0 + ch, x0:x0 + cw]
    matrix = cv2.getRotationMatrix2D((cw / 2, ch / 2), 8.0, 1.0)
    shot = cv2.warpAffine(shot, matrix, (cw, ch), borderMode=cv2.BORDER_REFLECT)
    shot = np.clip(shot.astype(np.float32) * 1.15, 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(shot, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


#: The suit patch HOG scores 0.57 in the tilted astronaut (left, top, right, bottom).
SUIT_PATCH_BOX = (254, 298, 320, 364)


def suit_patch() -> np.ndarray:
    """The suit patch with a margin around it, as a small image of its own."""
    shot = demo_tilted_astronaut()
    left, top, right, bottom = SUIT_PATCH_BOX
    m = (right - left) // 2
    return _sized(shot[top - m:bottom + m, left - m:right + m])


def no_face_set(shared: Path, scenes: int = 230, bodies: int = 40) -> list[tuple[str, np.ndarray]]:
    """The whole no-face set (about 330 images with the defaults)."""
    kaggle = shared / "masks" / "kaggle_fmd"
    return (scene_patches(kaggle, scenes) + body_patches(kaggle, bodies) + texture_patches()
            + [("demo/astronaut_suit_patch", suit_patch())])


def annotated_faces(shared: Path) -> list[tuple[str, tuple[int, int, int, int]]]:
    """The 25 faces of dlib's test set: (photo file name, (left, top, right, bottom))."""
    root = shared / "faces" / "dlib_landmarks"
    faces = []
    for image in ET.parse(root / "testing_with_face_landmarks.xml").getroot().iter("image"):
        for box in image.iter("box"):
            left, top = int(box.get("left")), int(box.get("top"))
            faces.append((image.get("file"), (left, top, left + int(box.get("width")),
                                               top + int(box.get("height")))))
    return faces
