"""Image files in, RGB uint8 arrays out, and back again atomically.

Every stage reads through :func:`read_image` so that EXIF rotation, odd modes (CMYK, 16-bit, palette,
alpha) and broken files are handled once, the same way, with one exception type and a short reason.
"""
from __future__ import annotations

import errno
import io
import os
import stat
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})
DEFAULT_MAX_PIXELS = 100_000_000  # 100 MP: larger than any real camera photo, smaller than a bomb
TEMP_PREFIX = ".maskprep-tmp-"

# The format Pillow should write for each extension.
_SAVE_FORMATS = {
    ".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP",
    ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF",
}


class ImageReadError(Exception):
    """A file that cannot be used as an image; ``reason`` is short and stable (for manifests and summaries)."""

    def __init__(self, reason: str, path: str | os.PathLike | None = None, detail: str = ""):
        self.reason = reason
        self.path = None if path is None else str(path)
        self.detail = detail
        msg = reason if not detail else f"{reason} ({detail})"
        super().__init__(f"{self.path}: {msg}" if self.path else msg)


def is_image_path(path: str | os.PathLike) -> bool:
    """True when the file name has an image extension we read (any case) and is not hidden."""
    name = os.path.basename(os.fspath(path))
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


@dataclass(frozen=True)
class Unlisted:
    """An entry under a tree that looks like part of the dataset but cannot be read as a file:
    an unreadable folder, a dangling link, a link loop, a FIFO named ``x.jpg``. Stages record it."""

    path: Path      # absolute, not resolved (a link keeps its own name)
    reason: str     # short and stable, for manifests and summaries


def scan_images(root: str | os.PathLike) -> tuple[list[Path], list[Unlisted]]:
    """``(image files, entries left out with a reason)`` under ``root``; both sorted.

    Hidden files and folders are skipped (by design, not recorded); symbolic links to folders are
    followed once, never in a loop. A folder that cannot be listed or entered, and an entry with an
    image extension that is not a readable regular file (dangling or looping link, FIFO, socket,
    device, folder named ``x.jpg``), is returned in the second list instead of being dropped.
    """
    root_path = Path(root).resolve()
    if root_path.is_file():
        return ([root_path] if is_image_path(root_path) else []), []
    found: list[Path] = []
    unlisted: list[Unlisted] = []
    seen_dirs: set[tuple[int, int]] = set()

    def on_error(exc: OSError) -> None:
        # os.walk could not list a folder (mode 000, or gone): say so instead of skipping it silently.
        unlisted.append(Unlisted(Path(exc.filename), f"unreadable folder: {_os_reason(exc)}"))

    for dirpath, dirnames, filenames in os.walk(root_path, followlinks=True, onerror=on_error):
        st = os.stat(dirpath)
        key = (st.st_dev, st.st_ino)
        if key in seen_dirs:  # a symlink loop or a second link to a folder already listed
            dirnames[:] = []
            continue
        seen_dirs.add(key)
        if not os.access(dirpath, os.X_OK):
            # Listable (r) but not enterable (no x): the names are visible, the files are not.
            unlisted.append(Unlisted(Path(dirpath), "unreadable folder: permission denied (no x bit)"))
            dirnames[:] = []
            continue
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if is_image_path(name):
                path = Path(dirpath) / name
                if path.is_file():
                    found.append(path)
                else:
                    unlisted.append(Unlisted(path, _special_reason(path)))
    return sorted(found), sorted(unlisted, key=lambda u: u.path)


def list_images(root: str | os.PathLike) -> list[Path]:
    """All image files under ``root``, sorted, as absolute paths (see :func:`scan_images`)."""
    return scan_images(root)[0]


def _os_reason(exc: OSError) -> str:
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.ELOOP:
        return "symlink loop"
    if exc.errno == errno.ENOENT:
        return "missing"
    return os.strerror(exc.errno).lower() if exc.errno else type(exc).__name__


def _special_reason(path: Path) -> str:
    """Why an entry with an image name is not a readable regular file."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        if exc.errno == errno.ENOENT and path.is_symlink():
            return "dangling symlink"
        return "symlink loop" if exc.errno == errno.ELOOP else f"unreadable: {_os_reason(exc)}"
    if stat.S_ISDIR(mode):
        return "a folder, not a file"
    if stat.S_ISFIFO(mode):
        return "not a regular file (FIFO)"
    if stat.S_ISSOCK(mode):
        return "not a regular file (socket)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "not a regular file (device)"
    return "not a regular file"


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale any numeric array (16-bit, 32-bit int, float) into 0..255 uint8."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        finite = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        hi = float(finite.max()) if finite.size else 0.0
        if hi <= 1.0:  # floats in 0..1, the usual convention
            finite = finite * 255.0
        return np.clip(np.rint(finite), 0, 255).astype(np.uint8)
    wide = arr.astype(np.int64)
    hi = int(wide.max()) if wide.size else 0
    if hi <= 255 and arr.dtype.itemsize > 2:  # 32-bit container with 8-bit data
        return np.clip(wide, 0, 255).astype(np.uint8)
    if hi <= 65535:  # 16-bit data (I;16, or 16-bit PNG opened as mode I)
        return ((np.clip(wide, 0, 65535) * 255 + 32767) // 65535).astype(np.uint8)
    lo = int(wide.min())
    return ((wide - lo) * 255 // max(hi - lo, 1)).astype(np.uint8)


def _pil_to_rgb(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode == "RGB":
        return np.asarray(img, dtype=np.uint8)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        # Transparent areas become white, the way a viewer shows them on a page.
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"), dtype=np.uint8)
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        gray = _to_uint8(np.asarray(img))
        return np.repeat(gray[:, :, None], 3, axis=2)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def read_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file as an upright ``H x W x 3`` uint8 RGB array.

    EXIF orientation is applied; every Pillow mode (L, LA, P, RGBA, CMYK, I;16, I, F, ...) is converted;
    transparency is composited on white. Raises :class:`ImageReadError` with a short ``reason``:
    ``missing``, ``empty file``, ``not an image``, ``truncated``, ``too large``, ``corrupt``,
    ``permission denied`` (and other short OS reasons), ``not a regular file (FIFO)``.
    """
    path = Path(path)
    _check_file(path)
    try:
        data = path.read_bytes()
    except OSError as exc:   # permission denied, I/O error: a reason a person can act on
        raise ImageReadError(_os_reason(exc), path, str(exc)) from None
    return decode_image(data, max_pixels=max_pixels, name=path)


