"""Benchmark of `maskprep audit`: hashing speed, pair search at 100k, planted near-duplicate recall,
and the whole audit of the shared chandrikadeb7 sample. Prints ratios against baselines measured in the
same run (timings on a shared machine are noisy; ratios much less so).

    .venv/bin/python benchmarks/bench_audit.py [--data ../shared/data] [--pairs 100000] [--workers N]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from maskprep.audit import audit  # noqa: E402
from maskprep.audit.hashing import compute_hashes, hamming  # noqa: E402
from maskprep.audit.pairs import brute_pairs, choose_method, flip_aware_pairs, hamming_pairs  # noqa: E402
from maskprep.images import decode_image, encode_image, list_images, read_image, write_image  # noqa: E402


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def bench_hashing(paths: list[Path]) -> None:
    print(f"\n== hashing ({len(paths)} real photos, one process)")
    images, t_read = timed(lambda: [read_image(p) for p in paths])
    _, t_hash = timed(lambda: [compute_hashes(im) for im in images])
    print(f"  decode only (baseline)     {len(paths) / t_read:8.0f} img/s")
    print(f"  hashes of decoded images   {len(paths) / t_hash:8.0f} img/s  "
          f"(hashing adds {t_hash / t_read:.2f}x the decode time)")


def plain_loop_pairs(h: np.ndarray, hf: np.ndarray, t: int) -> set[tuple[int, int]]:
    """The baseline: one row at a time against all later rows (O(n^2), vectorised per row only)."""
    out = set()
    for i in range(len(h)):
        d = np.minimum(np.bitwise_count(h[i] ^ h[i + 1:]),
                       np.minimum(np.bitwise_count(hf[i] ^ h[i + 1:]), np.bitwise_count(h[i] ^ hf[i + 1:])))
        for j in np.nonzero(d <= t)[0]:
            out.add((i, i + 1 + int(j)))
    return out


def bench_pairs(n: int, t: int, sample: int) -> None:
    print(f"\n== pair search, {n} random 64-bit hashes (+ their mirror hashes), distance <= {t}")
    rng = np.random.default_rng(0)
    h = rng.integers(0, 2**63, n, dtype=np.int64).astype(np.uint64) << np.uint64(1)
    hf = rng.integers(0, 2**63, n, dtype=np.int64).astype(np.uint64) << np.uint64(1)
    plant = n // 50  # some true neighbours so there is something to find
    h[1:2 * plant:2] = h[0:2 * plant:2] ^ np.uint64(0b101)
    method = choose_method(n, n, t, self_join=True)
    (i, j, d), t_fast = timed(flip_aware_pairs, h, hf, t)
    print(f"  multi-index hashing {method}: {t_fast:6.2f} s, {len(i)} pairs "
          f"(bar: < 10 s on 2 cores) -> {'PASS' if t_fast < 10 else 'OVER'}")
    s = min(sample, n)
    base, t_base = timed(plain_loop_pairs, h[:s], hf[:s], t)
    fast_sample = flip_aware_pairs(h[:s], hf[:s], t)
    assert base == set(zip(fast_sample[0].tolist(), fast_sample[1].tolist())), "methods disagree"
    t_base_full = t_base * (n / s) ** 2
    print(f"  plain O(n^2) numpy loop on {s}: {t_base:6.2f} s -> {t_base_full:7.0f} s extrapolated to {n} "
          f"(same pairs on the sample: yes)")
    (_, _, _), t_block = timed(brute_pairs, h[:s], None, t)
    print(f"  speed-up of the search over the plain loop at {n}: {t_base_full / t_fast:6.0f}x; blocked "
          f"brute force on the sample: {t_base / max(t_block, 1e-9):.0f}x faster than the loop")
    single, t_single = timed(hamming_pairs, h, None, t)
    print(f"  (one direction only, no mirror: {t_single:.2f} s)")


def plant_copies(src: Path, out: Path, count: int, seed: int = 0) -> list[tuple[str, str]]:
    """Link every photo of ``src`` into ``out`` and add ``count`` altered copies; return the planted pairs."""
    rng = np.random.default_rng(seed)
    src = src.resolve()
    paths = list_images(src)
    for p in paths:
        rel = p.relative_to(src)
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(p, out / rel)
    planted = []
    for k in rng.choice(len(paths), count, replace=False):
        p = paths[int(k)]
        try:
            im = read_image(p)
        except Exception:
            continue
        h, w = im.shape[:2]
        scale = rng.uniform(0.5, 0.9)
        im = cv2.resize(im, (max(16, int(w * scale)), max(16, int(h * scale))), interpolation=cv2.INTER_AREA)
        if rng.random() < 0.5:
            im = np.ascontiguousarray(im[:, ::-1])
        if rng.random() < 0.5:
            im = np.clip(im.astype(np.float32) * rng.uniform(0.9, 1.1), 0, 255).astype(np.uint8)
        im = decode_image(encode_image(im, "JPEG", int(rng.integers(50, 85))))
        rel = p.relative_to(src)
        copy = rel.with_name(f"{rel.stem}_planted.jpg")
        write_image(out / copy, im, jpeg_quality=90)
        planted.append((rel.as_posix(), copy.as_posix()))
    return planted


def bench_recall(src: Path, count: int, workers: int) -> None:
    print(f"\n== planted near duplicates: {count} altered copies (resize 0.5-0.9, half mirrored, "
          f"half brightness +-10%, JPEG q50-85) in {src.name}")
    with tempfile.TemporaryDirectory() as tmp:
        planted = plant_copies(src, Path(tmp), count)
        report, seconds = timed(audit, tmp, workers=workers, progress=False)
        together = set()
        for group in report.duplicates.exact_groups + report.duplicates.near_groups:
            rels = [report.dataset.entries[k].rel for k in group]
            together.update((a, b) for a in rels for b in rels)
        found = sum((a, b) in together for a, b in planted)
        print(f"  found {found}/{len(planted)} planted pairs in {seconds:.1f} s "
              f"({len(report.dataset.entries)} images, {len(report.dataset.entries) / seconds:.0f} img/s)")
        by_rel = {e.rel: e for e in report.dataset.entries}
        for a, b in planted:
            if (a, b) not in together:
                ea, eb = by_rel[a], by_rel[b]
                if ea.hashes is None or eb.hashes is None:
                    print(f"  missed {a}: unreadable")
                    continue
                dp = min(hamming(ea.hashes.phash, eb.hashes.phash), hamming(ea.hashes.phash_flip, eb.hashes.phash))
                dd = min(hamming(ea.hashes.dhash, eb.hashes.dhash), hamming(ea.hashes.dhash_flip, eb.hashes.dhash))
                print(f"  missed {a} ({ea.width}x{ea.height}): pHash {dp}, dHash {dd} bits")


def bench_whole(src: Path, workers: int) -> None:
    print(f"\n== whole audit of {src}")
    report, seconds = timed(audit, src, workers=workers, progress=False)
    single, s1 = timed(audit, src, workers=1, progress=False)
    d = report.to_dict()
    n = d["counts"]["files"]
    print(f"  {n} files in {seconds:.1f} s with {workers} workers ({n / seconds:.0f} img/s); 1 worker "
          f"{s1:.1f} s -> {s1 / seconds:.2f}x from the pool")
    print(f"  stage times: {d['timings']}")
    print(f"  exact groups {d['counts']['exact_groups']} "
          f"({sum(g['kind'] == 'same bytes' for g in d['duplicates']['exact'])} byte-identical), "
          f"near groups {d['counts']['near_groups']}, unreadable {d['counts']['unreadable']}, "
          f"tiny {len(d['files']['tiny'])}, grayscale {len(d['files']['grayscale'])}")
    assert single.to_dict()["duplicates"] == d["duplicates"], "result depends on --workers"


def augment_photo(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Mirror (half), rotate +-20 deg, zoom 0.8-1.25 about a point near the centre, colour jitter, and
    (a third) blur: the augmentations of issue 15."""
    from maskprep.augment import color_jitter, gaussian_blur, rotate
    t = {"mirror": bool(rng.random() < 0.5), "angle": round(float(rng.uniform(-20, 20)), 1),
         "zoom": round(float(rng.uniform(0.8, 1.25)), 2)}
    if t["mirror"]:
        image = np.ascontiguousarray(image[:, ::-1])
    image = rotate(image, t["angle"])
    h, w = image.shape[:2]
    z = t["zoom"]
    cx, cy = w / 2 + rng.uniform(-0.04, 0.04) * w, h / 2 + rng.uniform(-0.04, 0.04) * h
    matrix = np.float32([[z, 0, w / 2 - z * cx], [0, z, h / 2 - z * cy]])
    image = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    image = color_jitter(image, *(float(x) for x in rng.uniform(0.75, 1.25, 3)), float(rng.uniform(-0.05, 0.05)))
    if rng.random() < 0.33:
        image = gaussian_blur(image, 5, 1.2)
    return image, t


