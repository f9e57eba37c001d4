"""Banned-fingerprint lookup benchmark: Python loop vs numpy full scan vs FingerprintIndex.

    python benchmarks/lookup.py                      # N = 10k, 100k, 1M
    python benchmarks/lookup.py --sizes 1000000 --with-10m

For uniform and clustered hash sets and distances 4/8/10/12 it prints, per N, the median and
p99 latency of one lookup for each method, the ratios to the index, the average number of
matches, the index build time and its memory per fingerprint (numpy ``nbytes``). Queries are
half near-members (a stored hash with a few bits flipped), half "random": a fresh hash from the
same distribution, i.e. an innocent upload (uniform for the uniform set). The Python loop runs on
a sample of the queries (and not at 10M), the 10M full scan on every 5th query, so their p99 is
over fewer queries. Every index answer in the scan's sample is checked against the scan.
On clustered sets the p99 is set by the few queries matching a large part of the set (flat or
blank images: up to 8% of it), where building the result list dominates for every method.
Not part of the test run; its numbers are in docs/performance.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from moderation.fingerprint_index import FingerprintIndex  # noqa: E402
from moderation.linear_index import LinearIndex  # noqa: E402

DISTANCES = (4, 8, 10, 12)
QUERIES = 300  # per (set, N, distance); half near-members, half random


def uniform_hashes(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 2**64, size=n, dtype=np.uint64, endpoint=False)


def _pack(grid: np.ndarray) -> np.ndarray:
    """(n, 8, 8) bits -> uint64, row-major with the first bit most significant (ImageHash order)."""
    weights = np.uint64(1) << np.arange(63, -1, -1, dtype=np.uint64)
    return (grid.reshape(-1, 64).astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64)


def _prototypes(n: int, rng: np.random.Generator) -> np.ndarray:
    """Distinct-looking images' dHashes: 70% photos, 25% graphics/screenshots, 5% blank.

    dHash bit (i, j) says whether pixel j+1 of row i is brighter than pixel j. In photos
    neighbouring bits agree more often than chance (measured on the 72 corpus photos: 70% with
    the bit above, 56% with the bit to the left) and bits are skewed by lighting (per-bit means
    0.33..0.65, left columns more often 1): here each bit copies the one above with p=0.4, else
    the one to its left with p=0.15, else is drawn with a column-dependent bias. Graphics
    (flat backgrounds, gradients, text) are mostly constant rows: a row is all 0s with p=0.55,
    all 1s with p=0.15, photo-like otherwise. Blank images hash to 0 or within 2 bits of it.
    """
    bias = np.linspace(0.62, 0.36, 8)
    grid = np.zeros((n, 8, 8), dtype=bool)
    for i in range(8):
        for j in range(8):
            fresh = rng.random(n) < bias[j]
            u = rng.random(n)
            above = grid[:, i - 1, j] if i else fresh
            left = grid[:, i, j - 1] if j else fresh
            grid[:, i, j] = np.where(u < 0.4, above, np.where(u < 0.55, left, fresh))
    kind = rng.random(n)
    graphic = (kind >= 0.70) & (kind < 0.95)
    row_kind = rng.random((n, 8, 1))
    grid = np.where(graphic[:, None, None] & (row_kind < 0.55), False, grid)
    grid = np.where(graphic[:, None, None] & (row_kind >= 0.55) & (row_kind < 0.70), True, grid)
    grid[kind >= 0.95] = False
    hashes = _pack(grid)
    blank = np.flatnonzero(kind >= 0.95)
    return _flip(hashes, blank, rng.integers(0, 3, size=len(blank)), rng)


def _flip(hashes: np.ndarray, which: np.ndarray, counts: np.ndarray, rng: np.random.Generator):
    """Flip counts[i] random bits of hashes[which[i]] (the same bit may be drawn twice)."""
    out = hashes.copy()
    for c in range(1, int(counts.max(initial=0)) + 1):
        rows = which[counts >= c]
        out[rows] ^= np.uint64(1) << rng.integers(0, 64, size=len(rows), dtype=np.uint64)
    return out


def clustered_hashes(n: int, rng: np.random.Generator) -> np.ndarray:
    """A banned set shaped like real ones: skewed, correlated bits, and near-duplicate groups.

    Prototypes come from ``_prototypes``. Banned sets are full of near-duplicates (re-encodes,
    resizes, small crops and overlays of the same picture), so each prototype stands for a group
    whose size follows a heavy-tailed law (Pareto, mean ~4; the biggest groups at 1M hold
    thousands) and whose members differ from the prototype by Poisson(1.5) flipped bits.
    """
    sizes = np.minimum(1 + np.floor(rng.pareto(1.5, size=n) * 3).astype(np.int64), max(n // 200, 1))
    groups = int(np.searchsorted(np.cumsum(sizes), n)) + 1
    sizes = sizes[:groups]
    sizes[-1] -= sizes.sum() - n
    members = np.repeat(_prototypes(groups, rng), sizes)
    return _flip(members, np.arange(n), rng.poisson(1.5, size=n), rng)


def make_queries(stored: np.ndarray, fresh: np.ndarray, rng: np.random.Generator) -> list[int]:
    """Half stored hashes with 0-4 bits flipped, half fresh hashes from the same distribution."""
    half = QUERIES // 2
    near = stored[rng.integers(0, len(stored), size=half)]
    near = _flip(near, np.arange(half), rng.integers(0, 5, size=half), rng)
    return [int(h) for h in np.concatenate((near, fresh[: QUERIES - half]))]


def python_loop(ids: list[int], hashes: list[int], q: int, r: int) -> list[tuple[int, int]]:
    """The seed's approach: compare with every stored hash."""
    found = [(i, d) for i, h in zip(ids, hashes) if (d := (h ^ q).bit_count()) <= r]
    found.sort(key=lambda pair: (pair[1], pair[0]))
    return found


