"""Shared fixtures: where the real photos live, and a small helper to run the CLI."""
from __future__ import annotations

import os
from pathlib import Path

# Idle OpenMP threads that spin make torch steps several times slower on a busy 2-core machine;
# set before anything imports torch (albumentations does).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _shared_data_dir() -> Path:
    env = os.environ.get("MASKPREP_SHARED_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


def require_shared(*parts: str) -> Path:
    """Path inside ../shared/data; skip (or fail under CI=true) with a clear reason when absent."""
    path = _shared_data_dir().joinpath(*parts)
    if not path.exists():
        message = (f"real test data not found at {path}: put the shared data folder beside the "
                   "repository (../shared/data) or set MASKPREP_SHARED_DATA")
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return require_shared()


@pytest.fixture(scope="session")
def identities(shared_data: Path) -> Path:
    return require_shared("faces", "identities")


@pytest.fixture(scope="session")
def masks_data(shared_data: Path) -> Path:
    return require_shared("masks")
