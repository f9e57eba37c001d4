"""In-memory index of banned 64-bit perceptual hashes (dHash), searched by Hamming distance.

The database is the source of truth; this is the structure each process keeps in memory so an
upload can be checked against millions of banned fingerprints in well under a millisecond.
Pure numpy, no Django. ``FingerprintIndex`` has the interface of ``linear_index.LinearIndex``
(``build`` / ``add`` / ``remove`` / ``query`` / ``len`` / ``in``), the obviously correct full
scan it is tested against, and every answer equals that scan's.

It is multi-index hashing (Norouzi, Punjani & Fleet, CVPR 2012), made adaptive for clustered,
skewed real-world hash sets: the 64 bits are split into chunks (``hash_layout``: chosen on a
sample so that correlated dHash bits do not share one), stored hashes are bucketed by each
chunk's value, and a query probes the buckets within a few flips per chunk, choosing the depths
per query so that a popular chunk value is probed shallowly (exact as long as the depths sum
past the radius), or scans when a small cost model says scanning is cheaper. Updates go to a
small delta buffer and tombstones, merged into new tables every N/128 changes.

Shared snapshots (``banned_snapshot``): ``from_state`` wraps ``state()`` arrays (read-only maps
shared by a host's processes) in a *frozen* index: tombstones are a private set, additions a
private delta, and it never merges (that would copy the main part into private memory); its
owner re-maps a newer snapshot once ``pending()`` grows, or ``thaw()``s it as a last resort.
Why it is exact, how chunks and depths are chosen, memory layout and cost per entry:
``docs/fingerprint-index.md``.

Thread safety: not synchronised. The caller holds a lock around every mutation (``build``,
``add``, ``remove``) and every query; ``query``, ``len`` and ``in`` never modify the index, so
a readers-writer lock is also correct. A merge runs inside the ``add``/``remove`` that triggers
it (about half a second per million entries, under the caller's lock).
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterable
from functools import cache
from typing import Final, NamedTuple

import numpy as np

from moderation.hash_layout import Layout, choose_chunks, chunk_widths
from moderation.linear_index import (
    HASH_BITS,
    IdsAndDistances,
    as_id,
    check_distance,
    check_hash,
    check_id,
    scan,
    sorted_by_distance,
    unique_by_id,
)

# Deepest probe inside one chunk: a 16-bit chunk has 6 885 values within 5 flips. Queries that
# would need more (r > 18 with 4 chunks) match a sizeable fraction of any set; they scan.
_MAX_DEPTH: Final = 5
# Depth vectors evaluated per query at most (more chunks: fewer depth choices per chunk).
_MAX_VECTORS: Final = 4096
_SAMPLE_SIZE: Final = 16_384
# Cost model, in units of "one hash of the full scan" (~0.7 ns here, 1.6 ns at 10M when the scan
# is memory-bound). Measured on the 2-core benchmark machine: a multi-index query costs about as
# much as scanning 90k hashes before it reads anything, then ~8 per probed bucket (offset reads)
# and ~8 per verified candidate (gathered, not streamed).
_FIXED_COST: Final = 90_000
_PROBE_COST: Final = 8
_CANDIDATE_COST: Final = 8


class _Probes(NamedTuple):
    """Every chunk-local XOR mask up to some depth, chunk by chunk, by popcount within a chunk."""

    masks: np.ndarray  # int64 chunk-local masks
    chunk: np.ndarray  # chunk of each mask
    depth: np.ndarray  # popcount of each mask
    base: np.ndarray  # where that chunk's table starts in the concatenated offsets
    segments: np.ndarray  # first mask of every (chunk, depth) run, for np.add.reduceat


@cache
def _probes(widths: tuple[int, ...], max_depth: int) -> _Probes:
    masks, chunk, depth, base, segments = [], [], [], [], []
    table_start = 0
    for k, width in enumerate(widths):
        for d in range(max_depth + 1):
            segments.append(len(masks))
            for flips in itertools.combinations(range(width), d):
                masks.append(sum(1 << b for b in flips))
                chunk.append(k)
                depth.append(d)
                base.append(table_start)
        table_start += (1 << width) + 1
    return _Probes(*(np.array(a, dtype=np.int64) for a in (masks, chunk, depth, base, segments)))


@cache
def _depth_vectors(m: int, share: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Probe depths t_k = rho_k + 1 (0: skip the chunk) worth considering.

    ``share`` is floor((r + 1) / m), the even split of the r + 1 the depths must add up to;
    every chunk may go up to two levels deeper than that so that others can be skipped
    (with many chunks, fewer choices per chunk keep the number of vectors small).
    Returns the depths allowed per chunk, all vectors of them (``itertools.product`` order,
    i.e. the C order of an m-dimensional outer sum), and each vector's sum.
    """
    for choice in (range(share + 3), (0, share, share + 1, share + 2), (0, share + 1)):
        options = sorted(set(choice))
        if len(options) ** m <= _MAX_VECTORS:
            break
    vectors = np.array(list(itertools.product(options, repeat=m)), dtype=np.intp)
    return np.array(options, dtype=np.intp), vectors, vectors.sum(axis=1)


