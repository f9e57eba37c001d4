"""Banned fingerprints in memory: the dHash index and, per entry, what the rule needs.

No database. ``BannedIndex`` holds the entries of flags (one per stored variant) under the key
``flag id * KEYS_PER_FLAG + variant``, so a hit names its flag and variant without a lookup table.
Beside the dHash index (``fingerprint_index.FingerprintIndex``) each entry keeps its confirming
pHash, whether its flag is low-information, and its hash list's policy (distance, shadow mode,
a distance on trial), packed in sorted numpy arrays. ``BannedIndex.candidates`` returns
``matching.Match`` values and ``BannedIndex.check`` the ``matching.Verdict`` for an image with
its cuts and framed picture. ``banned_set.BannedSet`` keeps one in step with the database; a
sweep of a few new flags and ``evaluate_matching`` build their own.

``state()`` / ``BannedIndex.from_state`` turn an index into named numpy arrays and back, for
the snapshot every process of a host maps (``banned_snapshot``); an index made from mapped
arrays is frozen (see ``fingerprint_index``): its changes stay in private, small structures.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

import numpy as np

from moderation.conf import moderation_settings
from moderation.fingerprint_index import FingerprintIndex
from moderation.hashing import Fingerprint, to_unsigned
from moderation.matching import Match, MatchRule, Verdict, closeness, decide, is_low_information
from moderation.variants import UPLOAD_CUTS, VARIANTS

# Index keys are flag id * KEYS_PER_FLAG + variant number. Never stored, so the stride can
# follow the variant list.
KEYS_PER_FLAG = len(VARIANTS)


def entry_key(flag_id: int, variant: int) -> int:
    """The index key of one variant of one flag."""
    if not 0 <= variant < KEYS_PER_FLAG:
        raise ValueError(f"variant must be 0..{KEYS_PER_FLAG - 1}, got {variant}")
    return flag_id * KEYS_PER_FLAG + variant


# Entry flags: what the index keeps beside each key's dHash.
_HAS_PHASH = 1
_LOW_INFORMATION = 2
_SHADOW = 4
# Bits 8-15 of an entry's flags: its hash list's own dHash distance + 1 (0: the rule's);
# bits 16-23: the list's proposed distance on trial + 1 (0: none).
_DISTANCE_SHIFT = 8
_PROPOSED_SHIFT = 16
_FLAGS = np.uint32


def list_policy(max_distance: int | None, shadow: bool, proposed: int | None = None) -> int:
    """A hash list's policy packed into the entry flags of each of its fingerprints."""
    distance = 0 if max_distance is None else min(max_distance, 64) + 1
    trial = 0 if proposed is None else min(proposed, 64) + 1
    return (_SHADOW if shadow else 0) | (distance << _DISTANCE_SHIFT) | (trial << _PROPOSED_SHIFT)


def _entry_flags(phash: int | None, low_information: bool, policy: int = 0) -> int:
    return (
        (_HAS_PHASH if phash is not None else 0)
        | (_LOW_INFORMATION if low_information else 0)
        | policy
    )


