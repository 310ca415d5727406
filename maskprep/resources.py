"""Where the files that ship with maskprep live, in a checkout and in an installed wheel alike."""
from __future__ import annotations

import importlib.util
from pathlib import Path


class MissingResource(FileNotFoundError):
    """A bundled file (mask template, dlib model) that cannot be found: the install is incomplete."""


def templates_dir() -> Path:
    """The ``mask_templates`` folder: inside the installed package (wheel) or at the checkout's top level."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "mask_templates", here.parent / "mask_templates"):
        if candidate.is_dir():
            return candidate
    raise MissingResource("mask_templates/ not found: reinstall maskprep (the wheel ships it)")


def dlib_model_path(name: str) -> Path:
    """Path of a dlib model file shipped by the ``face-recognition-models`` package.

    ``name`` is e.g. ``shape_predictor_68_face_landmarks.dat``. Uses ``importlib`` rather than
    ``pkg_resources`` (gone from setuptools 82+), and never the ``face_recognition`` package.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise MissingResource("the face-recognition-models package is not installed: "
                              "pip install face-recognition-models")
    for location in spec.submodule_search_locations:
        path = Path(location) / "models" / name
        if path.is_file():
            return path
    raise MissingResource(f"dlib model {name} not found in face-recognition-models")
