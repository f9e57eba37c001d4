"""The 256-bit multi-index: exactly what a full scan returns, for any radius, after adds and
removals, in less work than a scan."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moderation.pdq_index import CHUNKS, LinearPdqIndex, PdqIndex, distances, parse_hex


def near(rng, base: np.ndarray, bits: int) -> np.ndarray:
    """``base`` with ``bits`` distinct bits flipped."""
    flipped = np.unpackbits(base).copy()
    flipped[rng.choice(256, bits, replace=False)] ^= 1
    return np.packbits(flipped)


def clustered(rng, n: int) -> np.ndarray:
    """Hashes in clusters (as copies of the same pictures are), plus uniform noise."""
    centres = rng.integers(0, 256, (max(1, n // 20), 32), dtype=np.uint8)
    rows = [
        near(rng, centres[rng.integers(len(centres))], int(rng.integers(0, 48))) for _ in range(n)
    ]
    return np.array(rows, dtype=np.uint8)


def both(keys, hashes):
    fast, slow = PdqIndex(), LinearPdqIndex()
    fast.build(keys, hashes)
    slow.build(keys, hashes)
    return fast, slow


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 400), radius=st.integers(0, 80))
def test_a_query_returns_exactly_what_a_scan_returns(seed, n, radius):
    rng = np.random.default_rng(seed)
    hashes = clustered(rng, n) if n else np.zeros((0, 32), dtype=np.uint8)
    keys = rng.permutation(10 * n + 1)[:n].astype(np.int64)
    fast, slow = both(keys, hashes)
    for _ in range(5):
        base = hashes[rng.integers(n)] if n else rng.integers(0, 256, 32, dtype=np.uint8)
        query = near(rng, base, int(rng.integers(0, 64)))
        got, want = fast.query(query, radius), slow.query(query, radius)
        assert got[0].tolist() == want[0].tolist()
        assert got[1].tolist() == want[1].tolist()


def test_the_pigeonhole_edge_31_bits_spread_over_every_chunk_is_found():
    """31 flipped bits with at most 2 in any chunk and 1 in at least one: the worst case."""
    base = np.zeros(32, dtype=np.uint8)
    bits = np.zeros(256, dtype=np.uint8)
    for chunk in range(CHUNKS):
        for k in range(2 if chunk < 15 else 1):
            bits[chunk * 16 + k] = 1
    query = np.packbits(bits)
    assert int(distances(base[None], query)[0]) == 31
    index = PdqIndex()
    index.build(np.array([7]), base[None])
    assert index.query(query, 31)[0].tolist() == [7]
    assert index.query(query, 30)[0].tolist() == []


def test_added_and_removed_entries_count_at_once_and_after_compaction():
    rng = np.random.default_rng(5)
    hashes = clustered(rng, 300)
    fast, slow = both(np.arange(300), hashes)
    for key in range(0, 300, 7):
        fast.remove(key)
        slow.remove(key)
    for key in range(1000, 1040):
        h = near(rng, hashes[key % 300], 10)
        fast.add(key, h)
        slow.add(key, h)
    for compacted in (False, True):
        if compacted:
            fast.compact()
        for i in range(0, 300, 13):
            for radius in (0, 31, 40):
                assert fast.query(hashes[i], radius)[0].tolist() == (
                    slow.query(hashes[i], radius)[0].tolist()
                )
    assert len(fast) == len(slow) == 300 - len(range(0, 300, 7)) + 40


def test_a_query_at_distance_31_reads_a_small_part_of_a_large_index():
    rng = np.random.default_rng(9)
    hashes = rng.integers(0, 256, (100_000, 32), dtype=np.uint8)
    index = PdqIndex()
    index.build(np.arange(len(hashes)), hashes)
    candidates = index.candidates(hashes[0], 31)
    assert 0 in candidates.tolist()
    assert len(candidates) < len(hashes) // 50


def test_parsing_a_hash_checks_its_length():
    assert parse_hex("ff" * 32).tolist() == [255] * 32
    with pytest.raises(ValueError):
        parse_hex("ff" * 31)