class _Main:
    """The bulk of the index: entries in permuted-hash order, chunk tables, tombstones.
    Never written after it is built (it may be a read-only shared mapping): tombstones are the
    private set ``dead_positions``.

    ``table`` holds, one after the other: the permuted hashes of all N entries, sorted (so
    also grouped by chunk 0, which occupies the top bits), then for every other chunk k the
    D distinct permuted hashes ordered by chunk k's value. ``offsets`` maps (chunk, value) to
    the slice of ``table`` holding that bucket. ``ids`` is aligned with the first N entries;
    ``by_id`` lists those positions in id order, for O(log N) lookups by id.
    Verifying a bucket reads contiguous memory, and a match found through chunk k >= 1 (a
    distinct hash) is mapped back to its entries by binary search in the first N entries.
    Without a layout (small sets) ``table`` is just the hashes, in id order, and queries scan.
    """

    def __init__(self, ids: np.ndarray, hashes: np.ndarray, layout: Layout | None) -> None:
        n = len(ids)
        self.n, self.layout = n, layout
        self.dead_positions: set[int] = set()
        self._dead_sorted: np.ndarray | None = None
        if layout is None:
            self.table, self.ids, self.by_id = hashes, ids, None
            return
        permuted = layout.permute(hashes)
        order = np.argsort(permuted)
        self.ids = ids[order]
        self.by_id = np.empty(n, dtype=np.int32 if n < 1 << 31 else np.int64)
        self.by_id[order] = np.arange(n)
        first = permuted[order]
        distinct = first[np.concatenate(([True], first[1:] != first[:-1]))]
        m, d = len(layout.widths), len(distinct)
        self.segment_starts = np.array([0, *(n + k * d for k in range(m - 1))])
        self.table = np.empty(n + (m - 1) * d, dtype=np.uint64)
        self.table[:n] = first
        offsets = []
        for k, (width, shift) in enumerate(zip(layout.widths, layout.shifts)):
            part = first if k == 0 else distinct
            keys = ((part >> np.uint64(shift)) & np.uint64((1 << width) - 1)).astype(np.uint16)
            start = self.segment_starts[k]
            if k > 0:  # group by chunk k's value (a stable 16-bit argsort is a radix sort)
                self.table[start : start + d] = part[np.argsort(keys, kind="stable")]
            counts = np.bincount(keys, minlength=1 << width)
            offsets.append(start + np.concatenate(([0], np.cumsum(counts))))
        index_type = np.int32 if len(self.table) < 1 << 31 else np.int64
        self.offsets = np.concatenate(offsets).astype(index_type)

    def state(self) -> dict[str, np.ndarray]:
        """The arrays that make this main part (``from_state`` takes them back)."""
        if self.dead_positions:
            raise ValueError("a main part with tombstones has no state: merge it first")
        if self.layout is None:
            return {"table": self.table, "ids": self.ids}
        names = ("table", "ids", "by_id", "offsets", "segment_starts")
        return {name: getattr(self, name) for name in names} | {
            "chunks": np.array([b for c in self.layout.chunks for b in c], dtype=np.int64),
            "widths": np.array(self.layout.widths, dtype=np.int64),
        }

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray]) -> _Main:
        """A main part around ``arrays`` (not copied; read-only maps are fine). Checks that they
        fit together, so a damaged snapshot is refused (ValueError) rather than misread."""
        main = cls.__new__(cls)
        main.table, main.ids, main.n = arrays["table"], arrays["ids"], len(arrays["ids"])
        main.dead_positions, main._dead_sorted, main.layout, main.by_id = set(), None, None, None
        if "chunks" not in arrays:
            if len(main.table) != main.n:
                raise ValueError("table and ids differ in length")
            return main
        widths, bits = arrays["widths"].tolist(), arrays["chunks"].tolist()
        if sum(widths) != HASH_BITS or sorted(bits) != list(range(HASH_BITS)):
            raise ValueError("the chunks are not a partition of the 64 bits")
        starts = np.cumsum([0, *widths]).tolist()
        main.layout = Layout([bits[a:b] for a, b in zip(starts[:-1], starts[1:])])
        main.by_id, main.offsets, main.segment_starts = (
            arrays[name] for name in ("by_id", "offsets", "segment_starts")
        )
        n, m = main.n, len(widths)
        d = (len(main.table) - n) // max(m - 1, 1)
        ok = (
            len(main.by_id) == n
            and n + (m - 1) * d == len(main.table)
            and np.array_equal(main.segment_starts, [0, *(n + k * d for k in range(m - 1))])
            and len(main.offsets) == sum((1 << w) + 1 for w in widths)
        )
        at = 0
        for k, width in enumerate(widths if ok else ()):  # each chunk's buckets tile its segment
            part = main.offsets[at : at + (1 << width) + 1].astype(np.int64)
            at += (1 << width) + 1
            first = int(main.segment_starts[k])
            ok = ok and part[0] == first and part[-1] == first + (d if k else n)
            ok = ok and bool(np.all(np.diff(part) >= 0))
        if not ok:
            raise ValueError("the index arrays do not fit together")
        return main

    @property
    def hashes(self) -> np.ndarray:
        """The stored hashes (permuted, when there is a layout), aligned with ``ids``."""
        return self.table[: self.n]

    def position(self, id: int) -> int:
        """Index of a live entry with this id, or -1. Binary search by hand through ``by_id``:
        ``np.searchsorted(sorter=by_id)`` copies the int32 ``by_id`` to intp first (O(N))."""
        ids, order, lo, hi = self.ids, self.by_id, 0, self.n
        if order is None:
            lo = int(np.searchsorted(ids, id))
        while lo < hi and order is not None:
            mid = (lo + hi) // 2
            lo, hi = (mid + 1, hi) if ids[order[mid]] < id else (lo, mid)
        p = -1 if lo == self.n else int(lo if order is None else order[lo])
        return p if p >= 0 and self.ids[p] == id and p not in self.dead_positions else -1

    def holds(self, position: int, hash: int) -> bool:
        """Whether the entry at this position has this (original, unpermuted) hash."""
        stored = int(self.hashes[position])
        return stored == (self.layout.permute_one(hash) if self.layout else hash)

    @property
    def dead(self) -> int:
        return len(self.dead_positions)

    def kill(self, position: int) -> None:
        self.dead_positions.add(position)
        self._dead_sorted = None

    def _live(self, positions: np.ndarray) -> np.ndarray:
        """Which of ``positions`` are not tombstoned (the set is small: it triggers a merge)."""
        if self._dead_sorted is None:
            self._dead_sorted = np.fromiter(self.dead_positions, np.int64, self.dead)
            self._dead_sorted.sort()
        return ~np.isin(positions, self._dead_sorted, assume_unique=False)

    def live_by_id(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, original hashes) of the live entries, sorted by id."""
        order = self.by_id if self.by_id is not None else slice(None)
        alive = np.ones(self.n, dtype=bool)
        alive[np.fromiter(self.dead_positions, np.int64, self.dead)] = False
        ids, hashes, alive = self.ids[order], self.hashes[order], alive[order]
        if self.layout is not None:
            hashes = self.layout.unpermute(hashes)
        return ids[alive], hashes[alive]

    def search(self, q: int, r: int, fallback: bool) -> tuple[np.ndarray, np.ndarray]:
        """Positions of live entries within r of q, and their distances (unordered).
        ``fallback``: scan when that is expected to be cheaper than the chunk tables."""
        found = None
        if self.layout is not None:
            q = self.layout.permute_one(q)
            found = self._search_chunks(q, r, self.n if fallback else np.inf)
        pos, d = found if found is not None else scan(self.hashes, np.uint64(q), r)
        if self.dead:
            live = self._live(pos)
            pos, d = pos[live], d[live]
        return pos, d

    def _search_chunks(
        self, q: int, r: int, scan_cost: float
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Multi-index search for permuted q; None when that would cost more than ``scan_cost``
        (see the cost model constants), or the distance is too large to probe."""
        assert self.layout is not None
        widths, shifts = self.layout.widths, self.layout.shifts
        m, need = len(widths), r + 1
        share = need // m
        if share + 1 > min(_MAX_DEPTH, *widths):
            return None
        probes = _probes(widths, share + 1)
        cost_so_far = _FIXED_COST + _PROBE_COST * len(probes.masks)
        if cost_so_far >= scan_cost:
            return None

        # Bucket sizes of every probe, then candidates needed by each (chunk, depth).
        values = np.array([(q >> s) & ((1 << w) - 1) for s, w in zip(shifts, widths)])
        bucket = (values[probes.chunk] ^ probes.masks) + probes.base
        starts = self.offsets[bucket]
        sizes = self.offsets[bucket + 1] - starts
        per_level = np.add.reduceat(sizes, probes.segments).reshape(m, share + 2)
        cost = np.zeros((m, share + 3), dtype=np.int64)
        np.cumsum(per_level, axis=1, out=cost[:, 1:])  # cost[k, t]: chunk k probed to depth t-1

        # Cheapest depth vector whose depths add up to r + 1 (exactness, see module docstring).
        options, vectors, sums = _depth_vectors(m, share)
        cost = cost[:, options]
        totals = cost[0]
        for row in cost[1:]:  # outer sum: totals of all vectors, in the order of ``vectors``
            totals = (totals[:, None] + row).ravel()
        totals[sums < need] = np.iinfo(np.int64).max
        best = int(np.argmin(totals))
        if cost_so_far + _CANDIDATE_COST * totals[best] >= scan_cost:
            return None
        depth = vectors[best]

        # Verify every candidate: contiguous reads of the probed buckets.
        take = (probes.depth < depth[probes.chunk]) & (sizes > 0)
        starts, sizes = starts[take], sizes[take]
        if not len(sizes):
            return np.empty(0, dtype=np.intp), np.empty(0, dtype=np.uint8)
        ends = np.cumsum(sizes)
        where = np.repeat(starts - ends + sizes, sizes) + np.arange(ends[-1])
        xor = self.table[where] ^ np.uint64(q)
        d = np.bitwise_count(xor)
        hit = np.flatnonzero(d <= r)
        where, xor, d = where[hit], xor[hit], d[hit]

        # A hash is found through every probed chunk where it lies within that chunk's depth;
        # keep it only from the first such chunk, so it is reported once.
        source = np.searchsorted(self.segment_starts, where, side="right") - 1
        probed = np.flatnonzero(depth)
        if len(probed) > 1:
            within = [
                np.bitwise_count((xor >> np.uint64(shifts[k])) & np.uint64((1 << widths[k]) - 1))
                < depth[k]
                for k in probed
            ]
            first = probed[np.argmax(within, axis=0)]
            keep = first == source
            where, d, source = where[keep], d[keep], source[keep]

        # Chunk 0 buckets are the entries themselves; other chunks hold distinct hashes, each
        # standing for the run of entries with that hash.
        own = source == 0
        if own.all():
            return where, d
        distinct, dd = self.table[where[~own]], d[~own]
        lo = np.searchsorted(self.hashes, distinct, side="left")
        run = np.searchsorted(self.hashes, distinct, side="right") - lo
        ends = np.cumsum(run)
        pos = np.repeat(lo - ends + run, run) + np.arange(ends[-1])
        return np.concatenate((where[own], pos)), np.concatenate((d[own], np.repeat(dd, run)))

    def nbytes(self) -> int:
        arrays = [self.table, self.ids]
        if self.layout is not None:
            arrays += [self.by_id, self.offsets, self.segment_starts]
        return sum(a.nbytes for a in arrays) + 70 * self.dead


