"""The shared runner: counts, errors captured, input untouched, determinism, resume, Ctrl-C."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import numpy as np
import pytest
from PIL import Image

from maskprep.images import read_image
from maskprep.manifest import (
    Record,
    group_key,
    latest_attempts,
    latest_records,
    read_manifest,
    split_variant,
    variant_path,
)
from maskprep.runner import Job, Produced, RunError, SkipImage, derive_seed, output_rel, run_stage

TESTS = Path(__file__).resolve().parent


def noisy_copy(job: Job) -> list[Produced]:
    """A tiny stage: the image plus seeded noise, and a skip for very dark images."""
    image = read_image(job.source, max_pixels=job.params.get("max_pixels", 10**8))
    if image.mean() < 5:
        raise SkipImage("too dark")
    noise = job.rng("noise").integers(0, 20, size=image.shape, dtype=np.uint8)
    return [Produced(rel=output_rel(job, "noisy"), data=np.clip(image.astype(int) + noise, 0, 255)
                     .astype(np.uint8), variant="noisy", params={"noise_max": 20})]


def interrupt_on_third(job: Job) -> list[Produced]:
    if job.rel.startswith("c"):
        raise KeyboardInterrupt
    return noisy_copy(job)


def _tree_hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _make_corpus(root: Path) -> None:
    """Good images in class folders, and one of each kind of bad file."""
    rng = np.random.default_rng(1)
    for cls in ("with_mask", "without_mask"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            arr = rng.integers(30, 220, size=(32, 40, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / cls / f"img{i}.jpg")
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(root / "with_mask" / "dark.png")
    Image.fromarray(rng.integers(0, 255, (30, 30, 4), dtype=np.uint8), "RGBA").save(root / "with_mask" / "a.b.c.png")
    Image.fromarray(rng.integers(0, 255, (30, 30), dtype=np.uint8)).save(root / "without_mask" / "face ü.png")
    (root / "without_mask" / "zero.jpg").write_bytes(b"")
    (root / "without_mask" / "text.jpg").write_text("hello")
    good = (root / "with_mask" / "img0.jpg").read_bytes()
    (root / "with_mask" / "cut.jpg").write_bytes(good[: len(good) // 2])
    Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)).save(root / "with_mask" / "huge.png")


def test_run_over_bad_corpus_counts_and_never_touches_input(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    _make_corpus(data)
    before = _tree_hashes(data)
    summary = run_stage("noisy", data, out, noisy_copy, params={"max_pixels": 50_000}, seed=3,
                        workers=2, progress=False)
    assert _tree_hashes(data) == before, "the input tree is never modified"
    assert summary.inputs == 13
    assert summary.outputs == 8 and summary.skipped == 1 and summary.failed == 4
    assert summary.reasons == {"too dark": 1, "empty file": 1, "not an image": 1, "truncated": 1,
                               "too large": 1}
    records = read_manifest(out)
    assert len(records) == 13
    by_source = {r.source: r for r in records}
    assert by_source["without_mask/zero.jpg"].status == "failed"
    assert by_source["with_mask/dark.png"].reason == "too dark"
    ok = by_source["with_mask/a.b.c.png"]
    assert ok.output == "with_mask/a.b.c__noisy.png" and (out / ok.output).is_file()
    assert (out / "without_mask" / "face ü__noisy.png").is_file()
    assert ok.seed == derive_seed(3, "with_mask/a.b.c.png")
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "finished" and info["failed"] == 4


def test_symlinked_file_pointing_outside_keeps_its_place(tmp_path: Path) -> None:
    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    (data / "cls").mkdir(parents=True)
    elsewhere.mkdir()
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(elsewhere / "real.png")
    os.symlink(elsewhere / "real.png", data / "cls" / "link.png")
    summary = run_stage("noisy", data, tmp_path / "out", noisy_copy, workers=1, progress=False)
    assert summary.outputs == 1 and (tmp_path / "out" / "cls" / "link__noisy.png").is_file()


def test_same_seed_same_bytes_whatever_the_worker_count(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _make_corpus(data)
    run_stage("noisy", data, tmp_path / "one", noisy_copy, seed=7, workers=1, progress=False)
    run_stage("noisy", data, tmp_path / "two", noisy_copy, seed=7, workers=2, progress=False)
    run_stage("noisy", data, tmp_path / "other", noisy_copy, seed=8, workers=2, progress=False)
    one, two = _tree_hashes(tmp_path / "one"), _tree_hashes(tmp_path / "two")
    images = [k for k in one if k.endswith((".png", ".jpg"))]
    assert images and all(one[k] == two[k] for k in images)
    other = _tree_hashes(tmp_path / "other")
    assert any(one[k] != other[k] for k in images), "another seed gives other noise"


def test_folder_checks_refuse_dangerous_runs(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _make_corpus(data)
    with pytest.raises(RunError, match="inside the input"):
        run_stage("noisy", data, data / "out", noisy_copy, progress=False)
    with pytest.raises(RunError, match="inside the input"):
        run_stage("noisy", data, data, noisy_copy, progress=False)
    with pytest.raises(RunError, match="does not exist"):
        run_stage("noisy", tmp_path / "missing", tmp_path / "o", noisy_copy, progress=False)
    one_photo = next(p for p in sorted(data.rglob("*.*")) if p.suffix in (".jpg", ".png"))
    with pytest.raises(RunError, match="is a file, not a folder"):   # was a utf-8 decode crash
        run_stage("noisy", one_photo, tmp_path / "o", noisy_copy, progress=False)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(RunError, match="not empty"):
        run_stage("noisy", data, out, noisy_copy, progress=False)
    run_stage("noisy", data, out, noisy_copy, overwrite=True, workers=1, progress=False)
    assert (out / "keep.txt").read_text() == "mine"


def test_interrupted_run_resumes_and_finishes_the_rest(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    for name in ("a", "b", "c", "d"):
        (data / name).mkdir(parents=True)
        Image.fromarray(np.full((16, 16, 3), 100, np.uint8)).save(data / name / "x.png")
    with pytest.raises(KeyboardInterrupt):
        run_stage("noisy", data, out, interrupt_on_third, workers=1, progress=False)
    assert {r.source for r in read_manifest(out)} == {"a/x.png", "b/x.png"}
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    summary = run_stage("noisy", data, out, noisy_copy, workers=1, resume=True, progress=False)
    assert summary.resumed == 2 and summary.outputs == 2
    assert sorted(r.source for r in read_manifest(out)) == ["a/x.png", "b/x.png", "c/x.png", "d/x.png"]
    # A file deleted after the run is redone on the next resume.
    (out / "a" / "x__noisy.png").unlink()
    summary = run_stage("noisy", data, out, noisy_copy, workers=1, resume=True, progress=False)
    assert summary.outputs == 1 and (out / "a" / "x__noisy.png").is_file()


def test_ctrl_c_on_a_pool_leaves_whole_files_and_a_usable_manifest(tmp_path: Path) -> None:
    """Ctrl-C part-way through a pooled run. Files after the 4th wait at a gate until the test opens
    it, so the run is always part-way when SIGINT arrives, however busy the machine is."""
    data, out = tmp_path / "data", tmp_path / "out"
    rng = np.random.default_rng(0)
    names = [f"d{i:02d}/x.png" for i in range(40)]
    for name in names:
        (data / name).parent.mkdir(parents=True)
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(data / name)
    gate = tmp_path / "gate"
    script = (f"import sys; sys.path.insert(0, {str(TESTS)!r}); import slow_stage; "
              f"from maskprep.runner import run_stage; "
              f"run_stage('slow', {str(data)!r}, {str(out)!r}, slow_stage.gated_copy, workers=2, "
              f"params={{'names': {names!r}, 'free': 4, 'gate': {str(gate)!r}}}, resume=True, "
              f"progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)
    try:
        # Records come in input order, so exactly the 4 free files get recorded; the wait ends
        # on that event (the deadline only stops a broken run from hanging the suite).
        deadline = time.monotonic() + 300
        while len(read_manifest(out)) < 4 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) != 0, "the interrupted run says so in its exit status"
    finally:
        if proc.poll() is None:
            proc.kill()
    done = read_manifest(out)
    assert [r.source for r in done] == names[:4], "interrupted part-way, the finished files recorded"
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    assert not list(out.rglob(".maskprep-tmp-*")), "no half-written file is left"
    for rec in done:
        assert read_image(out / rec.output).shape == (64, 64, 3)
    gate.touch()
    finished = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=300)
    assert finished.returncode == 0, finished.stderr.decode()[-2000:]
    records = read_manifest(out)
    assert sorted(r.source for r in records) == names
    assert all((out / r.output).is_file() for r in records)


def test_manifest_helpers() -> None:
    assert split_variant("a.b.c__flip.jpg") == ("a.b.c", "flip")
    assert split_variant("x__face0__surgical_correct.png") == ("x", "face0__surgical_correct")
    assert split_variant("plain.jpg") == ("plain", "")
    assert variant_path("cls/a.b.jpg", "blur") == "cls/a.b__blur.jpg"
    assert variant_path("cls/a.b.jpg", "") == "cls/a.b.jpg"
    assert group_key("train/cls/a__flip.jpg") == group_key("train/cls/a.jpg") == "train/cls/a"
    assert group_key("cls/z.jpg", {"cls/z.jpg": "cls/orig__face0.png"}) == "cls/orig"
    r1 = Record(stage="s", source="a.jpg", status="failed", reason="x")
    r2 = Record(stage="s", source="a.jpg", status="skipped", reason="y")
    assert r1.origin == "a.jpg"
    assert latest_records([r1, r2]) == [r2]
    with pytest.raises(ValueError):
        Record(stage="s", source="a", status="done")
    line = Record(stage="s", source="a", status="ok", output="b", info={"arr": np.arange(3)}).to_json()
    assert json.loads(line)["info"]["arr"] == [0, 1, 2]


def test_latest_attempt_per_source() -> None:
    def rec(source: str, status: str = "ok", output: str | None = None) -> Record:
        return Record(stage="s", source=source, status=status, output=output)

    # An attempt is a run of one source's records; a later attempt replaces it whole, so an output
    # the last attempt did not write again is no longer reported.
    s1, s2, t, s3 = rec("s", output="s1"), rec("s", output="s2"), rec("t", output="t1"), rec("s", output="s1")
    assert latest_attempts([s1, s2, t, s3]) == {"t": [t], "s": [s3]}
    assert latest_records([s1, s2, t, s3]) == [t, s3]
    # Per-face skips belong to the attempt they follow.
    face = rec("s", "skipped")
    assert latest_records([s1, face, face]) == [s1, face, face]
    # Adjacent attempts (the last input of a run, the first of its --resume): an output written
    # again, or a failure (always recorded alone), starts a new attempt.
    again = rec("s", output="s1")
    assert latest_records([s1, s2, again]) == [again]
    failed = rec("s", "failed")
    assert latest_records([failed, s1]) == [s1]
    assert latest_records([s1, s2, failed]) == [failed]


def test_resume_takes_a_success_right_after_a_failure_as_done(tmp_path: Path) -> None:
    """The last input of a run failed and the resume's first attempt at it worked: nothing to redo
    (the records used to be read as one attempt, and the input was redone on every resume)."""
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    Image.fromarray(np.full((16, 16, 3), 100, np.uint8)).save(data / "x.png")
    run_stage("noisy", data, out, noisy_copy, workers=1, progress=False)
    manifest = out / "manifest.jsonl"
    failed = Record(stage="noisy", source="x.png", status="failed", reason="error: OSError")
    manifest.write_text(failed.to_json() + "\n" + manifest.read_text())
    summary = run_stage("noisy", data, out, noisy_copy, workers=1, resume=True, progress=False)
    assert summary.resumed == 1 and summary.outputs == 0
    # A failure after the success is the latest attempt: the input is redone.
    manifest.write_text(manifest.read_text() + failed.to_json() + "\n")
    summary = run_stage("noisy", data, out, noisy_copy, workers=1, resume=True, progress=False)
    assert summary.resumed == 0 and summary.outputs == 1


def test_manifest_reader_survives_a_cut_last_line(tmp_path: Path) -> None:
    good = Record(stage="s", source="a.jpg", status="ok", output="a__x.jpg").to_json()
    (tmp_path / "manifest.jsonl").write_text(good + "\n" + good[: len(good) // 2])
    assert [r.output for r in read_manifest(tmp_path)] == ["a__x.jpg"]
    assert read_manifest(tmp_path / "nothing") == []


def test_cli_help_and_version() -> None:
    env = dict(os.environ)
    result = subprocess.run([sys.executable, "-m", "maskprep", "--help"], capture_output=True, text=True,
                            env=env, timeout=60)
    assert result.returncode == 0 and "pipeline" in result.stdout
    result = subprocess.run([sys.executable, "-m", "maskprep", "--version"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and "0." in result.stdout
    result = subprocess.run([sys.executable, "-m", "maskprep", "no-such-command"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2


def test_detect_command_defaults_match_faces() -> None:
    """``maskprep detect`` keeps literal copies of faces.py's defaults so its help needs no OpenCV."""
    from maskprep import faces
    from maskprep.commands import detect

    for name in ("DEFAULT_MIN_SCORE", "DEFAULT_MAX_SIDE", "SMALL_SIDE", "MODELS", "DEFAULT_ALIGN_SIZE",
                 "DEFAULT_MARGIN"):
        assert getattr(detect, name) == getattr(faces, name), name


def test_building_the_cli_imports_no_stage_library() -> None:
    """``import maskprep.cli`` and ``maskprep --help`` load no stage and no image library."""
    code = ("import sys\n"
            "from click.testing import CliRunner\n"
            "from maskprep.cli import cli\n"
            "result = CliRunner().invoke(cli, ['--help'])\n"
            "assert result.exit_code == 0 and 'synth-masks' in result.output, result.output\n"
            "heavy = ('cv2', 'numpy', 'PIL', 'maskprep.faces', 'maskprep.augment', 'maskprep.runner')\n"
            "print(sorted(m for m in heavy if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_cli_command_summaries_match_the_commands() -> None:
    """``maskprep --help`` lists each stage from a table in cli.py: it must say what the command says."""
    from maskprep.cli import _COMMANDS, cli

    ctx = click.Context(cli)
    assert cli.list_commands(ctx) == sorted(_COMMANDS)
    for name, (_, summary) in _COMMANDS.items():
        command = cli.get_command(ctx, name)
        assert command is not None and command.name == name
        assert command.get_short_help_str(10**6) == summary, name
