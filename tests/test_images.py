"""Image I/O on a bad-input corpus the tests build themselves, and on real photos."""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maskprep.images import (
    ImageReadError,
    decode_image,
    list_images,
    read_image,
    remove_stale_temp_files,
    write_image,
)


def _rgb_gradient(h: int = 48, w: int = 64) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), np.full_like(x, 90)], axis=2).astype(np.uint8)


def _jpeg_bytes(arr: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=95, **kw)
    return buf.getvalue()


def _reason(path: Path, **kw) -> str:
    with pytest.raises(ImageReadError) as info:
        read_image(path, **kw)
    return info.value.reason


def test_broken_files_give_short_reasons(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a picture\n")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(_jpeg_bytes(_rgb_gradient(200, 300))[:1500])
    assert _reason(empty) == "empty file"
    assert _reason(text) == "not an image"
    assert _reason(truncated) == "truncated"
    assert _reason(tmp_path / "nope.jpg") == "missing"


def test_pixel_limit_guards_against_bombs(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    Image.new("RGB", (400, 300)).save(path)
    assert _reason(path, max_pixels=100_000) == "too large"
    assert read_image(path, max_pixels=120_000).shape == (300, 400, 3)


def test_modes_convert_to_rgb_uint8(tmp_path: Path) -> None:
    rgb = _rgb_gradient()

    cmyk = tmp_path / "cmyk.jpg"
    Image.fromarray(rgb).convert("CMYK").save(cmyk, quality=95)
    out = read_image(cmyk)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - rgb).mean() < 8

    sixteen = tmp_path / "gray16.png"
    values = np.array([[0, 32768, 65535]], dtype=np.uint16).repeat(4, axis=0)
    Image.fromarray(values).save(sixteen)
    out = read_image(sixteen)
    assert out.shape == (4, 3, 3)
    assert out[0, :, 0].tolist() == [0, 128, 255]
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()

    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    rgba[:10, :10, 3] = 0  # a transparent corner
    rgba_path = tmp_path / "alpha.png"
    Image.fromarray(rgba, "RGBA").save(rgba_path)
    out = read_image(rgba_path)
    assert (out[:10, :10] == 255).all(), "transparent pixels are shown on white"
    assert (out[20:, 20:] == rgb[20:, 20:]).all(), "opaque pixels keep their colour"

    palette = tmp_path / "palette.gif"
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=32).save(palette)
    out = read_image(palette)
    assert out.shape == rgb.shape and np.abs(out.astype(int) - rgb).mean() < 20

    gray = tmp_path / "gray.png"
    Image.fromarray(rgb[..., 0]).save(gray)
    assert (read_image(gray) == rgb[..., :1]).all()

    floats = tmp_path / "float.tif"
    Image.fromarray((rgb[..., 1] / 255.0).astype(np.float32), mode="F").save(floats)
    assert np.abs(read_image(floats)[..., 0].astype(int) - rgb[..., 1]).max() <= 1

    la = tmp_path / "la.png"
    Image.fromarray(np.dstack([rgb[..., 0], np.full(rgb.shape[:2], 255, np.uint8)]), "LA").save(la)
    assert (read_image(la)[..., 2] == rgb[..., 0]).all()


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    # A landscape picture, red in its top-left corner, stored with "rotate 90 CW to display" (6).
    stored = np.zeros((40, 80, 3), np.uint8)
    stored[:10, :10] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    path.write_bytes(_jpeg_bytes(stored, exif=exif.tobytes()))
    upright = read_image(path)
    assert upright.shape == (80, 40, 3), "displayed portrait"
    # Rotating 90 degrees clockwise moves the stored top-left corner to the top-right.
    assert upright[:10, -10:, 0].mean() > 200 and upright[:10, -10:, 1].mean() < 60
    assert upright[-10:, :10, 0].mean() < 60


def test_unicode_and_dotted_names_are_listed_and_read(tmp_path: Path) -> None:
    rgb = _rgb_gradient()
    names = ["a.b.c.jpg", "face ü.png", "UPPER.JPG", "über/straße.webp", "x.TIFF", "y.bmp"]
    for name in names:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(path)
    (tmp_path / ".hidden.jpg").write_bytes(_jpeg_bytes(rgb))
    (tmp_path / ".cache").mkdir()
    Image.fromarray(rgb).save(tmp_path / ".cache" / "z.png")
    (tmp_path / "readme.txt").write_text("not listed")
    os.symlink(tmp_path, tmp_path / "über" / "loop")  # a symlink loop must not hang or repeat files
    found = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert sorted(found) == sorted(names)
    for name in names:
        assert read_image(tmp_path / name).shape == rgb.shape


def test_atomic_write_round_trips_and_leaves_no_temp(tmp_path: Path) -> None:
    rgb = _rgb_gradient()
    png = write_image(tmp_path / "sub" / "out.png", rgb)
    assert (read_image(png) == rgb).all(), "PNG is lossless"
    jpg = write_image(tmp_path / "out.jpg", rgb, jpeg_quality=90)
    assert np.abs(read_image(jpg).astype(int) - rgb).mean() < 4
    assert [p.name for p in tmp_path.rglob(".maskprep-tmp-*")] == []
    with pytest.raises(ValueError):
        write_image(tmp_path / "out.xyz", rgb)
    (tmp_path / ".maskprep-tmp-abc.jpg").write_bytes(b"half")
    assert remove_stale_temp_files(tmp_path) == 1


def test_decode_image_matches_read_image(identities: Path) -> None:
    path = identities / "barack_obama" / "obama_small.jpg"
    assert (decode_image(path.read_bytes()) == read_image(path)).all()


def test_real_photos_read_with_expected_sizes(identities: Path) -> None:
    expected = {
        "barack_obama/obama-240p.jpg": (240, 427),
        "barack_obama/obama-1080p.jpg": (1080, 1920),
        "barack_obama/obama.jpg": (1137, 910),
        "joe_biden/biden.jpg": (2204, 970),
        "multi/two_people.jpg": (661, 1126),
        "lin_manuel_miranda/lin-manuel-miranda.png": (612, 704),
    }
    for rel, (h, w) in expected.items():
        assert read_image(identities / rel).shape == (h, w, 3), rel
    # 32bit.png is obama2.jpg decoded by another JPEG decoder and saved as an opaque RGBA PNG: the
    # alpha must vanish and the colours match within JPEG decoders' rounding (about 1.4 levels).
    png = read_image(identities / "barack_obama" / "32bit.png").astype(int)
    jpg = read_image(identities / "barack_obama" / "obama2.jpg").astype(int)
    assert png.shape == jpg.shape
    assert np.abs(png - jpg).mean() < 2.0
    assert len(list_images(identities)) == 28
