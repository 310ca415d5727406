"""``--engine ray``: the same stages on Ray Data give the same bytes and records as the local pool.

Ray starts once for the module: a two-node cluster on this machine (two ``ray start`` processes of
one CPU each, on loopback), stopped at the end even when a test fails. Every stage runs on it with
two actors, one per node.
"""
from __future__ import annotations

import json
import os
import subprocess
import shutil
import socket
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from maskprep.cli import cli
from maskprep.engines import RAY_INSTALL, EngineSpec, use_engine
from maskprep.manifest import latest_records, read_manifest
from tests.conftest import require_shared

pytestmark = pytest.mark.slow
pytest.importorskip("ray", reason=f"the ray engine is tested where Ray is installed ({RAY_INSTALL})")


@pytest.fixture(scope="module")
def cluster() -> str:
    """The address of a two-node Ray cluster (one CPU each) on this machine, with this process joined."""
    from maskprep.engines.cluster import loopback_cluster
    with loopback_cluster(nodes=2, cpus_per_node=1) as address:
        yield address


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """A small real tree: three face photos, a photo without a face and a broken file."""
    identities = require_shared("faces", "identities")
    root = tmp_path_factory.mktemp("photos")
    for rel in ("barack_obama/obama_small.jpg", "barack_obama/obama-240p.jpg", "kit_harington/john2.jpeg"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(identities / rel, root / rel)
    shutil.copyfile(require_shared("faces", "dlib_landmarks", "dogs.jpg"), root / "dogs.jpg")
    (root / "broken.jpg").write_bytes(b"not a picture")
    return root


def _files(root: Path) -> dict[str, bytes]:
    """Every output file's bytes, without the manifest and run.json (which say how the run went)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in ("manifest.jsonl", "run.json")}


def _records(root: Path) -> list[str]:
    return sorted(r.to_json() for r in latest_records(read_manifest(root)))


def _counts(summary) -> tuple:
    return summary.inputs, summary.outputs, summary.skipped, summary.failed, dict(summary.reasons)


def _same_run(local: Path, remote: Path, local_summary, remote_summary) -> None:
    assert _counts(remote_summary) == _counts(local_summary)
    expected = _files(local)
    assert expected, "the local run wrote nothing: the comparison would be empty"
    got = _files(remote)
    assert sorted(got) == sorted(expected)
    for rel, data in expected.items():
        assert got[rel] == data, f"{rel} differs between engines"
    assert _records(remote) == _records(local)


def _on_cluster(address: str, batch_size: int = 1) -> EngineSpec:
    return EngineSpec("ray", address=address, batch_size=batch_size)


@pytest.fixture(scope="module")
def detected(photos, cluster, tmp_path_factory):
    """``detect`` over the photos by each engine: (local folder, its summary, ray folder, its summary)."""
    from maskprep.faces import detect_tree
    out = tmp_path_factory.mktemp("detect")
    local = detect_tree(photos, out / "local", workers=2, progress=False)
    with use_engine(_on_cluster(cluster)):
        remote = detect_tree(photos, out / "ray", progress=False)
    return out / "local", local, out / "ray", remote


def test_detect_on_ray_matches_local(detected):
    local_dir, local, ray_dir, remote = detected
    _same_run(local_dir, ray_dir, local, remote)
    assert local.skipped and local.failed  # the no-face photo and the broken file are recorded


def test_synth_masks_on_two_nodes_matches_local_and_records_per_node_counts(detected, cluster, tmp_path):
    from maskprep.masks.synth import synth_masks
    faces = detected[0]  # aligned crops whose landmarks detect recorded: no second face search
    kwargs = dict(types="random", wear="mix", per_image=2, color="random", seed=5, progress=False)
    local = synth_masks(faces, tmp_path / "local", workers=2, **kwargs)
    with use_engine(_on_cluster(cluster)):
        remote = synth_masks(faces, tmp_path / "ray", **kwargs)
    _same_run(tmp_path / "local", tmp_path / "ray", local, remote)
    engine = json.loads((tmp_path / "ray" / "run.json").read_text())["engine"]
    assert engine["name"] == "ray" and engine["actors"] == 2
    assert len(engine["nodes"]) == 2, engine
    assert all(node["files"] > 0 for node in engine["nodes"]), engine
    assert sum(node["files"] for node in engine["nodes"]) == remote.inputs
    assert json.loads((tmp_path / "local" / "run.json").read_text())["engine"] == {"name": "local"}


def test_augment_command_on_ray_matches_local(photos, cluster, tmp_path):
    runner = CliRunner()
    args = ["augment", str(photos), "--flip", "--blur", "--color-jitter", "--copies", "1", "--seed", "3",
            "--quiet"]
    local = runner.invoke(cli, [*args[:2], str(tmp_path / "local"), *args[2:], "-j", "2"])
    remote = runner.invoke(cli, [*args[:2], str(tmp_path / "ray"), *args[2:], "--engine", "ray",
                                 "--ray-address", cluster, "--batch-size", "2"])
    assert local.exit_code == 0 and remote.exit_code == 0, remote.output
    # The summary says the same, apart from the elapsed time and the folder.
    def strip(out: str, folder: Path) -> list[str]:
        return [line.split(" in ")[0].replace(str(folder), "OUT") for line in out.splitlines()]
    assert strip(remote.output, tmp_path / "ray") == strip(local.output, tmp_path / "local")
    assert "1 failed" in local.output
    for rel, data in _files(tmp_path / "local").items():
        assert (tmp_path / "ray" / rel).read_bytes() == data, rel
    assert _records(tmp_path / "ray") == _records(tmp_path / "local")


def test_interrupted_ray_run_finishes_with_resume(photos, cluster, tmp_path, monkeypatch):
    from maskprep.augment import augment_tree
    from maskprep.manifest import ManifestWriter
    kwargs = dict(flip=True, rotate=8.0, seed=2, progress=False)
    local = augment_tree(photos, tmp_path / "local", workers=2, **kwargs).summary

    # Ctrl-C arrives in the driver once three inputs are recorded (no clock involved): two photos
    # done and the broken file failed, which --resume tries again.
    write = ManifestWriter.write
    calls = []

    def write_then_interrupt(self, records):
        write(self, records)
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(ManifestWriter, "write", write_then_interrupt)
    with use_engine(_on_cluster(cluster)), pytest.raises(KeyboardInterrupt):
        augment_tree(photos, tmp_path / "ray", **kwargs)
    monkeypatch.setattr(ManifestWriter, "write", write)
    assert json.loads((tmp_path / "ray" / "run.json").read_text())["status"] == "interrupted"
    partial = read_manifest(tmp_path / "ray")
    assert len({r.source for r in partial}) == 3
    done = {r.source for r in partial} - {r.source for r in partial if r.status == "failed"}
    assert len(done) == 2

    with use_engine(_on_cluster(cluster)):
        resumed = augment_tree(photos, tmp_path / "ray", resume=True, **kwargs).summary
    assert resumed.resumed == 2 and resumed.inputs == local.inputs and resumed.failed == 1
    assert resumed.outputs + 2 * 3 == local.outputs  # an augmented input gives original+flip+rotate
    assert _files(tmp_path / "ray") == _files(tmp_path / "local")
    assert _records(tmp_path / "ray") == _records(tmp_path / "local")
    assert not list((tmp_path / "ray").rglob("*.tmp*"))


def test_engine_ray_fails_fast_without_ray_or_a_reachable_cluster(photos, tmp_path, monkeypatch):
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{s.getsockname()[1]}"
    result = CliRunner().invoke(cli, ["augment", str(photos), str(tmp_path / "out"), "--flip",
                                      "--engine", "ray", "--ray-address", closed])
    assert result.exit_code == 2 and f"cannot reach the Ray cluster at {closed}" in result.output
    assert not (tmp_path / "out").exists()

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails as if it were not installed
    result = CliRunner().invoke(cli, ["synth-masks", str(photos), str(tmp_path / "out"), "--engine", "ray"])
    assert result.exit_code == 2
    assert RAY_INSTALL in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()
    result = CliRunner().invoke(cli, ["augment", str(photos), str(tmp_path / "out"), "--flip",
                                      "--ray-address", "127.0.0.1:1"])
    assert result.exit_code == 2 and "--ray-address needs --engine ray" in result.output


def test_audit_without_an_address_starts_ray_in_the_process_and_finds_the_same(photos, tmp_path):
    """The laptop case: no cluster, no RAY_ADDRESS; ``audit --engine ray`` starts its own Ray for the
    reading and hashing pass, and reports what the local engine reports."""
    from maskprep.audit import audit, write_json
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    result = subprocess.run([sys.executable, "-m", "maskprep", "audit", str(photos), "--json",
                             str(tmp_path / "ray.json"), "--engine", "ray", "-j", "1", "--quiet"],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    remote = json.loads((tmp_path / "ray.json").read_text())
    local_report = audit(photos, workers=1, progress=False)
    local = json.loads(write_json(local_report, tmp_path / "local.json").read_text())
    for report in (local, remote):
        report.pop("seconds")
        report.pop("timings")
    assert remote == local
    assert local["counts"]["files"] == 5 and local["counts"]["unreadable"] == 1