def old_audit_seconds(tree: Path, workers: int) -> float:
    """Wall time of the audit as it was at commit b517bab, on the same tree, in this run."""
    import subprocess
    with tempfile.TemporaryDirectory() as old:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", "b517bab", "maskprep"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", old], input=archive, check=True)
        code = ("import time,sys; from maskprep.audit import audit; t=time.perf_counter(); "
                f"audit({str(tree)!r}, workers={workers}, progress=False); print(time.perf_counter()-t)")
        env = dict(os.environ, PYTHONPATH=old)
        out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
        return float(out.stdout.strip().splitlines()[-1])


def bench_masked_copies(src: Path, count: int, workers: int, seed: int = 0) -> None:
    """Issue 15's bar: real photos -> augmented -> masked by synth-masks -> placed in test."""
    from maskprep.masks.synth import synth_masks
    from maskprep.manifest import split_variant
    print(f"\n== masked copies of augmented photos: {count} photos of {src.name}/without_mask, augmented "
          f"(mirror, rotate +-20, zoom 0.8-1.25, jitter, some blur, JPEG), masked by synth-masks, in test")
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photos = list_images(src / "without_mask")
        pick = rng.choice(len(photos), min(count, len(photos)), replace=False)
        for k in pick:
            p = photos[int(k)]
            (tmp / "tree" / "train" / "without_mask").mkdir(parents=True, exist_ok=True)
            os.symlink(p, tmp / "tree" / "train" / "without_mask" / p.name)
            aug, _ = augment_photo(read_image(p), rng)
            write_image(tmp / "aug" / "faces" / f"{p.stem}.jpg", aug, jpeg_quality=int(rng.integers(70, 95)))
        others = [p for p in list_images(src / "with_mask")][:count]
        for p in others:  # real masked photos of other people in test: where false pairs would come from
            (tmp / "tree" / "test" / "with_mask").mkdir(parents=True, exist_ok=True)
            os.symlink(p, tmp / "tree" / "test" / "with_mask" / p.name)
        summary, t_synth = timed(synth_masks, tmp / "aug", tmp / "masked", types="surgical,cloth,kf94,n95",
                                 assume_crop=True, workers=workers, progress=False)
        planted = {}
        by_stem: dict[str, list[Path]] = {}
        for p in list_images(tmp / "masked"):
            by_stem.setdefault(split_variant(p.name)[0], []).append(p)
        for stem, outs in sorted(by_stem.items()):
            out = outs[int(rng.integers(len(outs)))]          # one mask type per photo
            name = f"planted_{len(planted):04d}.jpg"          # an anonymous name, no manifest
            (tmp / "tree" / "test" / "with_mask" / name).write_bytes(out.read_bytes())
            original = next(x.name for x in (tmp / "tree" / "train" / "without_mask").iterdir()
                            if split_variant(x.name)[0] == stem)
            planted[f"test/with_mask/{name}"] = f"train/without_mask/{original}"
        print(f"  synth-masks: {summary.outputs} masked copies in {t_synth:.0f} s ({summary.skipped} photos "
              f"skipped: {dict(summary.reasons)}); {len(planted)} planted")
        tree = tmp / "tree"
        report, seconds = timed(audit, tree, workers=workers, progress=False)
        old = old_audit_seconds(tree, workers)
        masked = {frozenset((p["a"], p["b"])) for f in report.leakage if f["kind"] == "masked_copy"
                  for p in f["pairs"]}
        pairs = masked | leaked_pairs(report.leakage)
        want = {frozenset(x) for x in planted.items()}
        found = len(want & pairs)
        false = len(masked - want)
        print(f"  found {found}/{len(planted)} = {found / max(1, len(planted)):.1%} (bar >= 95 %) -> "
              f"{'PASS' if found >= 0.95 * len(planted) else 'SHORT'} ({len(want & masked)} as masked copies, "
              f"the rest as near/exact copies); other masked-copy pairs: {false}")
        by_method: dict[str, int] = {}
        for f in report.leakage:
            for p in f["pairs"] if f["kind"] == "masked_copy" else []:
                if frozenset((p["a"], p["b"])) in want:
                    by_method[p["transform"]["method"]] = by_method.get(p["transform"]["method"], 0) + 1
        print(f"  planted copies confirmed by method: {dict(sorted(by_method.items()))} (landmarks: the "
              f"upper-face check for crops masked up to the eyes)")
        print(f"  candidate step (inverted-file index): {candidate_recall(report, want)} of the planted pairs "
              f"are candidates")
        print(f"  audit {seconds:.1f} s vs the b517bab audit {old:.1f} s on the same tree: {seconds / old:.2f}x "
              f"(bar <= 2x) -> {'PASS' if seconds <= 2 * old else 'OVER'}")


