"""The project installs as a wheel (not only editable) and the wheel carries the mask templates."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_ships_packages_templates_and_entry_points(tmp_path: Path) -> None:
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
         str(tmp_path / "dist"), str(REPO)],
        capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    wheel = next((tmp_path / "dist").glob("maskprep-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    repo_templates = sorted(p.name for p in (REPO / "mask_templates").iterdir()
                            if p.suffix in (".png", ".json"))
    assert repo_templates, "the repository has mask templates"
    shipped = sorted(n.rsplit("/", 1)[1] for n in names if n.startswith("maskprep/mask_templates/")
                     and n.endswith((".png", ".json")))
    assert shipped == repo_templates
    assert "maskprep_train/__init__.py" in names
    entry_points = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "maskprep = maskprep.cli:main" in entry_points
    assert "maskprep-train = maskprep_train.cli:main" in entry_points

    # Install the wheel alone into a throwaway folder and use it from outside the checkout: the
    # dependencies come from this environment, the code and templates only from the wheel.
    target = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                              str(target), str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-3000:]
    probe = ("import maskprep, maskprep.resources as r; "
             "print(maskprep.__file__); print(r.templates_dir())")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path,
                         env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    module_file, templates = run.stdout.split()
    assert Path(module_file).is_relative_to(target)
    assert Path(templates).is_relative_to(target)
    assert sorted(p.name for p in Path(templates).iterdir() if p.suffix in (".png", ".json")) == repo_templates
    cli = subprocess.run([sys.executable, "-m", "maskprep", "--help"], capture_output=True, text=True,
                         cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert cli.returncode == 0 and "synth" in cli.stdout