def _check_file(path: Path) -> None:
    """Raise :class:`ImageReadError` unless ``path`` is a non-empty regular file (a FIFO named
    ``x.jpg`` would block a read forever; a dangling link or a folder has no bytes to read)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ImageReadError("dangling symlink" if path.is_symlink() else "missing", path) from None
    except OSError as exc:
        raise ImageReadError(_os_reason(exc), path, str(exc)) from None
    if not stat.S_ISREG(st.st_mode):
        raise ImageReadError(_special_reason(path), path)
    if st.st_size == 0:
        raise ImageReadError("empty file", path)


def probe_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """``(width, height)`` from the file's header, without decoding the pixels: a cheap check that
    the file can be opened as an image. Raises :class:`ImageReadError` with the reasons of
    :func:`read_image` (a file cut short inside its pixel data still passes)."""
    path = Path(path)
    _check_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as img:
                width, height = img.size
    except UnidentifiedImageError:
        raise ImageReadError("not an image", path) from None
    except Image.DecompressionBombError as exc:
        raise ImageReadError("too large", path, str(exc)) from None
    except OSError as exc:
        raise ImageReadError(_os_reason(exc) if exc.errno else "corrupt", path, str(exc)) from None
    except (ValueError, SyntaxError) as exc:
        raise ImageReadError("corrupt", path, str(exc)) from None
    _check_size(width, height, max_pixels, path)
    return width, height


def _check_size(width: int, height: int, max_pixels: int, name: str | os.PathLike | None) -> None:
    if width * height > max_pixels:
        raise ImageReadError("too large", name, f"{width}x{height} > {max_pixels} pixels")
    if width == 0 or height == 0:
        raise ImageReadError("corrupt", name, "zero-sized image")


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS,
                 name: str | os.PathLike | None = None) -> np.ndarray:
    """Decode image bytes the same way :func:`read_image` reads a file."""
    if not data:
        raise ImageReadError("empty file", name)
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageReadError("not an image", name) from None
    except Image.DecompressionBombError as exc:
        raise ImageReadError("too large", name, str(exc)) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageReadError("corrupt", name, str(exc)) from None
    width, height = img.size
    _check_size(width, height, max_pixels, name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img.load()
            img = ImageOps.exif_transpose(img)
            arr = _pil_to_rgb(img)
    except OSError as exc:
        text = str(exc)
        reason = "truncated" if "truncated" in text or "broken data stream" in text else "corrupt"
        raise ImageReadError(reason, name, text) from None
    except (ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise ImageReadError("corrupt", name, str(exc)) from None
    return np.ascontiguousarray(arr)


def save_format(path: str | os.PathLike) -> str:
    """The Pillow format name for a file name's extension; ValueError for one we do not write."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    try:
        return _SAVE_FORMATS[ext]
    except KeyError:
        raise ValueError(f"cannot write images with extension {ext!r}") from None


def encode_image(image: np.ndarray, fmt: str, jpeg_quality: int = 95) -> bytes:
    """Encode an RGB (or single-channel) uint8 array in a Pillow format; deterministic bytes."""
    if image.dtype != np.uint8:
        raise ValueError(f"expected uint8 image, got {image.dtype}")
    pil = Image.fromarray(image)
    buf = io.BytesIO()
    options: dict = {}
    if fmt == "JPEG":
        options = {"quality": int(jpeg_quality), "subsampling": 0 if jpeg_quality >= 90 else 2}
    elif fmt == "PNG":
        options = {"compress_level": 3}  # fast; PNG size barely changes above this
    elif fmt == "WEBP":
        options = {"quality": int(jpeg_quality)}
    pil.save(buf, format=fmt, **options)
    return buf.getvalue()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temp file in the same folder and a rename: never half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=path.suffix, dir=path.parent)
    try:
        # mkstemp makes 0600 files; give the file the mode open() would (0666 less the umask), so
        # other users can read the dataset as they could read its originals.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def _umask() -> int:
    """The process umask: from /proc on Linux (reading it with os.umask means setting it, which
    would race with other threads creating files), else by setting it and straight back."""
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_image(path: str | os.PathLike, image: np.ndarray, jpeg_quality: int = 95) -> Path:
    """Atomically write an RGB uint8 array; the format follows the extension."""
    return write_bytes_atomic(path, encode_image(image, save_format(path), jpeg_quality))


def remove_stale_temp_files(root: str | os.PathLike) -> int:
    """Delete temp files an interrupted run left behind under ``root``; returns how many."""
    removed = 0
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            if name.startswith(TEMP_PREFIX):
                try:
                    os.unlink(os.path.join(dirpath, name))
                    removed += 1
                except FileNotFoundError:
                    pass
    return removed


def iter_image_arrays(root: str | os.PathLike) -> Iterator[tuple[Path, np.ndarray | ImageReadError]]:
    """Yield ``(path, array)`` for every image under ``root``, or ``(path, error)`` for unreadable ones."""
    for path in list_images(root):
        try:
            yield path, read_image(path)
        except ImageReadError as exc:
            yield path, exc