def leaked_pairs(leakage: list[dict]) -> set[frozenset]:
    """Every cross-split pair a leakage finding names: near pairs and same-pixels files (exact/near)."""
    out = set()
    for f in leakage:
        for p in f.get("pairs", []):
            out.add(frozenset((p["a"], p["b"])))
        for group in f.get("same_pixels", []):
            out.update(frozenset((a, b)) for a in group for b in group if a != b)
    return out


def candidate_recall(report, want: set[frozenset]) -> str:
    """How many of ``want`` the masked-copy candidate step (the index) proposes, on the scanned entries."""
    from maskprep.audit.geometry import candidate_pairs
    idx = [k for k, e in enumerate(report.dataset.entries) if e.ok and e.align is not None]
    entries = [report.dataset.entries[k] for k in idx]
    cands = candidate_pairs([e.align for e in entries], [e.split for e in entries])
    proposed = {frozenset((entries[i].rel, entries[j].rel)) for i, j in cands}
    return f"{len(want & proposed)}/{len(want)} ({len(cands)} candidates for {len(entries)} files)"


def bench_false_pairs(src: Path, workers: int, seed: int = 0) -> None:
    """Cross-split masked-copy pairs on a random 80/20 split of chandrikadeb7 (bar: <= 0.5 % of the files).
    Every pair counts as false here, though the sample holds real copies (its augmented_image_* files)."""
    print(f"\n== random 80/20 split of {src.name}: cross-split masked-copy pairs")
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for p in list_images(src):
            rel = p.relative_to(src)
            split = "test" if rng.random() < 0.2 else "train"
            (tmp / split / rel).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(p, tmp / split / rel)
        report, seconds = timed(audit, tmp, workers=workers, progress=False)
        old = old_audit_seconds(tmp, workers)
        pairs = [p for f in report.leakage if f["kind"] == "masked_copy" for p in f["pairs"]]
        n = len(report.dataset.entries)
        # The sample holds real copies (augmented_image_* of other files, one photo with two printed
        # masks): aligned views that correlate >= 0.95 are the same picture; the rest is the upper bound.
        same = [p for p in pairs if p["transform"].get("correlation", 0) >= 0.95]
        print(f"  {len(pairs)} masked-copy pairs over {n} files = {len(pairs) / n:.2%}, every pair counted as false "
              f"(docs/audit.md judges each by eye) (bar <= 0.5 %) -> "
              f"{'PASS' if len(pairs) <= 0.005 * n else 'OVER'} (by features: "
              f"{sum(p['transform']['method'] == 'features' for p in pairs)}; of them {len(same)} with aligned "
              f"correlation >= 0.95, the same picture; without those {(len(pairs) - len(same)) / n:.2%})")
        for p in pairs:
            print(f"    {p['a']} <-> {p['b']}: {p['agreement']} {p['transform']}")
        print(f"  audit {seconds:.1f} s vs the b517bab audit {old:.1f} s: {seconds / old:.2f}x (bar <= 2x) -> "
              f"{'PASS' if seconds <= 2 * old else 'OVER'}")


