"""What a hostile pass broke (issue 16): odd names, dead workers, cut manifests, file modes,
changed options on --resume, name clashes, report paths, stale outputs, unreadable entries,
malformed manifests and checkpoints, and worker-count-independent manifests."""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import require_shared
from maskprep.cli import cli
from maskprep.images import ImageReadError, read_image, scan_images, write_bytes_atomic
from maskprep.manifest import ManifestError, Record, latest_records, read_manifest
from maskprep.runner import WORKER_DIED, Job, Produced, output_rel, run_stage

TESTS = Path(__file__).resolve().parent


def copy_stage(job: Job) -> list[Produced]:
    """The smallest real stage: decode the photo and write it back under a variant name."""
    return [Produced(rel=output_rel(job, "copy"), data=read_image(job.source), variant="copy")]


def one_name_stage(job: Job) -> list[Produced]:
    """A buggy stage that gives inputs differing only in extension one output name."""
    return [Produced(rel=str(Path(job.rel).with_suffix("")) + "__x.png", data=read_image(job.source),
                     variant="x")]


def _photos(n: int) -> list[Path]:
    root = require_shared("masks", "chandrikadeb7", "without_mask")
    return sorted(root.glob("*.jpg"))[:n]


def _tree(root: Path, names: list[str | bytes]) -> Path:
    """A tree of real photos under the given relative names (bytes for names that are not UTF-8)."""
    for name, photo in zip(names, _photos(len(names))):
        path = Path(os.fsdecode(os.path.join(os.fsencode(root), os.fsencode(name))))
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(photo, path)
    return root


def _augment(*args: str) -> "click.testing.Result":  # noqa: F821
    return CliRunner().invoke(cli, ["augment", *args, "-q", "-j", "1"])


# ------------------------------------------------------------------ 1. a file name that is not UTF-8

def test_a_non_utf8_file_name_is_processed_recorded_and_resumable(tmp_path: Path) -> None:
    data = _tree(tmp_path / "bn", ["cls/a.jpg", b"cls/caf\xe9.jpg", "cls/z.jpg"])
    out = tmp_path / "out"
    result = _augment(str(data), str(out), "--flip")
    assert result.exit_code == 0, result.output
    records = read_manifest(out)
    assert len(records) == 6 and all(r.status == "ok" for r in records)
    odd = os.fsdecode(b"cls/caf\xe9.jpg")
    assert odd in {r.source for r in records}, "the odd name is recorded, the file after it processed"
    assert all((out / r.output).is_file() for r in records)
    raw = (out / "manifest.jsonl").read_bytes()
    raw.decode("utf-8")   # still a valid UTF-8 file every reader can open
    assert json.loads((out / "run.json").read_text())["status"] == "finished"
    again = _augment(str(data), str(out), "--flip", "--resume")
    assert again.exit_code == 0 and "3 already done" in again.output, again.output


# ------------------------------------------------------------------ 2. a worker killed by SIGKILL

