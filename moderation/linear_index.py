"""The exact reference index: every query scans every stored hash (numpy XOR + popcount).

``fingerprint_index.FingerprintIndex`` has the same interface and is tested against this one;
the benchmark's "numpy full scan" line is this class. The argument checks and result ordering
both share live here.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from typing import Final

import numpy as np

HASH_BITS: Final = 64
# What a query answers as arrays: (ids, distances), aligned.
IdsAndDistances = tuple[np.ndarray, np.ndarray]
_INT64_MIN: Final = -(1 << 63)
_INT64_END: Final = 1 << 63


def check_hash(value: int) -> int:
    h = operator.index(value)
    if not 0 <= h < 1 << HASH_BITS:
        raise ValueError(f"hash must be an unsigned 64-bit integer, got {h}")
    return h


def check_distance(value: int) -> int:
    r = operator.index(value)
    if not 0 <= r <= HASH_BITS:
        raise ValueError(f"max_distance must be between 0 and {HASH_BITS}, got {r}")
    return r


def check_id(value: int) -> int:
    i = operator.index(value)
    if not _INT64_MIN <= i < _INT64_END:
        raise ValueError(f"id must fit in a signed 64-bit integer, got {i}")
    return i


def as_id(value: object) -> int | None:
    """The id as an int, or None when it cannot be stored (so it is never present)."""
    try:
        i = operator.index(value)  # type: ignore[call-overload]
    except TypeError:
        return None
    return i if _INT64_MIN <= i < _INT64_END else None


def unique_by_id(ids: Iterable[int], hashes: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
    """Arrays sorted by id; for a repeated id the last hash wins, as with repeated ``add``."""
    id_arr = np.asarray(ids if isinstance(ids, np.ndarray) else list(ids), dtype=np.int64)
    try:
        hash_arr = np.asarray(
            hashes if isinstance(hashes, np.ndarray) else list(hashes), dtype=np.uint64
        )
    except OverflowError as e:
        raise ValueError("hashes must be unsigned 64-bit integers") from e
    if id_arr.ndim != 1 or hash_arr.shape != id_arr.shape:
        raise ValueError("ids and hashes must be 1-D sequences of the same length")
    if np.all(id_arr[1:] > id_arr[:-1]):  # already sorted and unique, as loaded by primary key
        return id_arr, hash_arr
    order = np.argsort(id_arr, kind="stable")
    id_arr, hash_arr = id_arr[order], hash_arr[order]
    last = np.ones(len(id_arr), dtype=bool)
    last[:-1] = id_arr[1:] != id_arr[:-1]
    if not last.all():
        id_arr, hash_arr = id_arr[last], hash_arr[last]
    return id_arr, hash_arr


def scan(hashes: np.ndarray, q: np.uint64, r: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions and distances of every hash within r of q (the full scan)."""
    d = np.bitwise_count(hashes ^ q)
    pos = np.flatnonzero(d <= r)
    return pos, d[pos]


def sorted_by_distance(ids: np.ndarray, distances: np.ndarray) -> IdsAndDistances:
    """(ids, distances), nearest first, ties by ascending id."""
    order = np.lexsort((ids, distances))
    return ids[order], distances[order]


class LinearIndex:
    """Exact reference: every query scans every stored hash with numpy XOR + popcount.

    O(N) per query (~0.7 ms at 1M, ~15 ms at 10M on this class of machine) and 16 B per
    fingerprint, plus an id -> slot dict built on the first ``add``/``remove``/``in``. Kept simple
    on purpose: it is what ``FingerprintIndex`` is tested against. Same locking rules as
    ``FingerprintIndex``, except that ``in`` may build the dict, so treat it as a mutation.
    """

    def __init__(self) -> None:
        self.build([], [])

    def build(self, ids: Iterable[int], hashes: Iterable[int]) -> None:
        self._ids, self._hashes = unique_by_id(ids, hashes)
        self._n = len(self._ids)
        self._slots: dict[int, int] | None = None

    def _slot_of(self) -> dict[int, int]:
        if self._slots is None:
            self._slots = {i: k for k, i in enumerate(self._ids[: self._n].tolist())}
        return self._slots

    def add(self, id: int, hash: int) -> None:
        id, hash = check_id(id), check_hash(hash)
        slots = self._slot_of()
        k = slots.get(id)
        if k is None:
            if self._n == len(self._ids):
                size = max(16, 2 * self._n)
                self._ids = np.resize(self._ids, size)
                self._hashes = np.resize(self._hashes, size)
            k = slots[id] = self._n
            self._ids[k] = id
            self._n += 1
        self._hashes[k] = hash

    def remove(self, id: int) -> None:
        i = as_id(id)
        k = None if i is None else self._slot_of().pop(i, None)
        if k is None:
            return
        last = self._n - 1
        if k != last:  # keep the live entries contiguous: move the last one into the hole
            moved = int(self._ids[last])
            self._ids[k], self._hashes[k] = moved, self._hashes[last]
            self._slot_of()[moved] = k
        self._n = last

    def query(self, hash: int, max_distance: int) -> list[tuple[int, int]]:
        return list(zip(*(a.tolist() for a in self.query_arrays(hash, max_distance))))

    def query_arrays(
        self, hash: int, max_distance: int, *, ordered: bool = True
    ) -> IdsAndDistances:
        """``query`` as two numpy arrays (ids, distances), for callers that filter further;
        ``ordered=False``: in no particular order."""
        q, r = check_hash(hash), check_distance(max_distance)
        pos, d = scan(self._hashes[: self._n], np.uint64(q), r)
        ids = self._ids[pos]
        return sorted_by_distance(ids, d) if ordered else (ids, d)

    def nbytes(self) -> int:
        return self._ids.nbytes + self._hashes.nbytes

    def __len__(self) -> int:
        return self._n

    def __contains__(self, id: object) -> bool:
        i = as_id(id)
        return i is not None and i in self._slot_of()
