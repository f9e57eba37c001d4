"""FingerprintIndex must answer exactly like a brute-force scan, whatever the data and history.

Plain functions, no database. Every random set is seeded. Indexes under test are mostly built
with ``index_min=0`` (chunk tables even for tiny sets) and ``scan_fallback=False`` (never fall
back to the full scan), so that the multi-index path is what gets compared; a few tests keep the
defaults to cover the fallback.
"""

from __future__ import annotations

import numpy as np
import pytest

from moderation.fingerprint_index import FingerprintIndex
from moderation.linear_index import LinearIndex

FULL = (1 << 64) - 1
DISTANCES = [*range(17), 20, 24, 32, 64]
INDEXED = {"index_min": 0, "scan_fallback": False}
CONFIGS = {
    "4x16 bits": INDEXED,
    "5 chunks of 12-13 bits": {**INDEXED, "chunk_bits": 13},
    "8x8 bits": {**INDEXED, "chunk_bits": 8},
    "defaults": {},
}


def brute_force(items: dict[int, int], q: int, r: int) -> list[tuple[int, int]]:
    found = [(i, (h ^ q).bit_count()) for i, h in items.items()]
    return sorted(((i, d) for i, d in found if d <= r), key=lambda p: (p[1], p[0]))


def uniform(rng: np.random.Generator, n: int) -> list[int]:
    return [int(h) for h in rng.integers(0, 2**64, size=n, dtype=np.uint64)]


