"""An exact, sub-linear index of 256-bit hashes (PDQ) by Hamming distance: multi-index hashing.

Pure numpy, no ORM. Each hash is cut into ``CHUNKS`` chunks of 16 bits, and each chunk position
has a table from the chunk's value (direct addressing: 65,536 buckets) to the entries holding it.
If two hashes are within ``r`` bits, the differing bits fall into 16 chunks, so at least one
chunk differs by at most ``r // 16`` bits (pigeonhole): for PDQ's usual ``r = 31`` at most 1.
A query therefore reads, in each of the 16 tables, the buckets of its own chunk value and of
every value within ``r // 16`` bits of it (17 buckets each at ``r <= 31``), and then computes the
full distance of those candidates only. Nothing within ``r`` is missed, and nothing farther is
returned: the answer equals a full scan's (tested against ``LinearPdqIndex`` on random sets).

The cost per query is the candidates: about ``272 * n / 65536`` for uniformly spread hashes
(some 4,000 at a million entries), more where real hashes crowd. Above ``MAX_PROBE_BITS`` per
chunk (``r > 63``) the probe sets grow past a scan's cost, and the index scans.

Entries added or removed after ``build`` go to a small delta (scanned) and a removed mask;
``compact`` (or the next ``build``) folds them in. Keys are int64 (list entry ids).

Shared snapshots (``signal_set``, ``host_snapshot``): ``state()`` is the arrays a built index is
made of, and ``from_state`` wraps them (read-only maps of the host's snapshot, not copied) in a
frozen index. A frozen index never writes into them and never compacts: its removed mask is
its own (1 B per entry) and its additions stay in the delta, until the process maps a newer
snapshot (or ``thaw`` folds everything into private memory, the last resort).
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

BITS = 256
BYTES = BITS // 8
CHUNK_BITS = 16
CHUNKS = BITS // CHUNK_BITS
BUCKETS = 1 << CHUNK_BITS
# Probing every chunk value within this many bits costs 1 + 16 + 120 + 560 buckets per table at
# 3; at r >= 64 a scan is cheaper.
MAX_PROBE_BITS = 3
# The delta is folded into the tables when it holds this many entries.
COMPACT_AT = 20_000


def parse_hex(text: str) -> np.ndarray:
    """A 64-hex-digit hash as 32 bytes (uint8); ``ValueError`` when it is not one."""
    if len(text) != BYTES * 2:
        raise ValueError(f"a 256-bit hash is {BYTES * 2} hex digits, got {len(text)}")
    return np.frombuffer(bytes.fromhex(text), dtype=np.uint8)


def parse_hex_many(texts: list[str]) -> np.ndarray:
    """Hashes as an (n, 32) uint8 array, in one conversion (for loading a million rows)."""
    if not texts:
        return np.zeros((0, BYTES), dtype=np.uint8)
    return np.frombuffer(bytes.fromhex("".join(texts)), dtype=np.uint8).reshape(-1, BYTES)


def distances(hashes: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Hamming distance of ``query`` (32 uint8) to each row of ``hashes`` ((n, 32) uint8)."""
    words = np.ascontiguousarray(hashes).view(np.uint64)
    q = np.ascontiguousarray(query).view(np.uint64)
    return np.bitwise_count(words ^ q).sum(axis=1, dtype=np.int64)


def _flips(bits: int) -> np.ndarray:
    """Every 16-bit mask with at most ``bits`` ones (the probe offsets for one chunk)."""
    masks = [0]
    for k in range(1, bits + 1):
        masks.extend(sum(1 << i for i in chosen) for chosen in combinations(range(CHUNK_BITS), k))
    return np.array(masks, dtype=np.int64)


_FLIPS = [_flips(b) for b in range(MAX_PROBE_BITS + 1)]