class FingerprintIndex:
    """Exact Hamming-distance index over 64-bit hashes: multi-index hashing + delta buffer.

    Design, exactness argument, memory figures and locking rules: see the module docstring.
    Keyword arguments are tuning knobs, mainly for tests and benchmarks:

    - ``chunk_bits``: bits per chunk (8..16); 16 gives 4 chunks, the best trade-off from
      100k to 10M+ entries (bigger chunks need offsets tables bigger than the data, and many
      more probes per query).
    - ``index_min``: below this many entries no chunk tables are built; queries scan.
    - ``scan_fallback``: scan when the cost model says it is cheaper than the best probe plan;
      False: only when the distance is too large to probe (tests use it to exercise the tables).
    - ``delta_limit``: merge the delta buffer and tombstones into new tables at this size
      (default N/128 clamped to 1 024..65 536).
    """

    def __init__(
        self,
        *,
        chunk_bits: int = 16,
        index_min: int = 131_072,
        scan_fallback: bool = True,
        delta_limit: int | None = None,
    ) -> None:
        if not 8 <= chunk_bits <= 16:
            raise ValueError("chunk_bits must be between 8 and 16")
        if delta_limit is not None and delta_limit < 1:
            raise ValueError("delta_limit must be positive")
        self._chunk_bits = chunk_bits
        self._index_min = max(index_min, 1)
        self._scan_fallback = scan_fallback
        self._delta_limit = delta_limit
        self._layout: Layout | None = None
        self._layout_n = 0
        self.frozen = False
        self.build([], [])

    def build(self, ids: Iterable[int], hashes: Iterable[int]) -> None:
        """Replace the contents; for a repeated id the last hash wins."""
        self._layout = None
        self.frozen = False
        self._install(*unique_by_id(ids, hashes))

    def state(self) -> dict[str, np.ndarray]:
        """The main part's arrays, for a snapshot; only of an index with no pending changes
        (a freshly built one)."""
        if self._delta_n:
            raise ValueError("an index with pending changes has no state: merge it first")
        return self._main.state()

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], **options) -> FingerprintIndex:
        """A frozen index (see the module docstring) around ``state()`` arrays, not copied."""
        index = cls(**options)
        index._main = _Main.from_state(arrays)
        index._layout, index._layout_n = index._main.layout, index._main.n
        index._new_delta(1024)
        index.frozen = True
        return index

    def pending(self) -> int:  # changes held beside the main part: delta entries, tombstones
        return self._delta_n + self._main.dead

    def thaw(self) -> None:  # a frozen index merges again (into private memory)
        self.frozen = False
        self._merge_if_full()

    def live_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, hashes) of every entry, sorted by id: what a merge or a snapshot starts from."""
        (ids, hashes), n = self._main.live_by_id(), self._delta_n
        ids = np.concatenate((ids, self._delta_ids[:n]))
        hashes = np.concatenate((hashes, self._delta_hashes[:n]))
        order = np.argsort(ids, kind="stable")  # two sorted runs: cheap for timsort
        return ids[order], hashes[order]

    def _install(self, ids: np.ndarray, hashes: np.ndarray) -> None:
        """Rebuild the main part from id-sorted arrays. The bit layout is chosen again when the
        set has doubled (or halved) since it was last chosen."""
        n = len(ids)
        if n < self._index_min:
            self._layout = None
        elif self._layout is None or not self._layout_n // 2 <= n <= 2 * self._layout_n:
            sample = hashes[:: max(1, n // _SAMPLE_SIZE)][:_SAMPLE_SIZE]
            self._layout = Layout(choose_chunks(sample, chunk_widths(self._chunk_bits)))
            self._layout_n = n
        self._main = _Main(ids, hashes, self._layout)
        self._new_delta(self._delta_limit or min(max(n // 128, 1024), 65_536))

    def _new_delta(self, limit: int) -> None:
        self._delta_ids, self._delta_hashes = np.empty(limit, np.int64), np.empty(limit, np.uint64)
        self._delta_n, self._delta_slot = 0, {}

    def add(self, id: int, hash: int) -> None:
        """Insert, or replace the hash of an id already present."""
        id, hash = check_id(id), check_hash(hash)
        slot = self._delta_slot.get(id)
        if slot is not None:
            self._delta_hashes[slot] = hash
            return
        p = self._main.position(id)
        if p >= 0:
            if self._main.holds(p, hash):  # unchanged: keep it where it is
                return
            self._main.kill(p)
        slot = self._delta_slot[id] = self._delta_n
        self._delta_ids[slot], self._delta_hashes[slot] = id, hash
        self._delta_n += 1
        self._merge_if_full()

    def remove(self, id: int) -> None:
        """Remove an id; no-op if absent."""
        i = as_id(id)
        if i is None:
            return
        slot = self._delta_slot.pop(i, None)
        if slot is not None:
            last = self._delta_n - 1
            if slot != last:  # keep the delta contiguous: move the last entry into the hole
                moved = int(self._delta_ids[last])
                self._delta_ids[slot] = moved
                self._delta_hashes[slot] = self._delta_hashes[last]
                self._delta_slot[moved] = slot
            self._delta_n = last
            return
        p = self._main.position(i)
        if p >= 0:
            self._main.kill(p)
            self._merge_if_full()

    def _merge_if_full(self) -> None:
        if self.frozen:  # never merge a shared main part: only make room in the private delta
            if self._delta_n == len(self._delta_ids):  # (np.resize repeats; only [:n] counts)
                self._delta_ids = np.resize(self._delta_ids, 2 * self._delta_n)
                self._delta_hashes = np.resize(self._delta_hashes, 2 * self._delta_n)
            return
        if self._delta_n + self._main.dead < len(self._delta_ids):
            return
        self._install(*self.live_arrays())

    def query(self, hash: int, max_distance: int) -> list[tuple[int, int]]:
        """Every (id, distance) within max_distance, nearest first, ties by id: a full scan's."""
        return list(zip(*(a.tolist() for a in self.query_arrays(hash, max_distance))))

    def query_arrays(self, hash: int, max_distance: int, *, ordered=True) -> IdsAndDistances:
        """``query`` as two arrays (ids, distances), for a caller that filters thousands further
        (the banned set's pHash check). ``ordered=False``: unsorted, for one that sorts only what
        it keeps (near a dense cluster at 10M a query finds ~20,000; sorting all cost ~1 ms)."""
        ids, d, _ = self.query_positions(hash, max_distance)
        return sorted_by_distance(ids, d) if ordered else (ids, d)

    def query_positions(
        self, hash: int, max_distance: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``query_arrays(..., ordered=False)`` and a third array: where each id sits in the main
        part (its index in ``main_ids``; -1 for one in the delta), for data kept in that order."""
        q, r = check_hash(hash), check_distance(max_distance)
        pos, d = self._main.search(q, r, self._scan_fallback)
        ids = self._main.ids[pos]
        if self._delta_n:
            dpos, dd = scan(self._delta_hashes[: self._delta_n], np.uint64(q), r)
            ids = np.concatenate((ids, self._delta_ids[dpos]))
            d = np.concatenate((d, dd))
            pos = np.concatenate((pos, np.full(len(dpos), -1, dtype=pos.dtype)))
        return ids, d, pos

    @property
    def main_ids(self) -> np.ndarray:
        """The main part's ids in its own order: a new array after each merge, so a caller that
        keeps data in this order (``query_positions``) can tell when it no longer applies."""
        return self._main.ids

    def nbytes(self) -> int:
        """Bytes held: every numpy array, plus an estimate for the delta's id -> slot dict."""
        delta = self._delta_ids.nbytes + self._delta_hashes.nbytes
        delta += sys.getsizeof(self._delta_slot) + 64 * len(self._delta_slot)
        return self._main.nbytes() + delta

    def __len__(self) -> int:
        return self._main.n - self._main.dead + self._delta_n

    def __contains__(self, id: object) -> bool:
        i = as_id(id)
        return i is not None and (i in self._delta_slot or self._main.position(i) >= 0)
