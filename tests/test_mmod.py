"""maskprep.mmod: dlib's CNN face detector read from its .dat file and run in torch must find what
dlib's own finds (the second opinion and --model cnn now run it instead of dlib's)."""
from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest

from maskprep import faces, mmod
from maskprep.images import read_image
from maskprep.resources import dlib_model_path

from conftest import REPO_ROOT, require_shared

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import face_sets  # noqa: E402  (the no-face patches bench_detect.py measures on)


def _iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih
    return iw * ih / union


def _shrunk(image: np.ndarray, side: int) -> np.ndarray:
    k = side / max(image.shape[:2])
    return np.ascontiguousarray(cv2.resize(image, None, fx=k, fy=k, interpolation=cv2.INTER_AREA))


def _assert_same_detections(ours, dlibs):
    assert len(ours) == len(dlibs), (ours, dlibs)
    for (box, score), (ref_box, ref_score) in zip(ours, dlibs):
        assert _iou(box, ref_box) >= 0.9 and abs(score - ref_score) < 0.01, (ours, dlibs)


@pytest.mark.parametrize("path, side, upsample", [
    (("masks", "chandrikadeb7", "without_mask", "0_0_aidai_0029.jpg"), 140, 0),   # HOG misses it
    (("faces", "dlib_landmarks", "2008_002506.jpg"), 400, 0),                      # several people
    (("faces", "identities", "alex_lacamoire", "alex_lacamoire1.jpg"), 200, 1),      # as --model cnn
])
def test_the_torch_detector_finds_the_faces_dlibs_cnn_finds(path, side, upsample):
    image = _shrunk(read_image(require_shared(*path)), side)
    ours = mmod.detect(image, upsample)
    assert ours and all(score > 0 for _, score in ours)
    _assert_same_detections(ours, faces._dlib_cnn(image, upsample))


def test_an_image_without_a_face_gives_nothing():
    kaggle = require_shared("masks", "kaggle_fmd")
    patches = face_sets.scene_patches(kaggle, 2) + face_sets.texture_patches(1)[:3]
    for name, patch in patches:
        found = [d for d in mmod.detect(patch) if d[1] >= faces.SECOND_OPINION_MIN_SCORE]
        assert found == [], name


def test_a_strip_too_thin_for_a_face_gives_nothing_not_an_error_or_garbage():
    """dlib's own CNN raises on an 8x8 image and kills the process (segmentation fault) on a
    400x8 strip, which faces.CNN_MIN_SIDE lets through; the torch detector finds nothing."""
    rng = np.random.default_rng(0)
    for shape in [(1, 1, 3), (6, 300, 3), (8, 8, 3), (400, 8, 3), (9, 2000, 3)]:
        assert mmod.detect(rng.integers(0, 256, shape, dtype=np.uint8)) == [], shape


def test_the_cnn_runs_in_torch_by_default_on_one_thread_and_dlibs_on_request(monkeypatch):
    crop = _shrunk(read_image(require_shared("masks", "chandrikadeb7", "without_mask",
                                             "0_0_anhu_0020.jpg")), 140)
    import torch

    threads_inside = []
    scores = mmod._Net.scores
    def counting(self, im):
        threads_inside.append(torch.get_num_threads())
        return scores(self, im)
    monkeypatch.setattr(mmod._Net, "scores", counting)
    before = torch.get_num_threads()
    monkeypatch.delenv("MASKPREP_CNN", raising=False)
    monkeypatch.setattr(faces, "_dlib_cnn", lambda *a: pytest.fail("dlib's CNN ran"))
    ours = faces._run_detector("cnn", crop, 0)
    assert threads_inside == [1] and torch.get_num_threads() == before
    monkeypatch.undo()
    monkeypatch.setenv("MASKPREP_CNN", "dlib")
    monkeypatch.setattr(mmod, "detect", lambda *a: pytest.fail("torch ran"))
    _assert_same_detections(ours, faces._run_detector("cnn", crop, 0))


def test_the_weights_file_is_parsed_whole_and_a_bad_one_is_refused(tmp_path):
    weights = mmod.read_weights(dlib_model_path("mmod_human_face_detector.dat"))
    convs = [layer for layer in weights.layers if isinstance(layer, mmod._Conv)]
    assert [c.weight.shape[0] for c in convs] == [16, 32, 32, 45, 45, 45, 1]
    assert weights.window == (80, 80) and weights.mean_rgb[0] == pytest.approx(122.782)
    cut = tmp_path / "cut.dat"
    cut.write_bytes(dlib_model_path("mmod_human_face_detector.dat").read_bytes()[:50_000])
    with pytest.raises(mmod.MmodFormatError, match="ends early"):
        mmod.read_weights(cut)
    other = tmp_path / "other.dat"
    other.write_bytes(b"\x01\x01\x01\x05hello")
    with pytest.raises(mmod.MmodFormatError, match="not a dlib loss_mmod network"):
        mmod.read_weights(other)
