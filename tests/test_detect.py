"""detect: dlib faces, landmarks, pose and aligned crops, on real photos from the shared data."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from maskprep.faces import (
    DEFAULT_MIN_SCORE,
    Face,
    align_face,
    detect_faces,
    landmarks_for_box,
    pose_from_landmarks,
    transform_points,
)
from maskprep.images import read_image

from conftest import require_shared

# Counted once by eye: bald_guys is a collage of 24 faces; obama_and_biden shows Biden, Obama and,
# bottom right, a girl looking down (the woman at the right edge shows no face).
GROUP_FACES = {"bald_guys.jpg": 24, "kit_with_rose.jpg": 2, "obama_and_biden.jpg": 3, "two_people.jpg": 2}


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    from skimage import data
    return data.astronaut()


def _center_inside(box, other) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return other[0] <= cx <= other[2] and other[1] <= cy <= other[3]


def _nearest(faces: list[Face], x: float, y: float) -> Face:
    return min(faces, key=lambda f: abs((f.box[0] + f.box[2]) / 2 - x) + abs((f.box[1] + f.box[3]) / 2 - y))


def test_astronaut_has_exactly_one_face_at_the_default_threshold(astronaut):
    faces = detect_faces(astronaut)
    assert len(faces) == 1
    face = faces[0]
    # the face, not the suit: the head is in the upper half, around x 175-265
    assert _center_inside(face.box, (150, 50, 290, 200))
    assert face.score > 1.0
    # the suit patches are detections too, only weak ones: the threshold is what removes them
    weak = detect_faces(astronaut, min_score=-0.5, upsample=1)
    assert len(weak) >= 3
    others = [f for f in weak if not _center_inside(f.box, (150, 50, 290, 200))]
    assert len(others) >= 2 and max(f.score for f in others) < DEFAULT_MIN_SCORE


def test_face_fields_and_json(astronaut):
    face = detect_faces(astronaut)[0]
    assert isinstance(face, Face)
    assert face.landmarks.shape == (68, 2) and face.landmarks.dtype == np.float32
    left, top, right, bottom = face.box
    inside = ((face.landmarks[:, 0] >= left - 10) & (face.landmarks[:, 0] <= right + 10)
              & (face.landmarks[:, 1] >= top - 10) & (face.landmarks[:, 1] <= bottom + 20))
    assert inside.mean() > 0.95
    # eyes above the nose above the mouth above the chin, in image coordinates
    lm = face.landmarks
    assert lm[36:48, 1].mean() < lm[30, 1] < lm[48:68, 1].mean() < lm[8, 1]
    assert abs(face.roll) < 10 and abs(face.yaw) < 0.3   # a frontal, upright portrait
    data = json.loads(json.dumps(face.to_dict()))
    assert data["box"] == list(face.box)
    assert len(data["landmarks"]) == 68 and data["score"] == pytest.approx(face.score, abs=1e-3)


def test_pose_follows_a_rotated_and_mirrored_face(astronaut):
    face = detect_faces(astronaut)[0]
    import cv2
    cx, cy = (face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2
    turned = cv2.warpAffine(astronaut, cv2.getRotationMatrix2D((cx, cy), -20, 1.0),
                            astronaut.shape[1::-1], borderMode=cv2.BORDER_REFLECT_101)
    rotated = detect_faces(turned, min_score=0.0)
    assert rotated, "a face turned 20 degrees in the image plane is still found"
    # getRotationMatrix2D(-20) turns the picture clockwise on screen: roll grows by about 20
    assert _nearest(rotated, cx, cy).roll - face.roll == pytest.approx(20, abs=5)
    mirrored = np.ascontiguousarray(astronaut[:, ::-1])
    roll_m, yaw_m = pose_from_landmarks(detect_faces(mirrored)[0].landmarks)
    assert roll_m == pytest.approx(-face.roll, abs=2.5)
    assert yaw_m == pytest.approx(-face.yaw, abs=0.1)


def test_align_face_levels_the_eyes_and_maps_landmarks(astronaut):
    import cv2
    face = detect_faces(astronaut)[0]
    cx, cy = (face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2
    turned = cv2.warpAffine(astronaut, cv2.getRotationMatrix2D((cx, cy), 25, 1.0),
                            astronaut.shape[1::-1], borderMode=cv2.BORDER_REFLECT_101)
    tilted = _nearest(detect_faces(turned, min_score=0.0), cx, cy)
    assert abs(tilted.roll) > 15
    crop, matrix = align_face(turned, tilted, size=200, margin=0.2)
    assert crop.shape == (200, 200, 3) and crop.dtype == np.uint8
    assert matrix.shape == (2, 3)
    mapped = transform_points(tilted.landmarks, matrix)
    assert pose_from_landmarks(mapped)[0] == pytest.approx(0, abs=0.5)   # eyes level
    assert mapped.min() >= 0 and mapped.max() <= 200                      # whole face in the crop
    # the crop really shows the face there: landmarks refitted on the crop land where mapped
    refit = landmarks_for_box(crop, (mapped[:, 0].min(), mapped[:, 1].min() - 20,
                                     mapped[:, 0].max(), mapped[:, 1].max()))
    eye_dist = np.linalg.norm(mapped[45] - mapped[36])
    assert np.linalg.norm(refit - mapped, axis=1).mean() / eye_dist < 0.08


def _dlib_annotations(xml_path: Path) -> list[tuple[str, tuple[int, int, int, int], np.ndarray]]:
    faces = []
    for image in ET.parse(xml_path).getroot().iter("image"):
        for box in image.iter("box"):
            left, top = int(box.get("left")), int(box.get("top"))
            rect = (left, top, left + int(box.get("width")), top + int(box.get("height")))
            parts = sorted(box.iter("part"), key=lambda p: int(p.get("name")))
            pts = np.array([(float(p.get("x")), float(p.get("y"))) for p in parts], dtype=np.float32)
            faces.append((image.get("file"), rect, pts))
    return faces


def test_landmarks_match_hand_annotations():
    """All 25 annotated test faces found; mean error / outer-eye-corner distance <= 0.04."""
    root = require_shared("faces", "dlib_landmarks")
    truth = _dlib_annotations(root / "testing_with_face_landmarks.xml")
    assert len(truth) == 25
    detected: dict[str, list[Face]] = {}
    errors = []
    for name, rect, pts in truth:
        if name not in detected:
            detected[name] = detect_faces(read_image(root / name))
        match = [f for f in detected[name] if _center_inside(f.box, rect) and _center_inside(rect, f.box)]
        assert match, f"{name}: annotated face at {rect} not detected"
        err = np.linalg.norm(match[0].landmarks - pts, axis=1).mean()
        errors.append(err / np.linalg.norm(pts[45] - pts[36]))
    assert len(errors) == 25
    assert float(np.mean(errors)) <= 0.04, f"mean normalised landmark error {np.mean(errors):.4f}"


@pytest.mark.parametrize("name", sorted(GROUP_FACES))
def test_group_photos_give_one_face_per_person(identities, name):
    faces = detect_faces(read_image(identities / "multi" / name))
    assert len(faces) == GROUP_FACES[name]
    boxes = [f.box for f in faces]
    for i, a in enumerate(boxes):   # no face reported twice
        assert not any(_center_inside(a, b) for b in boxes[i + 1:])


def test_no_face_in_the_dog_photo():
    root = require_shared("faces", "dlib_landmarks")
    assert detect_faces(read_image(root / "dogs.jpg")) == []


def test_large_photo_is_searched_downscaled_but_landmarks_are_full_resolution(identities):
    image = read_image(identities / "barack_obama" / "obama-1080p.jpg")
    fast = detect_faces(image)                                 # searched at 1280 px
    full = detect_faces(image, max_side=0, upsample=0)         # searched at 1920 px
    assert len(fast) == len(full) == 1
    # refitted on the full image, the landmarks agree to a small fraction of the eye distance
    eye = np.linalg.norm(full[0].landmarks[45] - full[0].landmarks[36])
    assert np.linalg.norm(fast[0].landmarks - full[0].landmarks, axis=1).mean() / eye < 0.05


def test_small_faces_in_small_scene_photos_are_found(masks_data):
    """kaggle_fmd: unmasked faces about 25 px wide in a 400 px scene need upsample 2 (auto does it)."""
    root = masks_data / "kaggle_fmd" / "images"
    image = read_image(root / "maksssksksss0.jpg")
    auto = detect_faces(image)
    once = detect_faces(image, upsample=1)
    assert len(auto) > len(once)
    assert min(f.width for f in auto) < 40


def test_bad_arguments_are_refused(astronaut):
    with pytest.raises(ValueError, match="unknown face model"):
        detect_faces(astronaut, model="haar")
    with pytest.raises(ValueError, match="uint8"):
        detect_faces(astronaut.astype(np.float32))


@pytest.fixture()
def photo_tree(tmp_path, identities) -> Path:
    """A small input tree: a two-face photo in a class folder, a dog photo, a broken file."""
    import shutil
    root = tmp_path / "in"
    (root / "people" / "group").mkdir(parents=True)
    (root / "animals").mkdir()
    shutil.copy(identities / "multi" / "kit_with_rose.jpg", root / "people" / "group" / "kit.with.rose.jpg")
    shutil.copy(identities / "barack_obama" / "32bit.png", root / "people" / "obama_rgba.png")
    shutil.copy(require_shared("faces", "dlib_landmarks", "dogs.jpg"), root / "animals" / "dogs.jpg")
    (root / "animals" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


def test_detect_command_writes_crops_and_manifest(photo_tree, tmp_path):
    from click.testing import CliRunner

    from maskprep.cli import cli
    from maskprep.manifest import read_manifest

    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["detect", str(photo_tree), str(out), "-q", "-j", "2",
                                      "--size", "128", "--margin", "0.3"])
    assert result.exit_code == 0, result.output
    assert "4 input(s) -> 3 output(s), 1 skipped, 1 failed" in result.output
    crops = sorted(p.relative_to(out).as_posix() for p in out.rglob("*__face*"))
    assert crops == ["people/group/kit.with.rose__face1.jpg", "people/group/kit.with.rose__face2.jpg",
                     "people/obama_rgba__face1.png"]
    records = {r.output or r.source: r for r in read_manifest(out)}
    assert records["animals/dogs.jpg"].status == "skipped"
    assert records["animals/dogs.jpg"].reason == "no face"
    assert records["animals/broken.jpg"].status == "failed"
    first = records["people/group/kit.with.rose__face1.jpg"]
    second = records["people/group/kit.with.rose__face2.jpg"]
    assert first.source == second.source == "people/group/kit.with.rose.jpg"
    assert first.info["faces_in_image"] == 2 and first.info["score"] >= DEFAULT_MIN_SCORE
    # the larger face comes first
    def area(info):
        return (info["box"][2] - info["box"][0]) * (info["box"][3] - info["box"][1])
    assert area(first.info) >= area(second.info)
    # crop landmarks are the source landmarks through the recorded matrix, and lie in the crop
    matrix = np.array(first.info["matrix"])
    src = np.array(first.info["landmarks"], dtype=np.float32)
    crop_pts = np.array(first.info["landmarks_crop"])
    assert np.allclose(transform_points(src, matrix), crop_pts, atol=0.02)
    assert crop_pts.min() >= 0 and crop_pts.max() <= 128
    assert abs(pose_from_landmarks(crop_pts)[0]) < 0.5
    crop = read_image(out / "people/group/kit.with.rose__face1.jpg")
    assert crop.shape == (128, 128, 3)
    # the crop shows that face: the detector finds it again, filling most of the crop
    again = detect_faces(crop, min_score=0.0)
    assert again and again[0].width > 50

    # one worker gives byte-identical crops
    out1 = tmp_path / "out1"
    result = CliRunner().invoke(cli, ["detect", str(photo_tree), str(out1), "-q", "-j", "1",
                                      "--size", "128", "--margin", "0.3"])
    assert result.exit_code == 0, result.output
    for rel in crops:
        assert (out / rel).read_bytes() == (out1 / rel).read_bytes()


def test_detect_command_refuses_bad_options(photo_tree, tmp_path):
    from click.testing import CliRunner

    from maskprep.cli import cli
    runner = CliRunner()
    for bad in (["--upsample", "9"], ["--upsample", "lots"], ["--model", "haar"], ["--size", "2"]):
        result = runner.invoke(cli, ["detect", str(photo_tree), str(tmp_path / "o"), *bad])
        assert result.exit_code == 2, (bad, result.output)
    assert runner.invoke(cli, ["detect", str(tmp_path / "missing"), str(tmp_path / "o")]).exit_code == 2
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").rglob("*__face*"))


def test_cnn_model_finds_the_same_face(identities):
    """--model cnn: dlib's mmod detector (slow on CPU: a small photo at upsample 0 keeps this short)."""
    image = read_image(identities / "barack_obama" / "obama_small.jpg")
    hog = detect_faces(image)
    cnn = detect_faces(image, model="cnn", upsample=0)
    assert len(hog) == len(cnn) == 1
    assert cnn[0].model == "cnn" and cnn[0].score > 0.5
    assert _center_inside(cnn[0].box, hog[0].box) and _center_inside(hog[0].box, cnn[0].box)
    eye = np.linalg.norm(hog[0].landmarks[45] - hog[0].landmarks[36])
    assert np.linalg.norm(cnn[0].landmarks - hog[0].landmarks, axis=1).mean() / eye < 0.1
