"""Does `maskprep dataset` split without leaking, where splitting by hand leaks? And what does it cost?

On the shared chandrikadeb7 class folders (real photos, with the copies such collections hold) and,
optionally, on synthetic masks of real identity photos, it builds a 70/15/15 dataset with
`maskprep dataset`, splits the same files at random per class (what people do by hand), and audits
both. Prints leak findings per kind, the shares asked and got, and the dataset command's time
against the audit's own scan of the same files (the baseline measured in the same run).

    .venv/bin/python benchmarks/eval_dataset_split.py [--data ../shared/data] [--limit 400] [--workers N]
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from maskprep.assemble import build_dataset, parse_class_map  # noqa: E402
from maskprep.audit import audit  # noqa: E402
from maskprep.images import list_images  # noqa: E402


def random_split(src: Path, dst: Path, seed: int = 0) -> None:
    """70/15/15 per class folder, file by file, as a hand-written script does."""
    for cls in sorted(p for p in src.iterdir() if p.is_dir()):
        files = sorted(list_images(cls))
        random.Random(seed).shuffle(files)
        n = len(files)
        cut = [int(0.7 * n), int(0.85 * n)]
        for k, f in enumerate(files):
            split = "train" if k < cut[0] else "val" if k < cut[1] else "test"
            (dst / split / cls.name).mkdir(parents=True, exist_ok=True)
            os.symlink(f, dst / split / cls.name / f.name)


def leak_counts(root: Path, workers: int) -> tuple[Counter, float]:
    t = time.perf_counter()
    report = audit(root, workers=workers, progress=False)
    return Counter(f["kind"] for f in report.leakage), time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--limit", type=int, default=400, help="images per class (0: all)")
    ap.add_argument("--workers", type=int, default=0)
    args = ap.parse_args()
    src = args.data / "masks" / "chandrikadeb7"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sample = tmp / "sample"
        for cls in ("with_mask", "without_mask"):
            (sample / cls).mkdir(parents=True)
            files = sorted(list_images(src / cls))
            for f in files[:args.limit] if args.limit else files:
                os.symlink(f, sample / cls / f.name)
        n = len(list_images(sample))
        print(f"== chandrikadeb7, {n} photos in 2 class folders, no manifest")
        t = time.perf_counter()
        result = build_dataset([sample], tmp / "dataset", class_map=parse_class_map(""),
                               workers=args.workers, progress=False, say=print)
        t_build = time.perf_counter() - t
        for line in result.lines():
            print("  " + line)
        leaks_ds, t_audit = leak_counts(tmp / "dataset", args.workers)
        random_split(sample, tmp / "random")
        leaks_rand, _ = leak_counts(tmp / "random", args.workers)
        groups = len({c.group for c in result.written()})
        print(f"  source groups found: {groups} for {len(result.written())} photos "
              f"({len(result.written()) - groups} photos joined another's group by their pixels)")
        print(f"  audit of `maskprep dataset` output:   {sum(leaks_ds.values()):4d} leak findings {dict(leaks_ds)}")
        print(f"  audit of a random per-class split:   {sum(leaks_rand.values()):4d} leak findings {dict(leaks_rand)}")
        print(f"  asked {result.plan.requested}, got {result.plan.achieved}")
        print(f"  time: dataset {t_build:.1f} s, the audit of its output {t_audit:.1f} s "
              f"(ratio {t_build / t_audit:.2f}x the audit's scan-and-check of the same files)")
        shutil.rmtree(tmp / "random")


if __name__ == "__main__":
    main()
