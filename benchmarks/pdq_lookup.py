"""PDQ lookup benchmark: the multi-index (``moderation.pdq_index.PdqIndex``) against a full
numpy scan (``LinearPdqIndex``), one 256-bit hash at distance 31, against N entries.

    python benchmarks/pdq_lookup.py                 # N = 1M, 400 queries
    python benchmarks/pdq_lookup.py --n 100000 --queries 200

Entries: 80% uniform random hashes (PDQ sets about half its bits, as a uniform hash does) and
20% in clusters of near copies (the same picture re-encoded: up to 24 bits apart). Queries: half
near a stored entry (1-31 bits flipped, so each has at least one match), half fresh random
hashes (an innocent upload). Every index answer is checked against the scan's. Prints the build
time, memory, median and p99 per lookup of each, and as the last line the summary:
``pdq lookup at distance 31 against N entries: index X ms, scan Y ms per lookup, exact``.
Not part of the test run; its numbers are in docs/exchange.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from moderation.pdq_index import LinearPdqIndex, PdqIndex  # noqa: E402

RADIUS = 31


def flip(rng: np.random.Generator, rows: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Each row with ``counts[i]`` distinct random bits flipped."""
    bits = np.unpackbits(rows, axis=1)
    for i, k in enumerate(counts.tolist()):
        bits[i, rng.choice(256, k, replace=False)] ^= 1
    return np.packbits(bits, axis=1)


def entries(n: int, rng: np.random.Generator) -> np.ndarray:
    uniform = rng.integers(0, 256, (n - n // 5, 32), dtype=np.uint8)
    centres = rng.integers(0, 256, (max(1, n // 5 // 10), 32), dtype=np.uint8)
    copies = centres[rng.integers(len(centres), size=n // 5)]
    copies = flip(rng, copies, rng.integers(0, 25, size=len(copies)))
    hashes = np.vstack([uniform, copies])
    return hashes[rng.permutation(len(hashes))]


def timed(fn, queries):
    times, answers = [], []
    for q in queries:
        start = time.perf_counter()
        answers.append(fn(q))
        times.append(time.perf_counter() - start)
    return np.array(times) * 1000, answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    hashes = entries(args.n, rng)
    keys = np.arange(args.n, dtype=np.int64)
    half = args.queries // 2
    near = flip(
        rng, hashes[rng.integers(args.n, size=half)], rng.integers(1, RADIUS + 1, size=half)
    )
    fresh = rng.integers(0, 256, (args.queries - half, 32), dtype=np.uint8)
    queries = list(np.vstack([near, fresh]))

    start = time.perf_counter()
    index = PdqIndex()
    index.build(keys, hashes)
    build = time.perf_counter() - start
    scan = LinearPdqIndex()
    scan.build(keys, hashes)
    index.query(queries[0], RADIUS)  # warm up
    fast_ms, fast = timed(lambda q: index.query(q, RADIUS), queries)
    slow_ms, slow = timed(lambda q: scan.query(q, RADIUS), queries)
    exact = sum(
        a[0].tolist() == b[0].tolist() and a[1].tolist() == b[1].tolist()
        for a, b in zip(fast, slow, strict=True)
    )
    candidates = np.mean([len(index.candidates(q, RADIUS)) for q in queries[:100]])
    matches = np.mean([len(a[0]) for a in fast])
    print(f"entries {args.n}, queries {len(queries)} (half near an entry), distance <= {RADIUS}")
    print(f"index build {build:.1f} s, {index.nbytes() / 2**20:.0f} MiB")
    print(f"candidates per query {candidates:.0f}, matches per query {matches:.2f}")
    print(f"index  median {np.median(fast_ms):.2f} ms  p99 {np.percentile(fast_ms, 99):.2f} ms")
    print(f"scan   median {np.median(slow_ms):.2f} ms  p99 {np.percentile(slow_ms, 99):.2f} ms")
    verdict = "exact" if exact == len(queries) else f"NOT EXACT ({exact}/{len(queries)})"
    print(
        f"pdq lookup at distance {RADIUS} against {args.n} entries: index "
        f"{np.median(fast_ms):.2f} ms, scan {np.median(slow_ms):.2f} ms per lookup, {verdict}"
    )


if __name__ == "__main__":
    main()
