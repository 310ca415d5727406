"""Benchmark the audit's pair search: our multi-index Hamming search against faiss's binary hash indexes.

On the same hashes, in one run, every pair within ``--threshold`` bits of a self-join:
  (a) maskprep.audit.pairs.hamming_pairs (the audit's search: multi-index hashing or blocked XOR,
      whichever its cost model picks; numpy, one thread)
  (b) faiss IndexBinaryMultiHash, nhash tables of b bits, nflip so that the search is exact
      (nhash * (nflip + 1) > threshold), range_search; one thread and all threads
  (c) faiss IndexBinaryHash, one table of b bits with nflip flips: approximate, its recall is shown
The audit's default threshold. Hashes: real pHashes of the shared photos give each bit's frequency;
N hashes are drawn with those bit frequencies, and 5% of them are near copies (0-6 bits from another
hash), as in a set of photos with a few re-encoded or cropped copies. Prints times and ratios against
(a). Needs faiss-cpu (`pip install faiss-cpu`), which maskprep itself does not use.

    .venv/bin/python benchmarks/bench_pairs.py --sizes 100000,1000000
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from maskprep.audit.duplicates import DEFAULT_NEAR_THRESHOLD  # noqa: E402
from maskprep.audit.hashing import compute_hashes  # noqa: E402
from maskprep.audit.pairs import hamming_pairs  # noqa: E402
from maskprep.images import ImageReadError, list_images, read_image  # noqa: E402

DATA = Path(os.environ.get("MASKPREP_SHARED_DATA", REPO.parent / "shared" / "data")) / "masks"


def bit_frequencies(paths: list[Path]) -> np.ndarray:
    """How often each of the 64 pHash bits is set over real photos."""
    hashes = []
    for path in paths:
        try:
            hashes.append(compute_hashes(read_image(path)).phash)
        except ImageReadError:
            continue
    bits = (np.array(hashes, dtype=np.uint64)[:, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)
    return bits.mean(axis=0)


def draw_hashes(n: int, freq: np.ndarray, rng: np.random.Generator, copies: float = 0.05) -> np.ndarray:
    bits = rng.random((n, 64)) < freq
    h = (bits.astype(np.uint64) << np.arange(64, dtype=np.uint64)).sum(axis=1, dtype=np.uint64)
    k = int(n * copies)
    src = rng.integers(0, n - k, k)
    flips = np.zeros(k, dtype=np.uint64)
    for row, count in enumerate(rng.integers(0, 7, k)):
        for b in rng.choice(64, count, replace=False):
            flips[row] |= np.uint64(1) << np.uint64(b)
    h[n - k:] = h[src] ^ flips
    return h


def as_codes(h: np.ndarray) -> np.ndarray:
    """faiss's binary codes: 8 bytes per hash, in memory order (a bijection, so distances are kept)."""
    return np.ascontiguousarray(h.astype("<u8")).view(np.uint8).reshape(-1, 8)


def faiss_pairs(index, h: np.ndarray, threshold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Self-join by range search; faiss keeps distances strictly below the radius."""
    codes = as_codes(h)
    index.add(codes)
    lims, dist, ids = index.range_search(codes, threshold + 1)
    qi = np.repeat(np.arange(len(h)), np.diff(lims).astype(np.int64))
    keep = qi < ids
    i, j, d = qi[keep], ids[keep].astype(np.int64), dist[keep]
    order = np.lexsort((j, i))
    return i[order], j[order], d[order]


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def main() -> None:
    import faiss
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--threshold", type=int, default=DEFAULT_NEAR_THRESHOLD,
                        help=f"bits (default: the audit's, {DEFAULT_NEAR_THRESHOLD})")
    parser.add_argument("--sample", type=int, default=200, help="real photos for the bit frequencies")
    parser.add_argument("--multihash-max", type=int, default=200_000,
                        help="skip IndexBinaryMultiHash above this size (measured 24x slower than ours "
                             "at 100k here, and growing faster than linearly)")
    args = parser.parse_args()
    paths = list_images(DATA)[:: max(1, len(list_images(DATA)) // args.sample)][: args.sample]
    freq = bit_frequencies(paths)
    t = args.threshold
    threads = faiss.omp_get_max_threads()
    print(f"bench_pairs: self-join within {t} bits; bit frequencies from {len(paths)} real pHashes "
          f"(min {freq.min():.2f}, max {freq.max():.2f}); faiss {faiss.__version__}, {threads} threads max")
    for n in (int(s) for s in args.sizes.split(",")):
        h = draw_hashes(n, freq, np.random.default_rng(n))
        print(f"\n== {n} hashes", flush=True)
        (i, j, d), base = timed(hamming_pairs, h, None, t)
        truth = set(zip(i.tolist(), j.tolist()))
        print(f"  maskprep hamming_pairs      {base:7.2f} s  {len(truth)} pairs  (baseline)", flush=True)
        nhash, b = 4, 16
        nflip = t // nhash  # pigeonhole: some table differs in at most t // nhash bits
        for nthreads in sorted({1, threads}) if n <= args.multihash_max else ():
            faiss.omp_set_num_threads(nthreads)
            index = faiss.IndexBinaryMultiHash(64, nhash, b)
            index.nflip = nflip
            (fi, fj, _), sec = timed(faiss_pairs, index, h, t)
            exact = set(zip(fi.tolist(), fj.tolist())) == truth
            print(f"  faiss MultiHash {nhash}x{b} nflip {nflip} ({nthreads} thr) {sec:7.2f} s  "
                  f"{len(fi)} pairs, exact: {exact}  {base / sec:.2f}x maskprep's speed", flush=True)
        if n > args.multihash_max:
            print(f"  faiss MultiHash: skipped above --multihash-max {args.multihash_max}")
        faiss.omp_set_num_threads(1)
        for b, nflip in ((16, 2), (24, 2)):
            index = faiss.IndexBinaryHash(64, b)
            index.nflip = nflip
            (fi, fj, _), sec = timed(faiss_pairs, index, h, t)
            found = len(set(zip(fi.tolist(), fj.tolist())) & truth)
            print(f"  faiss Hash b={b} nflip {nflip} (1 thr)   {sec:7.2f} s  recall "
                  f"{found / max(1, len(truth)):.3f}  {base / sec:.2f}x maskprep's speed", flush=True)
        faiss.omp_set_num_threads(threads)


if __name__ == "__main__":
    main()