def clustered(rng: np.random.Generator, n: int) -> list[int]:
    """Like real dHash sets: rows of 8 bits that are mostly all-0 or all-1 (flat areas,
    gradients), and groups of near-duplicates (0-3 bits away from a shared prototype)."""
    rows = rng.choice([0x00, 0xFF, -1], p=[0.5, 0.2, 0.3], size=(max(n // 8, 1), 8))
    rows = np.where(rows < 0, rng.integers(0, 256, size=rows.shape), rows).astype(np.uint64)
    prototypes = (rows << (np.arange(8, dtype=np.uint64) * np.uint64(8))).sum(axis=1)
    hashes = prototypes[rng.integers(0, len(prototypes), size=n)]
    for _ in range(3):
        flip = rng.random(n) < 0.5
        hashes[flip] ^= np.uint64(1) << rng.integers(0, 64, size=int(flip.sum()), dtype=np.uint64)
    return hashes.tolist()


def queries(rng: np.random.Generator, hashes: list[int], count: int) -> list[int]:
    """Half near-members (0-6 bits flipped), half random, plus the extremes."""
    out = [0, FULL]
    for k in range(count):
        if k % 2:
            out.append(int(rng.integers(0, 2**64, dtype=np.uint64)))
        else:
            h = hashes[int(rng.integers(len(hashes)))]
            for bit in rng.integers(0, 64, size=int(rng.integers(0, 7))):
                h ^= 1 << int(bit)
            out.append(h)
    return out


def assert_same_answers(index, reference, probe: list[int], distances=DISTANCES) -> None:
    for q in probe:
        for r in distances:
            assert index.query(q, r) == reference.query(q, r), (hex(q), r)


def test_empty_index_finds_nothing():
    for index in (LinearIndex(), FingerprintIndex(), FingerprintIndex(**INDEXED)):
        assert len(index) == 0
        assert 1 not in index
        assert index.query(0, 64) == []
        index.remove(1)  # no-op


def test_linear_index_matches_pure_python_brute_force():
    rng = np.random.default_rng(1)
    hashes = uniform(rng, 150) + clustered(rng, 150)
    items = dict(zip(rng.permutation(10_000)[:300].tolist(), hashes))
    index = LinearIndex()
    index.build(list(items), list(items.values()))
    for q in queries(rng, hashes, 30):
        for r in DISTANCES:
            assert index.query(q, r) == brute_force(items, q, r)


@pytest.mark.parametrize("config", CONFIGS, ids=list(CONFIGS))
@pytest.mark.parametrize("make", [uniform, clustered])
def test_query_equals_brute_force_for_every_distance(config, make):
    rng = np.random.default_rng(2)
    hashes = make(rng, 400)
    items = dict(zip(rng.choice(1 << 40, size=400, replace=False).tolist(), hashes))
    index = FingerprintIndex(**CONFIGS[config])
    index.build(list(items), np.array(hashes, dtype=np.uint64))
    for q in queries(rng, hashes, 40):
        for r in DISTANCES:
            assert index.query(q, r) == brute_force(items, q, r), (hex(q), r)


@pytest.mark.parametrize("make", [uniform, clustered])
def test_query_equals_linear_scan_on_larger_sets(make):
    rng = np.random.default_rng(3)
    hashes = make(rng, 20_000)
    ids = np.arange(20_000) * 7 - 50_000  # negative ids are fine
    index, reference = FingerprintIndex(**INDEXED), LinearIndex()
    index.build(ids, hashes)
    reference.build(ids, hashes)
    assert_same_answers(index, reference, queries(rng, hashes, 30), [0, 2, 4, 6, 8, 10, 12, 16])


def test_default_settings_mixing_tables_and_full_scans_stay_exact():
    # Big enough for chunk tables; hot queries and large distances take the full scan instead.
    rng = np.random.default_rng(4)
    hashes = clustered(rng, 200_000)
    index, reference = FingerprintIndex(), LinearIndex()
    index.build(range(200_000), hashes)
    reference.build(range(200_000), hashes)
    assert_same_answers(index, reference, queries(rng, hashes, 12), [0, 4, 10, 12, 18, 30])


@pytest.mark.parametrize("cls", [FingerprintIndex, LinearIndex])
def test_an_unordered_query_finds_the_same_ids_at_the_same_distances(cls):
    rng = np.random.default_rng(6)
    hashes = clustered(rng, 20_000)
    index = cls(**INDEXED) if cls is FingerprintIndex else cls()
    index.build(range(20_000), hashes)
    index.add(20_000, hashes[0])  # one in the delta as well
    for q in queries(rng, hashes, 20):
        ordered = index.query_arrays(q, 12)
        ids, distances = index.query_arrays(q, 12, ordered=False)
        assert sorted(zip(distances.tolist(), ids.tolist())) == list(
            zip(ordered[1].tolist(), ordered[0].tolist())
        ), hex(q)


def test_popular_chunk_values_are_skipped_without_losing_matches():
    # Three quarters of the set share their top 48 bits: three of four contiguous chunks are
    # one huge bucket, so the planner must route around them and still find everything.
    rng = np.random.default_rng(5)
    hot = [(0xABCD_EF01_2345 << 16) | int(v) for v in rng.integers(0, 1 << 16, size=3000)]
    hashes = hot + uniform(rng, 1000)
    index, reference = FingerprintIndex(**INDEXED), LinearIndex()
    index.build(range(4000), hashes)
    reference.build(range(4000), hashes)
    assert_same_answers(index, reference, queries(rng, hashes, 40), range(13))


@pytest.mark.parametrize("config", CONFIGS, ids=list(CONFIGS))
def test_interleaved_adds_replacements_and_removes_match_linear_index(config):
    rng = np.random.default_rng(6)
    pool = uniform(rng, 300) + clustered(rng, 300)
    # A tiny delta buffer forces many merges into rebuilt tables along the way.
    index = FingerprintIndex(**CONFIGS[config], delta_limit=16)
    reference = LinearIndex()
    start = dict(zip(range(200), pool[:200]))
    index.build(list(start), list(start.values()))
    reference.build(list(start), list(start.values()))
    for step in range(1500):
        action, id_ = rng.random(), int(rng.integers(0, 400))
        if action < 0.5:  # add, or replace when the id is present
            h = pool[int(rng.integers(len(pool)))] ^ (1 << int(rng.integers(64)))
            index.add(id_, h)
            reference.add(id_, h)
        elif action < 0.85:
            index.remove(id_)
            reference.remove(id_)
        else:
            assert (id_ in index) == (id_ in reference)
        assert len(index) == len(reference)
        if step % 25 == 0:
            assert_same_answers(index, reference, queries(rng, pool, 3), [0, 3, 8, 10, 12, 16])


def test_add_replaces_the_hash_of_an_existing_id():
    index = FingerprintIndex(**INDEXED)
    index.build([1, 2], [0, FULL])
    index.add(1, FULL)
    assert len(index) == 2
    assert index.query(FULL, 0) == [(1, 0), (2, 0)]
    assert index.query(0, 10) == []


def test_re_adding_an_unchanged_hash_keeps_a_single_entry():
    index = FingerprintIndex(**INDEXED)
    index.build([1, 2], [0xF0, 0x0F])
    index.add(1, 0xF0)
    index.add(1, 0xF0)
    assert len(index) == 2
    assert index.query(0xF0, 0) == [(1, 0)]


def test_remove_of_absent_id_is_a_no_op():
    index = FingerprintIndex(**INDEXED)
    index.build([1, 2, 3], [5, 6, 7])
    index.remove(4)
    index.remove("not an id")
    index.remove(1 << 70)
    index.remove(2)
    index.remove(2)
    assert len(index) == 2
    assert 2 not in index and 1 in index and 3 in index
    assert [i for i, _ in index.query(5, 64)] == [1, 3]


def test_extreme_hashes_zero_and_all_ones_are_64_apart():
    for index in (FingerprintIndex(**INDEXED), LinearIndex()):
        index.build([10, 20], [0, FULL])
        assert index.query(0, 63) == [(10, 0)]
        assert index.query(0, 64) == [(10, 0), (20, 64)]
        assert index.query(FULL, 64) == [(20, 0), (10, 64)]
        assert index.query(FULL >> 1, 1) == [(20, 1)]


def test_duplicate_hashes_under_different_ids_are_all_reported_by_ascending_id():
    index = FingerprintIndex(**INDEXED)
    h = 0x0123_4567_89AB_CDEF
    index.build([9, 3, 7, 5], [h, h ^ 1, h, h])
    index.add(1, h)
    assert index.query(h, 1) == [(1, 0), (5, 0), (7, 0), (9, 0), (3, 1)]
    index.remove(7)
    assert index.query(h ^ 1, 0) == [(3, 0)]
    assert index.query(h ^ 1, 1) == [(3, 0), (1, 1), (5, 1), (9, 1)]


def test_build_replaces_previous_contents_and_last_repeated_id_wins():
    index = FingerprintIndex(**INDEXED)
    index.build([1, 2], [1, 2])
    index.add(3, 3)
    index.build([4, 5, 4], [40, 50, 41])
    assert len(index) == 2
    assert 1 not in index and 3 not in index
    assert index.query(41, 0) == [(4, 0)]
    assert index.query(40, 0) == []


def test_hashes_accept_python_ints_and_numpy_uint64():
    index = FingerprintIndex(**INDEXED)
    index.build(np.array([1, 2], dtype=np.int64), np.array([FULL, 7], dtype=np.uint64))
    index.add(np.int64(3), np.uint64(FULL))
    assert index.query(np.uint64(FULL), 0) == [(1, 0), (3, 0)]


@pytest.mark.parametrize("cls", [FingerprintIndex, LinearIndex])
@pytest.mark.parametrize("distance", [-1, 65, 1000])
def test_distance_outside_0_to_64_raises_value_error(cls, distance):
    index = cls()
    index.build([1], [1])
    with pytest.raises(ValueError):
        index.query(1, distance)


@pytest.mark.parametrize("cls", [FingerprintIndex, LinearIndex])
@pytest.mark.parametrize("bad_hash", [-1, 1 << 64])
def test_hash_outside_unsigned_64_bits_raises_value_error(cls, bad_hash):
    index = cls()
    with pytest.raises(ValueError):
        index.query(bad_hash, 4)
    with pytest.raises(ValueError):
        index.add(1, bad_hash)
    with pytest.raises(ValueError):
        index.build([1], [bad_hash])


def test_memory_stays_under_64_bytes_per_fingerprint():
    rng = np.random.default_rng(7)
    for make, n in ((uniform, 200_000), (clustered, 150_000)):
        index = FingerprintIndex()
        index.build(np.arange(n), make(rng, n))
        assert index.nbytes() / n <= 64
