"""Find every pair of 64-bit hashes within a Hamming distance, fast.

Two exact methods, chosen by a cost estimate:

- **multi-index hashing** (Norouzi et al.): split the 64 bits into ``m`` chunks; two hashes within
  distance ``T`` agree to within about ``T / m`` bits on at least one chunk (pigeonhole, see
  :func:`_radii`), so each chunk is looked up in a bucket table under every bit pattern of that few
  flips, and only those candidates are checked. Near-linear on real hash sets.
- **blocked brute force**: XOR of uint64 blocks and ``np.bitwise_count``, for small sets or when the
  hashes are so clumped that buckets would be huge.

Unlike grouping equal hash strings, both find pairs one bit apart.
"""
from __future__ import annotations

from itertools import combinations
from math import comb

import numpy as np
from numpy.typing import ArrayLike

_BLOCK_ELEMENTS = 1 << 22  # elements of one XOR block in the brute-force path (32 MiB of uint64)
_PROBE_CHUNK = 1 << 16     # queries assigned to their index cells at once (a chunk x cells product)


def _as_u64(hashes: ArrayLike) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(hashes, dtype=np.uint64).ravel())


def _popcount(x: np.ndarray) -> np.ndarray:
    return np.bitwise_count(x)


def brute_pairs(queries: ArrayLike, table: ArrayLike | None = None, max_distance: int = 10
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All ``(i, j, d)`` with ``hamming(queries[i], table[j]) <= max_distance``, by blocked XOR+popcount.

    With ``table=None`` the set is compared with itself and only pairs ``i < j`` are returned.
    """
    q = _as_u64(queries)
    self_join = table is None
    t = q if self_join else _as_u64(table)
    out_i, out_j, out_d = [], [], []
    if len(q) == 0 or len(t) == 0:
        return _empty()
    rows = max(1, _BLOCK_ELEMENTS // len(t))
    for start in range(0, len(q), rows):
        stop = min(len(q), start + rows)
        # In a self-join, row i only needs columns > i: skip the block's lower-left part.
        col0 = start + 1 if self_join else 0
        if col0 >= len(t):
            break
        d = _popcount(q[start:stop, None] ^ t[None, col0:])
        ii, jj = np.nonzero(d <= max_distance)
        jj = jj + col0
        ii = ii + start
        dd = d[ii - start, jj - col0]
        if self_join:
            keep = ii < jj
            ii, jj, dd = ii[keep], jj[keep], dd[keep]
        out_i.append(ii)
        out_j.append(jj)
        out_d.append(dd)
    return _concat(out_i, out_j, out_d)


def _empty() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    e = np.zeros(0, dtype=np.int64)
    return e, e.copy(), np.zeros(0, dtype=np.uint8)


def _concat(out_i, out_j, out_d) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not out_i:
        return _empty()
    return (np.concatenate(out_i).astype(np.int64), np.concatenate(out_j).astype(np.int64),
            np.concatenate(out_d).astype(np.uint8))


def _chunks(m: int) -> list[tuple[int, int]]:
    """``m`` (shift, width) chunks covering 64 bits, widths differing by at most one."""
    widths = [64 // m + (1 if k < 64 % m else 0) for k in range(m)]
    out, shift = [], 0
    for w in widths:
        out.append((shift, w))
        shift += w
    return out


def _probe_masks(width: int, radius: int) -> np.ndarray:
    masks = [0]
    for r in range(1, radius + 1):
        for bits in combinations(range(width), r):
            masks.append(sum(1 << b for b in bits))
    return np.asarray(masks, dtype=np.int64)


def _radii(max_distance: int, m: int) -> list[int]:
    """Search radius per chunk. With ``T = m*r + a``, two hashes within ``T`` are within ``r`` on one of
    the first ``a + 1`` chunks or within ``r - 1`` on one of the others (else their distance would be
    at least ``(a+1)(r+1) + (m-a-1)r = T + 1``), so most chunks need a smaller radius. A radius of -1
    means that chunk needs no search at all."""
    r, a = divmod(max_distance, m)
    return [r if k <= a else r - 1 for k in range(m)]


def _mih_cost(nq: int, nt: int, max_distance: int, m: int) -> float:
    probes = 0
    for (shift, width), radius in zip(_chunks(m), _radii(max_distance, m)):
        probes += sum(comb(width, r) for r in range(radius + 1))
    width = 64 // m
    candidates = nq * nt / float(2 ** width)
    # Rough nanoseconds measured on numpy 2.4: a probe costs a pass over the queries plus the
    # candidates it yields; each chunk's bucket table costs 2^width.
    return probes * (25.0 * nq + 10.0 * candidates) + m * 5.0 * (2 ** width)


def choose_method(nq: int, nt: int, max_distance: int, self_join: bool = False) -> tuple[str, int]:
    """``("mih", m)`` or ``("brute", 0)``, whichever the cost model says is cheaper."""
    brute = 4.5 * nq * nt * (0.5 if self_join else 1.0)  # ns per XOR+popcount+compare
    best = ("brute", 0, brute)
    for m in range(2, 9):
        if 64 // m > 24:  # bucket tables above 16M entries cost more memory than they save
            continue
        cost = _mih_cost(nq, nt, max_distance, m)
        if cost < best[2]:
            best = ("mih", m, cost)
    return best[0], best[1]


def mih_pairs(queries: ArrayLike, table: ArrayLike | None = None, max_distance: int = 10, m: int = 4
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Same result as :func:`brute_pairs`, by multi-index hashing with ``m`` chunks."""
    q = _as_u64(queries)
    self_join = table is None
    t = q if self_join else _as_u64(table)
    if len(q) == 0 or len(t) == 0:
        return _empty()
    out_i, out_j, out_d = [], [], []
    for (shift, width), radius in zip(_chunks(m), _radii(max_distance, m)):
        if radius < 0:
            continue
        lowmask = np.uint64((1 << width) - 1)
        t_chunk = ((t >> np.uint64(shift)) & lowmask).astype(np.int64)
        q_chunk = ((q >> np.uint64(shift)) & lowmask).astype(np.int64)
        order = np.argsort(t_chunk, kind="stable")
        counts_table = np.bincount(t_chunk, minlength=1 << width)
        starts = np.zeros(1 << width, dtype=np.int64)
        np.cumsum(counts_table[:-1], out=starts[1:])
        all_queries = np.arange(len(q), dtype=np.int64)
        # In a self-join, the pair (i, j) is met from i and from j alike under the same non-zero mask;
        # probing only from the side whose chunk has the mask's top bit clear meets it once.
        clear_bit = {} if not self_join else {
            b: np.flatnonzero((q_chunk & (1 << b)) == 0) for b in range(width)}
        for mask in _probe_masks(width, radius):
            mask = int(mask)
            qidx = clear_bit[mask.bit_length() - 1] if self_join and mask else all_queries
            keys = q_chunk[qidx] ^ mask
            counts = counts_table[keys]
            hit = counts > 0
            qidx, keys, counts = qidx[hit], keys[hit], counts[hit]
            total = int(counts.sum())
            if total == 0:
                continue
            qi = np.repeat(qidx, counts)
            offsets = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
            tj = order[np.repeat(starts[keys], counts) + offsets]
            if self_join and mask == 0:
                keep = qi < tj
                qi, tj = qi[keep], tj[keep]
            d = _popcount(q[qi] ^ t[tj])
            keep = d <= max_distance
            qi, tj, d = qi[keep], tj[keep], d[keep]
            if self_join:
                qi, tj = np.minimum(qi, tj), np.maximum(qi, tj)
            out_i.append(qi)
            out_j.append(tj)
            out_d.append(d)
    i, j, d = _concat(out_i, out_j, out_d)
    if len(i) == 0:
        return i, j, d
    # A pair close on several chunks was found once per chunk.
    key = i * len(t) + j
    _, first = np.unique(key, return_index=True)
    return i[first], j[first], d[first]


def hamming_pairs(queries: ArrayLike, table: ArrayLike | None = None, max_distance: int = 10,
                  method: str = "auto") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every ``(i, j, distance)`` within ``max_distance`` bits, sorted by (i, j).

    ``table=None`` compares the set with itself (pairs ``i < j``). ``method`` is ``"auto"``,
    ``"mih"`` or ``"brute"``; all give the same pairs.
    """
    if not 0 <= max_distance <= 64:
        raise ValueError(f"max_distance must be within 0..64, not {max_distance}")
    nq = len(np.asarray(queries).ravel())
    nt = nq if table is None else len(np.asarray(table).ravel())
    if method == "auto":
        method, m = choose_method(nq, nt, max_distance, self_join=table is None)
    else:
        m = choose_method(nq, nt, max_distance)[1] or 4
    if method == "mih":
        i, j, d = mih_pairs(queries, table, max_distance, m=m)
    elif method == "brute":
        i, j, d = brute_pairs(queries, table, max_distance)
    else:
        raise ValueError(f"unknown method {method!r}: use auto, mih or brute")
    order = np.lexsort((j, i))
    return i[order], j[order], d[order]


def flip_aware_pairs(hashes: ArrayLike, flipped: ArrayLike, max_distance: int = 10, method: str = "auto"
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs ``i < j`` whose images match directly or as mirror images, with the smaller distance.

    ``flipped[k]`` is the hash of image ``k``'s mirror image.
    """
    h = _as_u64(hashes)
    f = _as_u64(flipped)
    i1, j1, d1 = hamming_pairs(h, None, max_distance, method)
    # mirror of i against j; (i, j) and (j, i) are the same pair, and i == j is an image and its own mirror.
    i2, j2, d2 = hamming_pairs(f, h, max_distance, method)
    keep = i2 != j2
    i2, j2, d2 = np.minimum(i2[keep], j2[keep]), np.maximum(i2[keep], j2[keep]), d2[keep]
    i = np.concatenate([i1, i2])
    j = np.concatenate([j1, j2])
    d = np.concatenate([d1, d2])
    if len(i) == 0:
        return i, j, d
    order = np.lexsort((d, j, i))
    i, j, d = i[order], j[order], d[order]
    first = np.ones(len(i), dtype=bool)
    first[1:] = (i[1:] != i[:-1]) | (j[1:] != j[:-1])
    return i[first], j[first], d[first]


# ---------------------------------------------------------------------------------------------------
# Close pairs of unit vectors (cosine), from an inverted-file index

def spherical_kmeans(vectors: np.ndarray, cells: int, iterations: int = 8, seed: int = 0) -> np.ndarray:
    """``cells`` unit centroids of unit ``vectors`` (n, d) by Lloyd iterations on the cosine; the same
    ``seed`` gives the same centroids (the audit must give the same answer every run)."""
    rng = np.random.default_rng(seed)
    cells = max(1, min(cells, len(vectors)))
    centroids = vectors[np.sort(rng.choice(len(vectors), cells, replace=False))].copy()
    for _ in range(iterations):
        assign = (vectors @ centroids.T).argmax(1)
        for k in range(cells):
            members = vectors[assign == k]
            if len(members):        # an empty cell keeps its old centroid
                c = members.sum(0)
                centroids[k] = c / (float(np.linalg.norm(c)) + 1e-12)
    return centroids


def cosine_pairs(queries: ArrayLike, table: ArrayLike, min_similarity: float, probes: int = 4,
                 cells: int | None = None, seed: int = 0, chunk: int = _PROBE_CHUNK
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(i, j, s)`` with ``s = queries[i] . table[j] >= min_similarity`` (rows unit-norm), from an
    inverted-file index instead of all ``len(queries) x len(table)`` products.

    The table is cut into ``cells`` (default ``sqrt(n)``) by :func:`spherical_kmeans`; each query is
    compared only with the table rows of its ``probes`` nearest cells: about ``probes * n / cells``
    products per query, so ``O(m sqrt(n))`` in all. Approximate: a pair whose two rows fall in cells
    the query does not probe is missed (the audit measures this step's recall in benchmarks/bench_audit.py).
    Small tables (cells <= probes) are compared exhaustively, which is exact.

    Memory stays linear in ``len(queries)``: float16 queries are kept as given and widened a block at a
    time, and queries are assigned to their cells ``chunk`` rows at a time (the result does not depend
    on ``chunk``)."""
    q = np.asarray(queries)
    if q.dtype != np.float16:   # float16 (the audit's grid descriptors) widens exactly, block by block
        q = q.astype(np.float32, copy=False)
    q = np.ascontiguousarray(q)
    t = np.ascontiguousarray(np.asarray(table, dtype=np.float32))
    if len(q) == 0 or len(t) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    # k-means makes at most one cell per table row; fewer cells than probes means probing all of them
    cells = min(cells or int(round(np.sqrt(len(t)))), len(t))
    out_i, out_j, out_s = [], [], []
    if cells <= probes:
        groups = [(np.arange(len(q)), np.arange(len(t)))]
    else:
        centroids = spherical_kmeans(t, cells, seed=seed)
        owner = (t @ centroids.T).argmax(1)
        probed = np.empty((len(q), probes), np.int32)     # each query's `probes` most similar cells
        for start in range(0, len(q), max(1, chunk)):
            s = q[start:start + max(1, chunk)].astype(np.float32) @ centroids.T
            probed[start:start + len(s)] = np.argpartition(s, -probes, axis=1)[:, -probes:]
        rows = np.repeat(np.arange(len(q)), probes)
        order = np.argsort(probed.ravel(), kind="stable")
        bounds = np.searchsorted(probed.ravel()[order], np.arange(len(centroids) + 1))
        groups = [(rows[order[bounds[k]:bounds[k + 1]]], np.nonzero(owner == k)[0])
                  for k in range(len(centroids))]
    for qs, members in groups:
        if len(qs) == 0 or len(members) == 0:
            continue
        step = max(1, _BLOCK_ELEMENTS // (4 * len(members)))
        for start in range(0, len(qs), step):
            block = qs[start:start + step]
            s = q[block].astype(np.float32, copy=False) @ t[members].T
            ii, jj = np.nonzero(s >= min_similarity)
            out_i.append(block[ii])
            out_j.append(members[jj])
            out_s.append(s[ii, jj])
    if not out_i:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return np.concatenate(out_i), np.concatenate(out_j), np.concatenate(out_s)