def test_a_killed_worker_is_noticed_recorded_and_the_run_finishes(tmp_path: Path) -> None:
    """d2's worker dies every time (recorded as failed); d0's dies the first time (as a neighbour of
    a memory hog would: redone alone, ok). d0 is taken first from the queue, so it always runs in
    the first pool, whatever the timing. The run used to wait forever for the lost task."""
    names = [f"d{i}/x.jpg" for i in range(7)]
    data, out, marks = _tree(tmp_path / "data", names), tmp_path / "out", tmp_path / "marks"
    marks.mkdir()
    script = (f"import sys; sys.path.insert(0, {str(TESTS)!r}); import slow_stage; "
              f"from maskprep.runner import run_stage; "
              f"s = run_stage('kill', {str(data)!r}, {str(out)!r}, slow_stage.killing_copy, workers=2, "
              f"params={{'kill': ['d2/x.jpg'], 'kill_once': ['d0/x.jpg'], 'marks': {str(marks)!r}}}, "
              f"progress=False); print(s.outputs, s.failed)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    by_source = {r.source: r for r in read_manifest(out)}
    assert sorted(by_source) == names
    assert all(by_source[n].status == "ok" for n in names if n != "d2/x.jpg")
    assert (by_source["d2/x.jpg"].status, by_source["d2/x.jpg"].reason) == ("failed", WORKER_DIED)
    assert done.stdout.split() == ["6", "1"]


# ------------------------------------------------------------------ 3. a manifest whose last line was cut

def test_resume_after_a_manifest_cut_inside_a_character_loses_no_record(tmp_path: Path) -> None:
    data = _tree(tmp_path / "data", ["cls/a.jpg", "cls/b.jpg", "cls/é.jpg"])
    out = tmp_path / "out"
    assert _augment(str(data), str(out), "--flip").exit_code == 0
    manifest = out / "manifest.jsonl"
    raw = manifest.read_bytes()
    cut = raw.rindex("é".encode()) + 1          # inside the two bytes of é, as a full disk leaves it
    manifest.write_bytes(raw[:cut])
    survivors = read_manifest(out)              # the cut line is ignored, not a UTF-8 error
    assert len(survivors) == raw[:cut].count(b"\n")
    result = _augment(str(data), str(out), "--flip", "--resume")
    assert result.exit_code == 0, result.output
    lines = manifest.read_bytes().split(b"\n")
    assert lines[-1] == b"" and all(json.loads(line) for line in lines[:-1]), "every line whole"
    outputs = [r.output for r in read_manifest(out)]
    assert sorted(outputs) == sorted(set(outputs)) and len(outputs) == 6
    assert all((out / o).is_file() for o in outputs)


def test_a_damaged_line_before_the_last_is_a_one_line_error(tmp_path: Path) -> None:
    good = Record(stage="s", source="a.jpg", status="ok", output="a__x.jpg").to_json()
    (tmp_path / "manifest.jsonl").write_text(good + "\n" + good[:20] + "\n" + good + "\n")
    with pytest.raises(ManifestError, match="line 2"):
        read_manifest(tmp_path)


# ------------------------------------------------------------------ 4. file modes

def test_outputs_get_the_mode_the_umask_gives(tmp_path: Path) -> None:
    data = _tree(tmp_path / "data", ["cls/a.jpg"])
    old = os.umask(0o022)
    try:
        run_stage("copy", data, tmp_path / "out", copy_stage, workers=1, progress=False)
        os.umask(0o027)
        write_bytes_atomic(tmp_path / "strict.bin", b"x")
    finally:
        os.umask(old)
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    assert stat.S_IMODE((tmp_path / "strict.bin").stat().st_mode) == 0o640


# ------------------------------------------------------------------ 6. --resume with other options

def test_resume_with_other_options_or_seed_is_refused(tmp_path: Path) -> None:
    data, out = _tree(tmp_path / "data", ["cls/a.jpg", "cls/b.jpg"]), tmp_path / "out"
    assert _augment(str(data), str(out), "--flip").exit_code == 0
    before = (out / "run.json").read_bytes()
    for extra in (["--blur"], ["--seed", "1"], ["--jpeg-quality", "80"]):
        result = _augment(str(data), str(out), "--flip", "--resume", *extra)
        assert result.exit_code == 2 and "other options" in result.output, result.output
    assert (out / "run.json").read_bytes() == before, "the refused run changed nothing"
    assert _augment(str(data), str(out), "--flip", "--resume").exit_code == 0


# ------------------------------------------------------------------ 7. two inputs, one output name

def test_two_inputs_claiming_one_output_both_fail_and_the_file_goes(tmp_path: Path) -> None:
    """The file holds whichever input was written last, so neither label can be trusted."""
    data = _tree(tmp_path / "data", ["cls/a.jpg", "cls/a.png", "cls/b.jpg"])
    out = tmp_path / "out"
    summary = run_stage("x", data, out, one_name_stage, workers=2, progress=False)
    latest = {r.source: (r.status, r.reason) for r in latest_records(read_manifest(out))}
    assert latest == {"cls/a.jpg": ("failed", "output name clash"), "cls/a.png": ("failed", "output name clash"),
                      "cls/b.jpg": ("ok", "")}
    assert not (out / "cls" / "a__x.png").exists() and (out / "cls" / "b__x.png").is_file()
    assert (summary.outputs, summary.failed) == (1, 2)


def test_alpha_labels_of_inputs_differing_only_in_extension_stay_apart() -> None:
    from maskprep.masks.synth import alpha_rel

    names = [alpha_rel(o) for o in ("c/a__surgical_correct.jpg", "c/a__surgical_correct.png",
                                    "c/a__surgical_correct.jpeg")]
    assert len(set(names)) == 3 and all(n.startswith(".alpha/c/") and n.endswith(".png") for n in names)


# ------------------------------------------------------------------ 8. report and preview paths

def test_report_paths_inside_an_input_or_over_a_file_are_refused(tmp_path: Path) -> None:
    data = _tree(tmp_path / "data", ["cls/a.jpg", "cls/b.jpg"])
    photo = data / "cls" / "a.jpg"
    before = photo.read_bytes()
    runner = CliRunner()
    audit = runner.invoke(cli, ["audit", str(data), "-q", "-j", "1", "--html", str(photo)])
    assert audit.exit_code == 2 and "inside the dataset tree" in audit.output, audit.output
    synth = runner.invoke(cli, ["synth-masks", str(data), str(tmp_path / "m"), "-q", "-j", "1",
                                "--preview", str(photo)])
    assert synth.exit_code == 2 and "inside the dataset tree" in synth.output, synth.output
    assert not (tmp_path / "m").exists(), "refused before any work"
    elsewhere = tmp_path / "report.html"
    elsewhere.write_text("mine")
    audit = runner.invoke(cli, ["audit", str(data), "-q", "-j", "1", "--html", str(elsewhere)])
    assert audit.exit_code == 2 and "--overwrite" in audit.output and elsewhere.read_text() == "mine"
    audit = runner.invoke(cli, ["audit", str(data), "-q", "-j", "1", "--html", str(elsewhere), "--overwrite"])
    assert audit.exit_code == 0 and "<html" in elsewhere.read_text().lower()
    assert photo.read_bytes() == before


def test_an_input_inside_the_output_folder_is_refused(tmp_path: Path) -> None:
    """OUT/<rel> could be one of IN's own files then (only OUT inside IN was refused)."""
    data = _tree(tmp_path / "out" / "data", ["data/a.jpg", "a.jpg"])
    before = (data / "a.jpg").read_bytes()
    result = _augment(str(data), str(tmp_path / "out"), "--flip", "--overwrite")
    assert result.exit_code == 2 and "inside the output folder" in result.output, result.output
    assert (data / "a.jpg").read_bytes() == before


def test_a_resumed_run_also_refuses_a_name_clash_with_the_first_part(tmp_path: Path) -> None:
    data, out = _tree(tmp_path / "data", ["cls/a.jpg"]), tmp_path / "out"
    run_stage("x", data, out, one_name_stage, workers=1, progress=False)
    shutil.copyfile(data / "cls" / "a.jpg", data / "cls" / "a.png")
    run_stage("x", data, out, one_name_stage, workers=1, resume=True, progress=False)
    latest = {r.source: (r.status, r.reason) for r in latest_records(read_manifest(out))}
    assert latest == {"cls/a.jpg": ("failed", "output name clash"), "cls/a.png": ("failed", "output name clash")}
    assert not (out / "cls" / "a__x.png").exists()


def test_train_out_inside_the_data_is_refused(tmp_path: Path) -> None:
    from maskprep_train.cli import cli as train_cli

    data = _tree(tmp_path / "data", ["with/a.jpg", "with/b.jpg", "without/c.jpg", "without/d.jpg"])
    result = CliRunner().invoke(train_cli, [str(data), "--out", str(data / "with" / "run"),
                                            "--weights", "none"])
    assert result.exit_code == 2 and "inside the dataset tree" in result.output, result.output
    assert not (data / "with" / "run").exists()


# ------------------------------------------------------------------ 9. --overwrite and stale outputs

def test_overwrite_removes_the_earlier_runs_outputs_but_not_other_files(tmp_path: Path) -> None:
    data, out = _tree(tmp_path / "data", ["cls/a.jpg", "cls/b.jpg"]), tmp_path / "out"
    assert _augment(str(data), str(out), "--flip", "--blur").exit_code == 0
    (out / "notes.txt").write_text("mine")
    assert _augment(str(data), str(out), "--flip", "--overwrite").exit_code == 0
    assert not list(out.rglob("*__blur*")), "no stale variant is left to pass for data"
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    recorded = sorted(r.output for r in read_manifest(out))
    assert files == sorted(recorded + ["manifest.jsonl", "notes.txt", "run.json"])


def test_overwrite_never_deletes_outside_the_output_folder(tmp_path: Path) -> None:
    data, out = _tree(tmp_path / "data", ["cls/a.jpg"]), tmp_path / "out"
    victim = tmp_path / "victim.jpg"
    victim.write_bytes(b"keep")
    out.mkdir()
    crafted = Record(stage="augment", source="cls/a.jpg", status="ok", output="cls/a.jpg").to_json()
    (out / "manifest.jsonl").write_text(crafted.replace('"cls/a.jpg"}', '"../victim.jpg"}') + "\n")
    os.symlink(tmp_path, out / "up")
    (out / "manifest.jsonl").write_text((out / "manifest.jsonl").read_text().replace(
        "../victim.jpg", "up/victim.jpg"))
    assert _augment(str(data), str(out), "--flip", "--overwrite").exit_code == 0
    assert victim.read_bytes() == b"keep"


# ------------------------------------------------------------------ 10, 13. entries that cannot be read

def test_links_loops_and_fifos_named_like_images_are_recorded(tmp_path: Path) -> None:
    data = _tree(tmp_path / "data", ["cls/a.jpg"])
    os.symlink(tmp_path / "nowhere.jpg", data / "cls" / "dangling.jpg")
    os.symlink(data / "cls" / "loop.jpg", data / "cls" / "loop.jpg")
    os.mkfifo(data / "cls" / "pipe.jpg")
    out = tmp_path / "out"
    summary = run_stage("copy", data, out, copy_stage, workers=2, progress=False)
    reasons = {r.source: r.reason for r in read_manifest(out) if r.status == "failed"}
    assert reasons == {"cls/dangling.jpg": "dangling symlink", "cls/loop.jpg": "symlink loop",
                       "cls/pipe.jpg": "not a regular file (FIFO)"}
    assert summary.inputs == 4 and summary.outputs == 1 and summary.failed == 3


def _without_root_powers() -> None:
    """In the child before exec: drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the bounding set,
    so a root test process meets file permissions as a user does (root otherwise reads anything)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):                       # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:   # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _as_a_user(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter that file permissions apply to, even under root."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          preexec_fn=_without_root_powers if os.geteuid() == 0 else None)


def test_unreadable_folders_and_files_are_recorded_with_the_reason(tmp_path: Path) -> None:
    data = _tree(tmp_path / "data", ["ok/a.jpg", "noexec/b.jpg", "closed/c.jpg", "files/d.jpg"])
    (data / "files" / "d.jpg").chmod(0o000)
    (data / "noexec").chmod(0o644)     # listable, not enterable: used to crash every stage
    (data / "closed").chmod(0o000)     # used to be skipped silently
    out = tmp_path / "out"
    code = (f"import sys; sys.path.insert(0, {str(TESTS)!r}); import test_hardening as t; "
            f"from maskprep.runner import run_stage; "
            f"s = run_stage('copy', {str(data)!r}, {str(out)!r}, t.copy_stage, workers=1, progress=False); "
            f"print(s.inputs, s.outputs, s.failed)")
    try:
        done = _as_a_user(code)
    finally:
        for folder in (data / "noexec", data / "closed"):
            folder.chmod(0o755)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["4", "1", "3"]
    reasons = {r.source: r.reason for r in read_manifest(out) if r.status == "failed"}
    assert reasons == {"closed": "unreadable folder: permission denied",
                       "noexec": "unreadable folder: permission denied (no x bit)",
                       "files/d.jpg": "permission denied"}


def test_a_folder_or_fifo_given_as_a_file_is_a_read_error(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError) as info:
        read_image(tmp_path)              # a folder: EISDIR is not a stage crash either
    assert info.value.reason == "a folder, not a file"
    fifo = tmp_path / "p.jpg"
    os.mkfifo(fifo)
    with pytest.raises(ImageReadError, match="FIFO"):
        read_image(fifo)                  # used to block forever in read_bytes()


# ------------------------------------------------------------------ 12. malformed manifest values

def test_a_crafted_manifest_value_is_a_one_line_error(tmp_path: Path) -> None:
    data = _tree(tmp_path / "data", ["cls/a.jpg"])
    line = Record(stage="detect", source="x.jpg", status="ok", output="cls/a.jpg").to_json()
    (data / "manifest.jsonl").write_text(line.replace('"output": "cls/a.jpg"', '"output": ["x"]') + "\n"
                                         + line + "\n")
    result = _augment(str(data), str(tmp_path / "out"), "--flip")
    assert result.exit_code == 2 and "line 1" in result.output and "'output'" in result.output, result.output
    assert "Traceback" not in result.output


# ------------------------------------------------------------------ 14. manifest bytes and --workers

def test_manifest_bytes_do_not_depend_on_the_worker_count(tmp_path: Path) -> None:
    names = [f"c{i % 3}/p{i:02d}.jpg" for i in range(12)]
    data = _tree(tmp_path / "data", names)
    (data / "c1" / "broken.jpg").write_bytes(b"not a photo")
    manifests = []
    for workers in (1, 2):
        out = tmp_path / f"out{workers}"
        result = CliRunner().invoke(cli, ["augment", str(data), str(out), "--flip", "--color-jitter", "-q",
                                          "-j", str(workers), "--seed", "5"])
        assert result.exit_code == 0, result.output
        manifests.append((out / "manifest.jsonl").read_bytes())
    assert manifests[0] == manifests[1]
    assert len(manifests[0].splitlines()) == 12 * 3 + 1


def test_scan_lists_the_same_files_as_before(tmp_path: Path) -> None:
    data = _tree(tmp_path / "data", ["b/x.jpg", "a/y.JPG", ".hidden/z.jpg", "a/.w.jpg"])
    (data / "a" / "notes.txt").write_text("x")
    files, unlisted = scan_images(data)
    assert [f.relative_to(data.resolve()).as_posix() for f in files] == ["a/y.JPG", "b/x.jpg"]
    assert unlisted == []


# ------------------------------------------------------------------ 11. trainer and unreadable files

def test_train_refuses_a_class_with_no_readable_image_and_says_what_it_skipped(tmp_path: Path) -> None:
    from maskprep_train.engine import TrainConfig, fit

    data = _tree(tmp_path / "data", [f"with/{i}.jpg" for i in range(4)] + [f"without/{i}.jpg" for i in range(2)])
    for i in range(2):
        (data / "without" / f"{i}.jpg").write_bytes(b"\xff\xd8 not really")
    (data / "without" / "empty.jpg").write_bytes(b"")
    lines: list[str] = []
    with pytest.raises(ValueError, match="'without' has no readable training image"):
        fit(TrainConfig(data=str(data), out=str(tmp_path / "o"), weights="none", arch="resnet18",
                        img_size=32, epochs=1, log=lines.append))
    # (one of the three may have gone to the validation split)
    assert any(line.startswith("skipped ") and "unreadable training file(s)" in line and "not an image"
               in line for line in lines), lines
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------ 12. malformed checkpoints

@pytest.mark.parametrize("damage, words", [
    (lambda c: c.pop("model"), "no 'model' weights"),
    (lambda c: c.pop("classes"), "'classes' must be"),
    (lambda c: c.update(img_size=0), "'img_size' must be"),
    (lambda c: c.update(img_size="224"), "'img_size' must be"),
    (lambda c: c.update(arch="vgg"), "'arch' must be"),
    (lambda c: c.update(classes=["a", "b", "c"]), "weights do not fit"),
])
def test_a_damaged_checkpoint_is_a_one_line_error(tmp_path: Path, damage, words) -> None:
    import torch

    from maskprep_train.cli import cli as train_cli
    from maskprep_train.engine import CHECKPOINT_FORMAT
    from maskprep_train.model import build_model

    model = build_model("resnet18", 2, "none")
    ckpt = {"format": CHECKPOINT_FORMAT, "model": model.state_dict(), "arch": "resnet18",
            "classes": ["with", "without"], "img_size": 64, "epoch": 1, "val": {}}
    damage(ckpt)
    torch.save(ckpt, tmp_path / "best.pt")
    photo = _photos(1)[0]
    for args in (["predict", str(tmp_path / "best.pt"), str(photo)],
                 ["evaluate", str(tmp_path / "best.pt"), str(photo.parent.parent)]):
        result = CliRunner().invoke(train_cli, args)
        assert result.exit_code == 2 and words in result.output, (args, result.output)
        assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_an_audit_worker_killed_by_sigkill_is_reported_not_waited_for(tmp_path: Path) -> None:
    """The audit's pool had the same hang as the stages' (issue 16 item 2, a sibling)."""
    names = [f"c{i % 2}/p{i:02d}.jpg" for i in range(10)]
    data = _tree(tmp_path / "data", names)
    code = (f"import sys; sys.path.insert(0, {str(TESTS)!r}); import slow_stage as s\n"
            "import maskprep.audit.scan as scan\n"
            "s._REAL_SCAN = scan._scan_job; scan._scan_job = s.audit_scan_killing\n"
            f"ds = scan.scan_dataset({str(data)!r}, workers=2, progress=False)\n"
            "print([(e.rel, e.error) for e in ds.entries if e.error])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == repr([("c1/p03.jpg", WORKER_DIED)])


# ------------------------------------------------------------------ 3 (sibling). a disk that fills up

def two_outputs_stage(job: Job) -> list[Produced]:
    image = read_image(job.source)
    return [Produced(rel=output_rel(job, "one"), data=image, variant="one"),
            Produced(rel=output_rel(job, "two"), data=image[:, ::-1].copy(), variant="two")]


def test_a_full_disk_fails_the_input_whole_and_stops_the_run_resumably(tmp_path: Path, monkeypatch) -> None:
    import errno

    import maskprep.manifest as manifest_mod
    import maskprep.runner as runner_mod
    data, out = _tree(tmp_path / "data", ["cls/a.jpg", "cls/b.jpg", "cls/c.jpg"]), tmp_path / "out"
    real_write, real_records = runner_mod.write_image, manifest_mod.ManifestWriter.write
    after_b = []

    def write_image(path, *a, **k):   # b's second output hits a full disk
        if Path(path).name == "b__two.jpg":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(path, *a, **k)

    def write_records(self, records):  # then the manifest write after b's fails too
        if after_b:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_records(self, records)
        after_b.extend(r for r in records if r.source == "cls/b.jpg")
    monkeypatch.setattr(runner_mod, "write_image", write_image)
    monkeypatch.setattr(manifest_mod.ManifestWriter, "write", write_records)
    with pytest.raises(runner_mod.RunError, match="no space left on device.*--resume"):
        run_stage("two", data, out, two_outputs_stage, workers=1, progress=False)
    records = read_manifest(out)
    assert [(r.source, r.status, r.reason) for r in records][-1] == (
        "cls/b.jpg", "failed", "error: no space left on device")
    assert not (out / "cls" / "b__one.jpg").exists(), "no output of a failed input stays behind"
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    monkeypatch.undo()
    summary = run_stage("two", data, out, two_outputs_stage, workers=1, resume=True, progress=False)
    assert summary.outputs == 4 and summary.resumed == 1
    assert sorted(p.name for p in (out / "cls").iterdir()) == [
        f"{s}__{v}.jpg" for s in "abc" for v in ("one", "two")]


@pytest.mark.slow   # a one-epoch training in a subprocess
def test_audit_and_train_say_which_folders_they_could_not_read(tmp_path: Path) -> None:
    """The stages record unreadable folders; the audit counts them as unreadable and the trainer
    says it skipped them (both used to leave them out without a word)."""
    data = _tree(tmp_path / "data", [f"{c}/{i}.jpg" for c in ("a", "b", "c") for i in range(2)])
    (data / "c").chmod(0o000)
    audit_code = ("from maskprep.audit.scan import scan_dataset\n"
                  f"ds = scan_dataset({str(data)!r}, workers=1, progress=False)\n"
                  "print([(e.rel, e.error) for e in ds.entries if e.error])")
    train_code = ("from maskprep_train.engine import TrainConfig, fit\n"
                  f"fit(TrainConfig(data={str(data)!r}, out={str(tmp_path / 'run')!r}, weights='none', "
                  "arch='resnet18', freeze='head', augment='none', img_size=32, epochs=1, log=print))")
    try:
        audit, train = _as_a_user(audit_code), _as_a_user(train_code)
    finally:
        (data / "c").chmod(0o755)
    assert audit.returncode == 0, audit.stderr[-2000:]
    assert audit.stdout.strip() == repr([("c", "unreadable folder: permission denied")])
    assert train.returncode == 0, train.stderr[-2000:]
    assert "skipped 1 unreadable entry under" in train.stdout and "c (unreadable folder" in train.stdout