def bench_index(src: Path, sizes: list[int], sample: int = 1000, threshold: float = 0.8) -> None:
    """The masked-copy candidate index (pairs.cosine_pairs) against all-pairs products as the set grows.

    Descriptors: real ones of chandrikadeb7 photos (plain and grid), mixed in random pairs with noise to
    reach each size; one query per file. The all-pairs time is measured on ``sample`` queries and scaled."""
    from maskprep.audit.geometry import align_data
    from maskprep.audit.hashing import prepare
    from maskprep.audit.pairs import cosine_pairs
    print(f"\n== candidate index: cosine >= {threshold}, one query per file, inverted file (4 probes) vs all pairs")
    rng = np.random.default_rng(0)
    real = []
    for p in list_images(src)[:300]:
        a = align_data(prepare(read_image(p)))
        real.append(a.descriptor.astype(np.float32))
        real.extend(a.grid[::7].astype(np.float32))
    real = np.stack(real)
    for n in sizes:
        mix = rng.uniform(0.5, 1.0, (n, 1)).astype(np.float32)
        table = mix * real[rng.integers(len(real), size=n)] + (1 - mix) * real[rng.integers(len(real), size=n)]
        table += rng.normal(0, 0.02, table.shape).astype(np.float32)
        table /= np.linalg.norm(table, axis=1, keepdims=True)
        queries = table + rng.normal(0, 0.03, table.shape).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        (i, j, _), t_index = timed(cosine_pairs, queries, table, threshold)
        s = min(sample, n)
        sims, t_brute = timed(lambda: queries[:s] @ table.T)
        exact = set(zip(*[a.tolist() for a in np.nonzero(sims >= threshold)]))
        got = {(a, b) for a, b in zip(i.tolist(), j.tolist()) if a < s}
        print(f"  {n:6d} files: index {t_index:6.2f} s, all pairs {t_brute * n / s:7.2f} s (scaled from {s} "
              f"queries) -> {t_brute * n / s / t_index:5.1f}x; recall of the pairs >= {threshold}: "
              f"{len(got & exact) / max(1, len(exact)):.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--pairs", type=int, default=100_000)
    ap.add_argument("--threshold", type=int, default=8)
    ap.add_argument("--sample", type=int, default=4000, help="hashes for the O(n^2) baseline loop")
    ap.add_argument("--planted", type=int, default=200)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--masked", type=int, default=200, help="photos augmented and masked (issue 15 bar)")
    ap.add_argument("--only-masked", action="store_true", help="run only the issue 15 masked-copy benchmarks")
    ap.add_argument("--index-sizes", default="2000,8000,32000", help="files for the candidate-index benchmark")
    ap.add_argument("--only-index", action="store_true", help="run only the candidate-index benchmark")
    args = ap.parse_args()
    src = (args.data / "masks" / "chandrikadeb7").resolve()
    if not src.is_dir():
        sys.exit(f"shared data not found at {src}: pass --data")
    print(f"maskprep audit benchmark; {os.cpu_count()} cores; numpy {np.__version__}, OpenCV {cv2.__version__}")
    if args.only_index:
        bench_index(src, [int(x) for x in args.index_sizes.split(",")])
        return
    bench_masked_copies(src, args.masked, args.workers)
    bench_false_pairs(src, args.workers)
    bench_index(src, [int(x) for x in args.index_sizes.split(",")])
    if args.only_masked:
        return
    bench_hashing(list_images(src)[:300])
    bench_pairs(args.pairs, args.threshold, args.sample)
    bench_recall(src, args.planted, args.workers)
    bench_whole(src, args.workers)


if __name__ == "__main__":
    main()