Lookup = Callable[[int, int], list[tuple[int, int]]]


def timed(lookup: Lookup, queries: list[int], r: int) -> tuple[float, float, list]:
    """Median and p99 latency in ms of ``lookup(q, r)`` over the queries, and the answers."""
    times, answers = [], []
    for q in queries:
        t = time.perf_counter()
        answers.append(lookup(q, r))
        times.append(time.perf_counter() - t)
    ms = np.array(times) * 1e3
    return float(np.median(ms)), float(np.percentile(ms, 99)), answers


def bench(name: str, n: int, generate: Callable[[int, np.random.Generator], np.ndarray]) -> None:
    rng = np.random.default_rng(n)
    hashes = generate(n, rng)
    ids = np.arange(1, n + 1, dtype=np.int64)
    queries = make_queries(hashes, generate(QUERIES, rng), rng)

    linear, index = LinearIndex(), FingerprintIndex()
    t = time.perf_counter()
    linear.build(ids, hashes)
    t_linear = time.perf_counter() - t
    t = time.perf_counter()
    index.build(ids, hashes)
    t_index = time.perf_counter() - t
    print(
        f"\n{name} N={n:,}: build {t_linear:.2f} s (scan), {t_index:.2f} s (index); "
        f"memory {linear.nbytes() / n:.1f} B/fp (scan), {index.nbytes() / n:.1f} B/fp (index)"
    )

    # The Python loop is slow: time a sample spread over both query kinds (none at 10M); the
    # 10M full scan on a sample too. Index answers are checked against the scan's.
    loop_queries = queries[:: max(1, n // 100_000)]
    scan_step = max(1, n // 2_000_000)
    id_list, hash_list = (ids.tolist(), hashes.tolist()) if n <= 1_000_000 else (None, None)

    def loop(q: int, r: int) -> list[tuple[int, int]]:
        return python_loop(id_list, hash_list, q, r)

    print(
        f"{'r':>3} {'matches':>8} | {'loop p50':>8} | {'scan p50':>8} {'p99':>6} | "
        f"{'index p50':>9} {'p99':>6} | {'loop/index':>10} {'scan/index':>10}"
    )
    for r in DISTANCES:
        scan50, scan99, expected = timed(linear.query, queries[::scan_step], r)
        index50, index99, got = timed(index.query, queries, r)
        assert got[::scan_step] == expected, "the index disagrees with the full scan"
        loop50 = timed(loop, loop_queries, r)[0] if hash_list else None
        matches = np.mean([len(g) for g in got])
        print(
            f"{r:>3} {matches:>8.1f} | {f'{loop50:.2f}' if loop50 else '-':>8} | "
            f"{scan50:>8.3f} {scan99:>6.2f} | {index50:>9.3f} {index99:>6.2f} | "
            f"{f'{loop50 / index50:.0f}x' if loop50 else '-':>10} {scan50 / index50:>9.1f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated N")
    parser.add_argument("--with-10m", action="store_true", help="also N = 10,000,000")
    parser.add_argument("--sets", default="uniform,clustered", help="uniform, clustered or both")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if args.with_10m:
        sizes.append(10_000_000)
    generators = {"uniform": uniform_hashes, "clustered": clustered_hashes}
    print("one lookup, in ms (p50 = median over the queries); ratios are of medians")
    for name in args.sets.split(","):
        for n in sizes:
            bench(name, n, generators[name])


if __name__ == "__main__":
    main()