class _EntryData:
    """Per index key: the confirming pHash and flags (incl. the list policy, ``list_policy``),
    in key-sorted numpy arrays (20 B each).

    Changes go to a dict first (a removal is a ``None``) and are merged into new arrays once
    the dict holds ``max(1024, n / 64)`` keys: about 64 element moves per change, amortised.
    """

    def __init__(self) -> None:
        self.frozen = False
        self.build([], [], [])

    def state(self) -> dict[str, np.ndarray]:
        if self._recent:
            raise ValueError("entry data with pending changes has no state")
        return {"keys": self._keys, "phashes": self._phashes, "flags": self._flags}

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray]) -> _EntryData:
        """Frozen entry data around ``state()`` arrays (not copied)."""
        data = cls.__new__(cls)
        data._keys, data._phashes, data._flags = arrays["keys"], arrays["phashes"], arrays["flags"]
        if not len(data._keys) == len(data._phashes) == len(data._flags):
            raise ValueError("entry data arrays differ in length")
        data._recent, data._recent_arrays, data.frozen = {}, None, True
        return data

    def merged(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(keys, phashes, flags) of every entry with the changes applied, sorted by key."""
        recent = self._recent
        if not recent:
            return self._keys, self._phashes, self._flags
        keep = ~np.isin(self._keys, np.fromiter(recent, np.int64, len(recent)))
        live = [(k, v) for k, v in recent.items() if v is not None]
        keys = np.concatenate((self._keys[keep], np.array([k for k, _ in live], np.int64)))
        order = np.argsort(keys, kind="stable")
        return (
            keys[order],
            np.concatenate((self._phashes[keep], np.array([v[0] for _, v in live], np.uint64)))[
                order
            ],
            np.concatenate((self._flags[keep], np.array([v[1] for _, v in live], _FLAGS)))[order],
        )

    def build(self, keys: Iterable[int], phashes: Iterable[int], flags: Iterable[int]) -> None:
        keys = np.asarray(list(keys) if not isinstance(keys, np.ndarray) else keys, np.int64)
        phashes = np.asarray(
            list(phashes) if not isinstance(phashes, np.ndarray) else phashes, np.uint64
        )
        flags = np.asarray(list(flags) if not isinstance(flags, np.ndarray) else flags, _FLAGS)
        self.frozen = False
        order = np.argsort(keys, kind="stable")
        keys, phashes, flags = keys[order], phashes[order], flags[order]
        last = np.ones(len(keys), dtype=bool)  # a repeated key: the last one wins
        last[:-1] = keys[1:] != keys[:-1]
        self._keys, self._phashes, self._flags = keys[last], phashes[last], flags[last]
        self._recent: dict[int, tuple[int, int] | None] = {}
        self._recent_arrays = None

    def set(self, key: int, phash: int | None, low_information: bool, policy: int = 0) -> None:
        self._recent[key] = (phash or 0, _entry_flags(phash, low_information, policy))
        self._recent_arrays = None
        self._merge_if_full()

    def discard(self, key: int) -> None:
        self._recent[key] = None
        self._recent_arrays = None
        self._merge_if_full()

    def _recent_sorted(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The changes as key-sorted arrays (a removal: flags 0), made once per change: a
        lookup's thousands of candidates are then matched in numpy, not one by one."""
        if self._recent_arrays is None:
            keys = np.fromiter(self._recent, np.int64, len(self._recent))
            values = [v or (0, 0) for v in self._recent.values()]
            order = np.argsort(keys)
            self._recent_arrays = (
                keys[order],
                np.array([v[0] for v in values], np.uint64)[order],
                np.array([v[1] for v in values], _FLAGS)[order],
            )
        return self._recent_arrays

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """pHashes and flags of ``keys`` (flags 0 for a key never set)."""
        return self._with_recent(keys, *self._stored(keys))

    def at_rows(self, rows: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``lookup(keys)`` for keys known to sit at ``rows`` of the merged arrays (-1: not
        known, looked up): two gathers instead of a binary search among millions per key."""
        known = rows >= 0
        if known.all():
            return self._with_recent(keys, self._phashes[rows], self._flags[rows])
        phashes, flags = np.empty(len(keys), np.uint64), np.empty(len(keys), _FLAGS)
        phashes[known], flags[known] = self._phashes[rows[known]], self._flags[rows[known]]
        # The few entries in the index's delta were added since the rows were made, so their
        # data is a recent change, applied below; the search by key only guards that.
        unknown = ~known
        phashes[unknown], flags[unknown] = self._stored(keys[unknown])
        return self._with_recent(keys, phashes, flags)

    def _stored(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """pHashes and flags of ``keys`` in the merged arrays (flags 0 where absent)."""
        if not len(self._keys):
            return np.zeros(len(keys), np.uint64), np.zeros(len(keys), _FLAGS)
        pos = np.minimum(np.searchsorted(self._keys, keys), len(self._keys) - 1)
        found = self._keys[pos] == keys
        return (
            np.where(found, self._phashes[pos], np.uint64(0)),
            np.where(found, self._flags[pos], _FLAGS(0)),
        )

    def _with_recent(
        self, keys: np.ndarray, phashes: np.ndarray, flags: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``phashes`` and ``flags`` of ``keys`` with the changes not merged yet applied."""
        if self._recent:
            recent, recent_phashes, recent_flags = self._recent_sorted()
            pos = np.minimum(np.searchsorted(recent, keys), len(recent) - 1)
            changed = recent[pos] == keys
            phashes = np.where(changed, recent_phashes[pos], phashes)
            flags = np.where(changed, recent_flags[pos], flags)
        return phashes, flags

    def pending(self) -> int:
        return len(self._recent)

    def _merge_if_full(self) -> None:
        if self.frozen or len(self._recent) < max(1024, len(self._keys) // 64):
            return
        self.build(*self.merged())
        self.frozen = False

    def nbytes(self) -> int:
        return (
            self._keys.nbytes + self._phashes.nbytes + self._flags.nbytes + 100 * len(self._recent)
        )


# The snapshot array that aligns the entry data with the dHash index's main part (``_Rows``).
# Snapshots carry it since format 2; an index made from arrays without it answers by search.
ROWS = "data_rows"


class _Rows:
    """For each position of the dHash index's main part, the row of the same key in the entry
    data's merged (key-sorted) arrays: a candidate's pHash and flags are then two gathers.

    Without it each of a query's candidates is a binary search among all the keys: near a dense
    cluster of the 10M benchmark set (~20,000 candidates within 12 bits), 6-7 ms of cache
    misses against 0.1 ms (docs/performance.md). 4 bytes per entry, in the snapshot. It holds
    while both parts keep the arrays it was made for: a merge of either makes new ones, and
    lookups go back to the binary search until the next build or snapshot.
    """

    def __init__(self, rows: np.ndarray, index: FingerprintIndex, data: _EntryData) -> None:
        self.rows, self._ids, self._keys = rows, index.main_ids, data._keys

    @classmethod
    def aligning(cls, index: FingerprintIndex, data: _EntryData) -> _Rows | None:
        """The rows for a freshly built pair (None if they hold different keys)."""
        ids = index.main_ids
        state = index.state()
        row_type = np.int32 if len(ids) < 1 << 31 else np.int64
        rows = np.arange(len(ids), dtype=row_type)
        if state.get("by_id") is not None:  # by_id: main positions in key order
            rows[state["by_id"]] = rows.copy()
        if len(ids) != len(data._keys) or not np.array_equal(data._keys[rows], ids):
            return None
        return cls(rows, index, data)

    @classmethod
    def mapped(cls, rows: np.ndarray, index: BannedIndex) -> _Rows:
        """Rows read from a snapshot, checked for size and on a sample of positions (the
        snapshot's checksums already cover damage; a full check would read every page)."""
        ids, keys = index._index.main_ids, index._data._keys
        if len(rows) != len(ids):
            raise ValueError("the entry data rows and the index differ in size")
        sample = np.linspace(0, len(ids) - 1, num=min(len(ids), 64), dtype=np.int64)
        if len(sample) and not np.array_equal(keys[rows[sample]], ids[sample]):
            raise ValueError("the entry data rows do not match the index")
        return cls(rows, index._index, index._data)

    def fits(self, index: FingerprintIndex, data: _EntryData) -> bool:
        return index.main_ids is self._ids and data._keys is self._keys

    def of(self, positions: np.ndarray) -> np.ndarray:
        """The rows of main-part ``positions`` (-1, an entry in the delta, stays -1)."""
        rows = np.full(len(positions), -1, dtype=np.int64)
        main = positions >= 0
        rows[main] = self.rows[positions[main]]
        return rows


class BannedIndex:
    """Banned fingerprints in memory, looked up by dHash and confirmed by pHash. No database.

    ``BannedSet`` keeps one in step with the database; ``evaluate_matching`` and the sweep of a
    few new flags build their own from the same rows. Not synchronised: callers lock.

    The entries of each variant an upload is also cut as (``variants.UPLOAD_CUTS``) are kept in
    an index of their own as well, because a cut is compared with that variant only: querying
    the whole index at the review radius and keeping 1 entry in 14 cost ~1-3 ms per cut against
    1M entries; the variant's own index answers in a tenth of that, for ~2 x 46 B more per flag.
    """

    def __init__(self) -> None:
        self._index = FingerprintIndex()
        self._data = _EntryData()
        self._cut_indexes = {number: FingerprintIndex() for number in UPLOAD_CUTS}
        self._rows: _Rows | None = None

    def __len__(self) -> int:
        return len(self._index)

    def build(self, entries: Iterable[tuple]) -> None:
        """Replace the contents with ``(key, dhash, phash or None, low_information[, policy])``
        entries (``policy``: ``list_policy`` of the entry's hash list, default the site's)."""
        keys, dhashes, phashes, flags = [], [], [], []
        for key, dhash, phash, low, *policy in entries:
            keys.append(key)
            dhashes.append(dhash)
            phashes.append(phash or 0)
            flags.append(_entry_flags(phash, low, *policy))
        self.build_arrays(
            np.asarray(keys, np.int64),
            np.asarray(dhashes, np.uint64),
            np.asarray(phashes, np.uint64),
            np.asarray(flags, _FLAGS),
        )

    def build_arrays(
        self, keys: np.ndarray, dhashes: np.ndarray, phashes: np.ndarray, flags: np.ndarray
    ) -> None:
        """``build`` from aligned arrays (``arrays()``'s form: flags packed as in ``_EntryData``),
        with no Python loop over the entries: a snapshot of millions is rebuilt from these."""
        self._index = FingerprintIndex()
        self._index.build(keys, dhashes)
        self._data.build(keys, phashes, flags)
        for number in UPLOAD_CUTS:
            own = keys % KEYS_PER_FLAG == number
            self._cut_indexes[number] = FingerprintIndex()
            self._cut_indexes[number].build(keys[own], dhashes[own])
        self._rows = _Rows.aligning(self._index, self._data)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(keys, dhashes, phashes, flags) of every entry, changes applied, sorted by key."""
        ids, dhashes = self._index.live_arrays()
        keys, phashes, flags = self._data.merged()
        if not np.array_equal(ids, keys):
            raise RuntimeError("the dHash index and the entry data hold different keys")
        return keys, dhashes, phashes, flags

    def state(self) -> dict[str, np.ndarray]:
        """Every array the index is made of, by name, for a snapshot; only of an index with no
        pending changes (``build_arrays`` one from ``arrays()`` first)."""
        parts = {"index": self._index, **{f"cut{n}": i for n, i in self._cut_indexes.items()}}
        named = {f"{part}.{k}": v for part, i in parts.items() for k, v in i.state().items()}
        rows = self._current_rows()
        if rows is None:
            rows = _Rows.aligning(self._index, self._data)
        aligned = {} if rows is None else {ROWS: rows.rows}
        return named | {f"data.{k}": v for k, v in self._data.state().items()} | aligned

    @classmethod
    def from_state(cls, arrays: Mapping[str, np.ndarray]) -> BannedIndex:
        """A frozen index around ``state()`` arrays (not copied): what a snapshot maps.
        ValueError when they do not fit together."""

        def part(prefix: str) -> dict[str, np.ndarray]:
            return {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith(prefix + ".")}

        index = cls.__new__(cls)
        index._index = FingerprintIndex.from_state(part("index"))
        index._data = _EntryData.from_state(part("data"))
        index._cut_indexes = {n: FingerprintIndex.from_state(part(f"cut{n}")) for n in UPLOAD_CUTS}
        if len(index._data._keys) != len(index._index):
            raise ValueError("the entry data and the index differ in size")
        index._rows = None if ROWS not in arrays else _Rows.mapped(arrays[ROWS], index)
        return index

    def _current_rows(self) -> _Rows | None:
        """The entry-data row of each main-part position, while neither part has merged since."""
        rows = self._rows
        if rows is None or not rows.fits(self._index, self._data):
            return None
        return rows

    def pending(self) -> int:
        """Entries changed since the index was built or mapped (held privately when frozen)."""
        return self._data.pending()

    @property
    def frozen(self) -> bool:
        return self._index.frozen

    def thaw(self) -> None:
        """Let a frozen index merge its changes into private memory from now on (the fallback
        when no newer snapshot can be made)."""
        for index in (self._index, *self._cut_indexes.values()):
            index.thaw()
        self._data.frozen = False
        self._data._merge_if_full()

    def add(
        self, key: int, dhash: int, phash: int | None, low_information: bool, policy: int = 0
    ) -> None:
        self._index.add(key, dhash)
        self._data.set(key, phash, low_information, policy)
        cut_index = self._cut_indexes.get(key % KEYS_PER_FLAG)
        if cut_index is not None:
            cut_index.add(key, dhash)

    def remove(self, key: int) -> None:
        self._index.remove(key)
        self._data.discard(key)
        cut_index = self._cut_indexes.get(key % KEYS_PER_FLAG)
        if cut_index is not None:
            cut_index.remove(key)

    def candidates(
        self,
        fingerprint: Fingerprint,
        max_distance: int,
        max_confirm_distance: int = 64,
        *,
        variant: int | None = None,
    ) -> list[Match]:
        """Every entry within ``max_distance`` dHash bits, per variant, nearest first; with
        ``variant`` (one of ``variants.UPLOAD_CUTS``), the entries of that variant only.

        Entries whose pHash is more than ``max_confirm_distance`` bits away are dropped in numpy,
        before any Python object is made: against a large, clustered banned set a wide dHash
        radius finds thousands of entries, nearly all strangers that the pHash rules out.
        """
        index = self._index if variant is None else self._cut_indexes[variant]
        rows = self._current_rows() if variant is None else None
        if rows is None:
            keys, distances = index.query_arrays(fingerprint.dhash, max_distance, ordered=False)
            phashes, flags = self._data.lookup(keys)
        else:
            keys, distances, positions = index.query_positions(fingerprint.dhash, max_distance)
            phashes, flags = self._data.at_rows(rows.of(positions), keys)
        if not len(keys):
            return []
        has = (flags & _HAS_PHASH).astype(bool)
        bits = None
        if fingerprint.phash is not None:
            bits = np.bitwise_count(phashes ^ np.uint64(fingerprint.phash))
            if max_confirm_distance < 64:
                keep = ~has | (bits <= max_confirm_distance)
                keys, distances, bits, has, flags = (
                    keys[keep], distances[keep], bits[keep], has[keep], flags[keep]
                )
        # Nearest first, ties by key; sorted only once the pHash has dropped the strangers.
        order = np.lexsort((keys, distances))
        keys, distances, has, flags = keys[order], distances[order], has[order], flags[order]
        if bits is None:
            confirm = [None] * len(keys)
        else:
            confirm = [b if h else None for b, h in zip(bits[order].tolist(), has.tolist())]
        low = (flags & _LOW_INFORMATION).astype(bool).tolist()
        shadow = (flags & _SHADOW).astype(bool).tolist()
        list_distance = [
            d - 1 if d else None for d in ((flags >> _DISTANCE_SHIFT) & 0xFF).tolist()
        ]
        proposed = [d - 1 if d else None for d in ((flags >> _PROPOSED_SHIFT) & 0xFF).tolist()]
        return [
            Match(key // KEYS_PER_FLAG, distance, key % KEYS_PER_FLAG, c, lo, ld, sh, pd)
            for key, distance, c, lo, ld, sh, pd in zip(
                keys.tolist(), distances.tolist(), confirm, low, list_distance, shadow, proposed
            )
        ]

    def check(
        self,
        fingerprint: Fingerprint,
        rule: MatchRule,
        *,
        cuts: Mapping[int, Fingerprint] | None = None,
        inner: Fingerprint | None = None,
    ) -> Verdict:
        """The verdict for an upload of ``fingerprint``. With ``cuts`` (the upload cut as some
        variants, ``hashing.check_fingerprints``), an upload the whole image does not block is
        blocked when one of its cuts matches the same variant of a flag (``cut_matches``); with
        ``inner`` (the picture inside the upload's frame), when that picture matches any
        variant of a flag, as the whole upload would."""
        # Only candidates the rule could act on: a match or a near miss needs its pHash within
        # the larger of the two pHash distances (or no pHash at all).
        cap = max(rule.max_confirm_distance, rule.review_confirm_distance)
        candidates = self.candidates(fingerprint, rule.radius, cap)
        verdict = decide(candidates, rule)
        if verdict.blocked or not (cuts or inner):
            return verdict
        found = self.cut_matches(cuts or {}, rule)
        if inner is not None:
            found += [
                replace(m, by_inner=True)
                for m in self.candidates(inner, rule.radius, rule.max_confirm_distance)
                if rule.matches(m)
            ]
        if not found:
            return verdict
        return decide(sorted(candidates + found, key=closeness), rule)

    def cut_matches(self, cuts: Mapping[int, Fingerprint], rule: MatchRule) -> list[Match]:
        """The flags' variants that the upload's cuts (variant number -> fingerprint) match
        under ``rule``. Like with like only (a centre against centres, a caption band against
        caption bands: against the other variants a cut would only add chances of collision),
        and matches only (no near misses from a cut). Measured with ``evaluate_matching``
        (docs/matching.md): 3° rotations and captions 1.00 on every seed, no innocent file
        blocked."""
        return [
            replace(m, by_cut=True)
            for number, cut in cuts.items()
            for m in self.candidates(cut, rule.radius, rule.max_confirm_distance, variant=number)
            if rule.matches(m)
        ]

    def nbytes(self) -> int:
        cut_indexes = sum(index.nbytes() for index in self._cut_indexes.values())
        rows = 0 if self._rows is None else self._rows.rows.nbytes
        return self._index.nbytes() + cut_indexes + self._data.nbytes() + rows


def stored_variants(variants: list[Fingerprint]) -> list[tuple[int, Fingerprint]]:
    """Which of an image's variant fingerprints (``hashing.fingerprint_variants``) a flag
    stores: ``(variant number, fp)``.

    A variant whose dHash and pHash repeat an earlier one's (the orientations of a symmetric
    image) is left out: it would only be the same entry twice.
    """
    seen: set[tuple[int, int | None]] = set()
    kept = []
    for number, fp in enumerate(variants):
        if (fp.dhash, fp.phash) not in seen:
            seen.add((fp.dhash, fp.phash))
            kept.append((number, fp))
    return kept


def variant_entries(rows: Iterable[tuple]):
    """Index entries from ``(flag id, variant, dhash, phash, information[, list distance,
    shadow[, proposed distance]])`` rows (signed hashes; shadow is a bool or the list's mode;
    without the list columns, the site's rule applies)."""
    minimum = moderation_settings.MIN_INFORMATION  # once, not per row: a cold load has millions
    for flag_id, variant, dhash, phash, information, *policy in rows:
        if policy:
            max_distance, shadow, *proposed = policy
            packed = list_policy(
                max_distance, shadow is True or shadow == "shadow", *proposed
            )
        else:
            packed = 0
        yield (
            entry_key(flag_id, variant),
            to_unsigned(dhash),
            None if phash is None else to_unsigned(phash),
            is_low_information(information, minimum),
            packed,
        )