class LinearPdqIndex:
    """The trivial index: every query scans every entry. The reference the tests and the
    benchmark compare ``PdqIndex`` with, and ``PdqIndex``'s delta (entries added since its
    build: appended to lists, made into arrays at the next query)."""

    def __init__(self) -> None:
        self._keys = np.zeros(0, dtype=np.int64)
        self._hashes = np.zeros((0, BYTES), dtype=np.uint8)
        self._alive = np.zeros(0, dtype=bool)
        self._where: dict[int, int] = {}
        self._new_keys: list[int] = []
        self._new_hashes: list[np.ndarray] = []

    def build(self, keys: np.ndarray, hashes: np.ndarray) -> None:
        self._keys = np.asarray(keys, dtype=np.int64).copy()
        self._hashes = np.ascontiguousarray(hashes, dtype=np.uint8).reshape(-1, BYTES).copy()
        self._alive = np.ones(len(self._keys), dtype=bool)
        self._where = {int(k): i for i, k in enumerate(self._keys.tolist())}
        self._new_keys, self._new_hashes = [], []

    def add(self, key: int, hash_bytes: np.ndarray) -> None:
        self.remove(key)
        self._where[int(key)] = len(self._keys) + len(self._new_keys)
        self._new_keys.append(int(key))
        self._new_hashes.append(np.asarray(hash_bytes, dtype=np.uint8).reshape(BYTES))

    def add_many(self, keys: np.ndarray, hashes: np.ndarray) -> None:
        """``add`` of each, in a few array operations."""
        keys = np.asarray(keys, dtype=np.int64)
        hashes = np.ascontiguousarray(hashes, dtype=np.uint8).reshape(-1, BYTES)
        listed = keys.tolist()
        if len(set(listed)) != len(listed) or len(listed) != len(hashes):
            raise ValueError("one hash per key, keys unique")
        self._settle()
        where = self._where
        old = [where[k] for k in listed if k in where]
        if old:
            self._alive[old] = False
        start = len(self._keys)
        self._keys = np.concatenate([self._keys, keys])
        self._hashes = np.vstack([self._hashes, hashes])
        self._alive = np.concatenate([self._alive, np.ones(len(keys), bool)])
        where.update(zip(listed, range(start, start + len(listed))))

    def _settle(self) -> None:
        if self._new_keys:
            self._keys = np.concatenate([self._keys, np.array(self._new_keys, dtype=np.int64)])
            self._hashes = np.vstack([self._hashes, np.stack(self._new_hashes)])
            self._alive = np.concatenate([self._alive, np.ones(len(self._new_keys), bool)])
            self._new_keys, self._new_hashes = [], []

    def remove(self, key: int) -> None:
        i = self._where.pop(int(key), None)
        if i is not None:
            self._settle()
            self._alive[i] = False

    def __len__(self) -> int:
        return len(self._where)

    def entries(self) -> tuple[np.ndarray, np.ndarray]:
        self._settle()
        return self._keys[self._alive], self._hashes[self._alive]

    def query(self, query: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
        """(keys, distances) of every entry within ``radius`` (<=) bits, nearest first."""
        self._settle()
        d = distances(self._hashes, query)
        hit = (d <= radius) & self._alive
        keys, dist = self._keys[hit], d[hit]
        order = np.lexsort((keys, dist))
        return keys[order], dist[order]


class PdqIndex:
    """Multi-index hashing over 16 chunks of 16 bits; exact (see the module docstring)."""

    def __init__(self) -> None:
        self._keys = np.zeros(0, dtype=np.int64)
        self._hashes = np.zeros((0, BYTES), dtype=np.uint8)
        self._alive = np.zeros(0, dtype=bool)
        self._count = 0
        # Rows by key (sorted keys and their rows): no per-entry Python objects.
        self._key_order = np.zeros(0, dtype=np.int64)
        self._sorted_keys = np.zeros(0, dtype=np.int64)
        # Per chunk position: entry rows sorted by the chunk's value, and where each value's
        # rows start (BUCKETS + 1 offsets).
        self._order = np.zeros((CHUNKS, 0), dtype=np.int32)
        self._starts = np.zeros((CHUNKS, BUCKETS + 1), dtype=np.int64)
        self._delta = LinearPdqIndex()
        self.frozen = False

    # The arrays of ``state()``; the removed mask and the delta are each process's own.
    STATE = ("keys", "hashes", "key_order", "sorted_keys", "order", "starts")

    def state(self) -> dict[str, np.ndarray]:
        """The arrays the index is made of, by name, for a snapshot; only of an index with no
        pending changes (``build`` one from ``entries()`` first)."""
        if self.pending():
            raise ValueError("an index with pending changes has no state")
        return {name: getattr(self, f"_{name}") for name in self.STATE}

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray]) -> PdqIndex:
        """A frozen index around ``state()`` arrays (not copied): what a snapshot maps.
        ValueError when they do not fit together."""
        index = cls()
        for name in cls.STATE:
            setattr(index, f"_{name}", arrays[name])
        n = len(index._keys)
        if (
            index._hashes.shape != (n, BYTES)
            or len(index._key_order) != n
            or len(index._sorted_keys) != n
            or index._order.shape != (CHUNKS, n)
            or index._starts.shape != (CHUNKS, BUCKETS + 1)
            or (n and int(index._starts[0, -1]) != n)
        ):
            raise ValueError("the PDQ index arrays do not fit together")
        index._alive = np.ones(n, dtype=bool)
        index._count = n
        index.frozen = True
        return index

    def thaw(self) -> None:
        """Fold the changes into private tables from now on (the fallback when no newer
        snapshot can be mapped): the mapped arrays are no longer used."""
        self.frozen = False
        self.compact()

    def build(self, keys: np.ndarray, hashes: np.ndarray) -> None:
        """Index exactly these entries (replacing whatever was there). Keys must be unique."""
        keys = np.asarray(keys, dtype=np.int64)
        hashes = np.ascontiguousarray(hashes, dtype=np.uint8).reshape(-1, BYTES)
        if len(keys) != len(hashes):
            raise ValueError("one key per hash")
        self._keys, self._hashes = keys.copy(), hashes.copy()
        self._alive = np.ones(len(keys), dtype=bool)
        self._key_order = np.argsort(keys, kind="stable")
        self._sorted_keys = keys[self._key_order]
        if len(keys) and (np.diff(self._sorted_keys) == 0).any():
            raise ValueError("keys must be unique")
        self._count = len(keys)
        # (16, n) chunk values, native 16-bit: numpy sorts them by radix, 7x faster than int64.
        chunks = np.ascontiguousarray(self._hashes.view(">u2").astype(np.uint16).T)
        order = np.empty((CHUNKS, len(keys)), dtype=np.int32)
        starts = np.empty((CHUNKS, BUCKETS + 1), dtype=np.int64)
        for c in range(CHUNKS):
            order[c] = np.argsort(chunks[c], kind="stable")
            counts = np.bincount(chunks[c], minlength=BUCKETS)
            starts[c, 0] = 0
            np.cumsum(counts, out=starts[c, 1:])
        self._order, self._starts = order, starts
        self._delta = LinearPdqIndex()
        self.frozen = False

    def add(self, key: int, hash_bytes: np.ndarray) -> None:
        """Add (or replace) one entry; it goes to the delta until ``compact`` (never by
        itself when frozen)."""
        self.remove(key)
        self._delta.add(key, hash_bytes)
        if len(self._delta) >= COMPACT_AT and not self.frozen:
            self.compact()

    def add_many(self, keys: np.ndarray, hashes: np.ndarray) -> None:
        """Add (or replace) many entries at once into the delta (a large import applied to a
        frozen index: no Python work per entry beyond the delta's own key table)."""
        keys = np.asarray(keys, dtype=np.int64)
        if not len(keys):
            return
        at = np.searchsorted(self._sorted_keys, keys)
        inside = at < len(self._sorted_keys)
        found = np.zeros(len(keys), dtype=bool)
        found[inside] = self._sorted_keys[at[inside]] == keys[inside]
        rows = self._key_order[at[found]]
        self._count -= int(self._alive[rows].sum())
        self._alive[rows] = False
        self._delta.add_many(keys, hashes)

    def remove(self, key: int) -> None:
        at = int(np.searchsorted(self._sorted_keys, key))
        if at < len(self._sorted_keys) and self._sorted_keys[at] == key:
            row = self._key_order[at]
            if self._alive[row]:
                self._alive[row] = False
                self._count -= 1
        self._delta.remove(key)

    def compact(self) -> None:
        """Rebuild the tables with the delta folded in and removed entries dropped."""
        keys, hashes = self.entries()
        self.build(keys, hashes)

    def entries(self) -> tuple[np.ndarray, np.ndarray]:
        """(keys, hashes) of every entry now in the index."""
        d_keys, d_hashes = self._delta.entries()
        return (
            np.concatenate([self._keys[self._alive], d_keys]),
            np.vstack([self._hashes[self._alive], d_hashes]),
        )

    def __len__(self) -> int:
        return self._count + len(self._delta)

    def pending(self) -> int:
        """Entries changed since the tables were built or mapped (delta and removed)."""
        return len(self._delta) + len(self._keys) - self._count

    def nbytes(self) -> int:
        return sum(
            a.nbytes
            for a in (
                self._hashes,
                self._keys,
                self._alive,
                self._key_order,
                self._sorted_keys,
                self._order,
                self._starts,
            )
        )

    def candidates(self, query: np.ndarray, radius: int) -> np.ndarray:
        """Rows of the tables that share a chunk within ``radius // 16`` bits with ``query``."""
        flips = _FLIPS[radius // CHUNKS]
        q = np.ascontiguousarray(query, dtype=np.uint8).view(">u2").astype(np.int64)
        values = q[:, None] ^ flips[None, :]  # (16, probes)
        rows = np.arange(CHUNKS)[:, None]
        lo = self._starts[rows, values].ravel()
        hi = self._starts[rows, values + 1].ravel()
        table = np.repeat(np.arange(CHUNKS), len(flips))
        keep = hi > lo
        lo, hi, table = lo[keep], hi[keep], table[keep]
        if not len(lo):
            return np.zeros(0, dtype=np.int64)
        # Gather every bucket's rows at once: positions lo..hi-1 of table `table`.
        lengths = hi - lo
        flat_start = table * self._order.shape[1] + lo
        offsets = np.repeat(flat_start - np.cumsum(lengths) + lengths, lengths)
        positions = offsets + np.arange(int(lengths.sum()))
        return np.unique(self._order.ravel()[positions])

    def query(self, query: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
        """(keys, distances) of every entry within ``radius`` (<=) bits, nearest first:
        exactly what a full scan returns."""
        if radius < 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        if radius // CHUNKS > MAX_PROBE_BITS:
            rows = np.flatnonzero(self._alive)
        else:
            rows = self.candidates(query, radius)
            rows = rows[self._alive[rows]]
        d = distances(self._hashes[rows], query)
        hit = d <= radius
        delta_keys, delta_dist = self._delta.query(query, radius)
        keys = np.concatenate([self._keys[rows][hit], delta_keys])
        dist = np.concatenate([d[hit], delta_dist])
        order = np.lexsort((keys, dist))
        return keys[order], dist[order]
