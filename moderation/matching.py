"""The banned set as seen by one process, and the rule that turns a lookup into a decision.

``BannedIndex`` holds banned fingerprints in memory, no database: the dHash index
(``FingerprintIndex``, every lookup goes through it) plus, per entry, the confirming pHash and
whether the flagged image carries too little information to block on its own. ``BannedSet`` is
the process's ``BannedIndex`` kept in step with the database: before every lookup it replays the
``BannedSetChange`` rows committed since it last looked (one primary-key range query, empty when
nothing changed), so a flag or unflag committed anywhere is enforced by the very next lookup
everywhere.

Entries and keys
----------------
A flag stores the fingerprints of every variant of its image (``variants.VARIANTS``: the 8
orientations and a few crops), one ``FingerprintVariant`` row each (variants whose hashes
coincide, as the orientations of a symmetric image, are stored once). Each is an entry of the
index under the key ``flag id * KEYS_PER_FLAG + variant``, so a hit names its flag and variant
without any lookup table in memory. ``Match.fingerprint_id`` is the flag's id; a flag is reported
once per lookup, through its nearest variant.

The decision (``MatchRule``)
----------------------------
A candidate is an entry within ``MODERATION_MAX_DISTANCE`` dHash bits (``<=``). It *matches*
when its pHash is also within ``MODERATION_MAX_CONFIRM_DISTANCE`` bits (``<=``) of the upload's.
An entry or upload without a pHash (a row from before pipeline version 3 whose original was not
kept, so ``reindex`` could not recompute it) cannot be confirmed: it matches only within
``MODERATION_MAX_UNCONFIRMED_DISTANCE`` dHash bits, the distance the site used before
confirmation existed. An upload that matches any informative entry is blocked; one that matches
only low-information entries (flagged by a superuser's override) goes to review and is not
blocked: near-flat images collide with each other, so such a match is never enough on its own.

Trials
------
A hash list may carry a proposed distance on trial (``HashList.proposed_distance``), packed in
its entries' flags beside its own distance. ``decide`` then also works out, from the same
candidates, what the proposed distance would do per flag (``Trial``); it never changes the
decision, and since a proposed distance is at most the review distance, which is how far every
lookup reaches, a trial costs no second lookup.

Memory and cost
---------------
Per entry: the index's ~41-53 B (see ``fingerprint_index``) plus 20 B here (key int64, pHash
uint64, flags uint32 holding the list policy, in sorted arrays; recent changes in a small dict
until merged), so about 60-75 B per stored variant and ``KEYS_PER_FLAG`` x that per flagged
image of ordinary photos.
Confirming a candidate is a binary search in the sorted keys and an XOR + popcount: about a
microsecond per candidate, in one vectorised call per lookup.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np
from django.conf import settings
from django.db.models import Max

from moderation.fingerprint_index import FingerprintIndex
from moderation.hashing import (
    EVERY_VARIANT,
    PROBE_DTYPE,
    Fingerprint,
    to_unsigned,
    unpack_probes,
)
from moderation.models import AllowedMatch, BannedSetChange, FingerprintVariant
from moderation.variants import UPLOAD_CUTS, VARIANTS

# Rows fetched per round trip when loading the whole banned set at start-up.
COLD_LOAD_CHUNK = 50_000

# Index keys are flag id * KEYS_PER_FLAG + variant number. Never stored, so the stride can
# follow the variant list.
KEYS_PER_FLAG = len(VARIANTS)

BLOCK, REVIEW, PASS = "block", "review", "pass"


def entry_key(flag_id: int, variant: int) -> int:
    """The index key of one variant of one flag."""
    if not 0 <= variant < KEYS_PER_FLAG:
        raise ValueError(f"variant must be 0..{KEYS_PER_FLAG - 1}, got {variant}")
    return flag_id * KEYS_PER_FLAG + variant


def is_low_information(information: int | None) -> bool:
    """True when a fingerprint's information is below ``MODERATION_MIN_INFORMATION``.

    Unknown information (a row from before pipeline version 3) is not low: such rows keep the
    behaviour they had.
    """
    return information is not None and information < settings.MODERATION_MIN_INFORMATION


@dataclass(frozen=True, slots=True)
class Match:
    """A banned flag near a looked-up fingerprint. Staff-only information."""

    fingerprint_id: int  # the FlaggedFingerprint (the flag)
    distance: int  # dHash bits to the flag's nearest variant
    variant: int = 0  # which of variants.VARIANTS matched (an orientation or a crop)
    confirm_distance: int | None = None  # pHash bits; None: one side has no pHash
    low_information: bool = False  # the flagged image carries too little information
    list_distance: int | None = None  # the flag's hash list's own dHash distance, if any
    shadow: bool = False  # the flag's hash list is in shadow mode (records, never blocks)
    proposed_distance: int | None = None  # a distance on trial for the flag's list, if any
    by_cut: bool = False  # found by the upload cut as ``variant`` (distances are cut to cut)
    by_inner: bool = False  # found by the picture inside the upload's frame

    @property
    def variant_label(self) -> str:
        return VARIANTS[self.variant].label

    @property
    def found_by_kind(self) -> str:
        """``whole``, ``cut`` or ``frame``: what of the upload found this match (for scripts)."""
        return "frame" if self.by_inner else "cut" if self.by_cut else "whole"

    @property
    def found_by(self) -> str:
        """What of the upload found this match, for staff: ``whole image``, the cut (``centre
        (15% cut around)``, ``caption band (...)``) or ``picture inside a frame``."""
        if self.by_inner:
            return "picture inside a frame"
        return self.variant_label if self.by_cut else "whole image"


@dataclass(frozen=True, slots=True)
class MatchRule:
    """When a candidate counts as a match. All distances are Hamming bits, ``<=``."""

    max_distance: int  # dHash
    max_confirm_distance: int  # pHash, for entries and uploads that have one
    max_unconfirmed_distance: int  # dHash alone, when either side has no pHash
    # dHash distance within which an unmatched candidate sends the upload to review; 0: never.
    review_distance: int = 0
    # ...and pHash distance within which it does so (a flag without pHash: max_distance).
    review_confirm_distance: int = 64
    # A staff lookup's own distance applies to every list, whatever a list says.
    override: bool = False

    @classmethod
    def from_settings(cls, *, max_distance: int | None = None) -> MatchRule:
        """The site's rule; ``max_distance`` overrides the dHash distance (a staff lookup),
        for every hash list, and caps the review distance."""
        distance = settings.MODERATION_MAX_DISTANCE if max_distance is None else max_distance
        review = settings.MODERATION_REVIEW_DISTANCE
        return cls(
            max_distance=distance,
            max_confirm_distance=settings.MODERATION_MAX_CONFIRM_DISTANCE,
            max_unconfirmed_distance=min(settings.MODERATION_MAX_UNCONFIRMED_DISTANCE, distance),
            review_distance=review if max_distance is None else min(review, max_distance),
            review_confirm_distance=settings.MODERATION_REVIEW_CONFIRM_DISTANCE,
            override=max_distance is not None,
        )

    @property
    def radius(self) -> int:
        """How far the dHash lookup must reach to find every candidate (a hash list's own
        distance is never larger than the review distance, see ``HashList``)."""
        return max(self.max_distance, self.max_unconfirmed_distance, self.review_distance)

    def distance_for(self, match: Match) -> int:
        """The dHash distance that applies to ``match``: its list's, or the rule's."""
        if match.list_distance is None or self.override:
            return self.max_distance
        return match.list_distance

    def matches(self, match: Match) -> bool:
        max_distance = self.distance_for(match)
        if match.confirm_distance is None:
            return match.distance <= min(self.max_unconfirmed_distance, max_distance)
        return (
            match.distance <= max_distance
            and match.confirm_distance <= self.max_confirm_distance
        )

    def reviews(self, match: Match) -> bool:
        """A near miss: not a match, but it misses the rule on *one* hash only, by a little.

        Either the dHash is within the match distance and the pHash within the review confirm
        distance, or the dHash is within the review distance and the pHash within the match
        confirm distance. Not both over: a candidate a little over on both is what strangers
        look like at scale. Measured against 999,999 banned entries (the upload benchmark's
        set, 200 distinct ~2 MP photos): the box "dHash <= 16 and pHash <= 18" queued 39 of
        them, this rule 9; on the corpus it keeps every missed caption and 3° rotation of
        ``evaluate_matching`` (seeds 0-3) in the queue.
        """
        if self.matches(match) or match.distance > self.review_distance:
            return False
        if match.confirm_distance is None:
            return match.distance <= self.distance_for(match)
        if match.distance <= self.distance_for(match):
            return match.confirm_distance <= self.review_confirm_distance
        return match.confirm_distance <= self.max_confirm_distance


@dataclass(frozen=True, slots=True)
class Trial:
    """A flag whose list has a proposed distance (``HashList.proposed_distance``) under which
    the upload would be ``outcome`` (BLOCK or REVIEW), while the enforced distance gives it
    less (REVIEW or nothing). ``match`` is the orientation behind that outcome; the distances
    are ``match.proposed_distance`` and ``enforced_distance``."""

    match: Match
    outcome: str
    enforced_distance: int


@dataclass(frozen=True)
class Verdict:
    """What an upload of a fingerprint gets: ``decision`` and the matches behind it."""

    decision: str  # BLOCK, REVIEW or PASS
    matches: list[Match] = field(default_factory=list)  # under the rule, nearest first
    candidates: list[Match] = field(default_factory=list)  # all within dHash reach
    # Near misses of enforced lists (within the review distance, not matched), nearest first.
    near: list[Match] = field(default_factory=list)
    # Matches of shadow-mode lists: what they would have blocked (never part of the decision).
    shadow: list[Match] = field(default_factory=list)
    # What proposed list distances would do that the enforced ones do not (never part of the
    # decision): one per flag, see ``Trial``.
    trial: list[Trial] = field(default_factory=list)

    @property
    def blocked(self) -> bool:
        return self.decision == BLOCK

    @property
    def nearest(self) -> Match | None:
        """The match behind the decision: the nearest informative one when blocked."""
        if self.blocked:
            return next(m for m in self.matches if not m.low_information)
        return self.matches[0] if self.matches else None

    @property
    def for_review(self) -> Match | None:
        """The match that sends the upload to review: a low-information match or a near miss."""
        if self.decision != REVIEW:
            return None
        return self.matches[0] if self.matches else self.near[0]


def _one_per_flag(matches: Iterable[Match]) -> list[Match]:
    """Keep each flag's first match (the input is nearest first)."""
    seen: set[int] = set()
    kept = []
    for m in matches:
        if m.fingerprint_id not in seen:
            seen.add(m.fingerprint_id)
            kept.append(m)
    return kept


def _decision(matched: list[Match], near: list[Match]) -> str:
    """Block on an informative match; review a low-information match or a near miss."""
    if any(not m.low_information for m in matched):
        return BLOCK
    return REVIEW if matched or near else PASS


def decide(candidates: list[Match], rule: MatchRule) -> Verdict:
    """Apply ``rule`` to every candidate variant (nearest first) and decide.

    A match of an informative flag of an enforced list blocks; a match of only low-information
    flags, or a near miss (``MatchRule.reviews``), sends the upload to review; matches of
    shadow-mode lists are reported apart and change nothing.
    """
    enforced = [m for m in candidates if not m.shadow]
    matched = _one_per_flag(m for m in enforced if rule.matches(m))
    shadow = _one_per_flag(m for m in candidates if m.shadow and rule.matches(m))
    matched_ids = {m.fingerprint_id for m in matched}
    near = [
        m
        for m in _one_per_flag(m for m in enforced if rule.reviews(m))
        if m.fingerprint_id not in matched_ids
    ]
    decision = _decision(matched, near)

    trial = [] if rule.override else _trials(enforced, rule)
    return Verdict(
        decision, matched, _one_per_flag(sorted(candidates, key=_closeness)), near, shadow, trial
    )


def _closeness(m: Match) -> tuple[int, int]:
    return m.distance, 65 if m.confirm_distance is None else m.confirm_distance


def _severity(match: Match, rule: MatchRule) -> int:
    """2: the match blocks; 1: it sends the upload to review; 0: neither."""
    if rule.matches(match):
        return 1 if match.low_information else 2
    return 1 if rule.reviews(match) else 0


def _trials(enforced: list[Match], rule: MatchRule) -> list[Trial]:
    """Per flag whose list has a distance on trial: what the proposed distance would do, when
    it is more than what the enforced distance does. Only the candidates the lookup already
    found are looked at (a proposed distance, like a list's, is at most the review distance,
    which is how far every lookup reaches), so a trial costs no second lookup."""
    now: dict[int, int] = {}
    proposed: dict[int, tuple[int, Match]] = {}
    for m in enforced:  # nearest first
        if m.proposed_distance is None:
            continue
        fid = m.fingerprint_id
        now[fid] = max(now.get(fid, 0), _severity(m, rule))
        tried = replace(m, list_distance=m.proposed_distance)
        severity = _severity(tried, rule)
        if severity > proposed.get(fid, (0, m))[0]:
            proposed[fid] = (severity, m)
    return [
        Trial(m, BLOCK if severity == 2 else REVIEW, rule.distance_for(m))
        for fid, (severity, m) in proposed.items()
        if severity > now[fid]
    ]


# --- confirmation hashes --------------------------------------------------------------------

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
        self.build([], [], [])

    def build(self, keys: Iterable[int], phashes: Iterable[int], flags: Iterable[int]) -> None:
        keys = np.asarray(list(keys) if not isinstance(keys, np.ndarray) else keys, np.int64)
        phashes = np.asarray(
            list(phashes) if not isinstance(phashes, np.ndarray) else phashes, np.uint64
        )
        flags = np.asarray(list(flags) if not isinstance(flags, np.ndarray) else flags, _FLAGS)
        order = np.argsort(keys, kind="stable")
        keys, phashes, flags = keys[order], phashes[order], flags[order]
        last = np.ones(len(keys), dtype=bool)  # a repeated key: the last one wins
        last[:-1] = keys[1:] != keys[:-1]
        self._keys, self._phashes, self._flags = keys[last], phashes[last], flags[last]
        self._recent: dict[int, tuple[int, int] | None] = {}

    def set(self, key: int, phash: int | None, low_information: bool, policy: int = 0) -> None:
        self._recent[key] = (phash or 0, _entry_flags(phash, low_information, policy))
        self._merge_if_full()

    def discard(self, key: int) -> None:
        self._recent[key] = None
        self._merge_if_full()

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """pHashes and flags of ``keys`` (flags 0 for a key never set)."""
        pos = np.searchsorted(self._keys, keys)
        pos = np.minimum(pos, max(len(self._keys) - 1, 0))
        if len(self._keys):
            found = self._keys[pos] == keys
            phashes = np.where(found, self._phashes[pos], np.uint64(0))
            flags = np.where(found, self._flags[pos], _FLAGS(0))
        else:
            phashes = np.zeros(len(keys), np.uint64)
            flags = np.zeros(len(keys), _FLAGS)
        if self._recent:
            for i, key in enumerate(keys.tolist()):
                if key in self._recent:
                    value = self._recent[key]
                    phashes[i], flags[i] = value if value is not None else (0, 0)
        return phashes, flags

    def _merge_if_full(self) -> None:
        if len(self._recent) < max(1024, len(self._keys) // 64):
            return
        recent = self._recent
        keep = ~np.isin(self._keys, np.fromiter(recent, np.int64, len(recent)))
        live = [(k, v) for k, v in recent.items() if v is not None]
        self.build(
            np.concatenate((self._keys[keep], np.array([k for k, _ in live], np.int64))),
            np.concatenate((self._phashes[keep], np.array([v[0] for _, v in live], np.uint64))),
            np.concatenate((self._flags[keep], np.array([v[1] for _, v in live], _FLAGS))),
        )

    def nbytes(self) -> int:
        return (
            self._keys.nbytes + self._phashes.nbytes + self._flags.nbytes + 100 * len(self._recent)
        )


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
        self._index = FingerprintIndex()
        self._index.build(keys, dhashes)
        self._data.build(keys, phashes, flags)
        key_column = np.asarray(keys, np.int64)
        dhash_column = np.asarray(dhashes, np.uint64)
        for number in UPLOAD_CUTS:
            own = key_column % KEYS_PER_FLAG == number
            self._cut_indexes[number] = FingerprintIndex()
            self._cut_indexes[number].build(key_column[own], dhash_column[own])

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
        keys, distances = index.query_arrays(fingerprint.dhash, max_distance)
        if not len(keys):
            return []
        phashes, flags = self._data.lookup(keys)
        has = (flags & _HAS_PHASH).astype(bool)
        if fingerprint.phash is None:
            confirm = [None] * len(keys)
        else:
            bits = np.bitwise_count(phashes ^ np.uint64(fingerprint.phash))
            if max_confirm_distance < 64:
                keep = ~has | (bits <= max_confirm_distance)
                keys, distances, bits, has, flags = (
                    keys[keep], distances[keep], bits[keep], has[keep], flags[keep]
                )
            confirm = [b if h else None for b, h in zip(bits.tolist(), has.tolist())]
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
        return decide(sorted(candidates + found, key=_closeness), rule)

    def cut_matches(self, cuts: Mapping[int, Fingerprint], rule: MatchRule) -> list[Match]:
        """The flags' variants that the upload's cuts (variant number -> fingerprint) match
        under ``rule``. Like with like only (a centre against centres, a caption band against
        caption bands: against the other variants a cut would only add chances of collision),
        and matches only (no near misses from a cut). Measured with ``evaluate_matching``
        (README): 3° rotations and captions 1.00 on every seed, no innocent file blocked."""
        return [
            replace(m, by_cut=True)
            for number, cut in cuts.items()
            for m in self.candidates(cut, rule.radius, rule.max_confirm_distance, variant=number)
            if rule.matches(m)
        ]

    def nbytes(self) -> int:
        cut_indexes = sum(index.nbytes() for index in self._cut_indexes.values())
        return self._index.nbytes() + cut_indexes + self._data.nbytes()


@dataclass(frozen=True)
class HashColumns:
    """Stored images' fingerprints as numpy columns, for comparing a few new fingerprints with
    all of them at once (the impact preview): one XOR + popcount over the column per new
    fingerprint instead of one index lookup per stored image.

    An image has one row for its own fingerprint and one per stored probe (its cuts and
    framed picture, ``hashing.CheckFingerprints.probe_bytes``), so the preview decides as the
    sweep will: a cut row is compared with that variant only, the framed picture's with every
    variant, and probe rows count only when the image's own fingerprint matches nothing.
    """

    pks: np.ndarray  # int64, one per row (an image has several rows when it stores probes)
    dhashes: np.ndarray  # uint64
    phashes: np.ndarray  # uint64 (0 where there is none)
    has_phash: np.ndarray  # bool
    variants: np.ndarray  # int16: EVERY_VARIANT (the image, its framed picture); n: n only
    whole: np.ndarray  # bool: the image's own fingerprint (False: a probe)

    @classmethod
    def load(cls, rows: Iterable[tuple]) -> HashColumns:
        """From ``(pk, signed dHash, signed pHash or None[, packed probes])`` rows, read once.
        The probes (``hashing.pack_probes``) of all rows are unpacked in one ``frombuffer``."""
        if hasattr(rows, "iterator"):  # a queryset: stream it in large chunks
            rows = rows.iterator(chunk_size=20_000)
        pks, dhashes, phashes, blobs = [], [], [], []
        for pk, dhash, phash, *probes in rows:
            pks.append(pk)
            dhashes.append(dhash)
            phashes.append(phash)
            blobs.append(bytes(probes[0] or b"") if probes else b"")
        has = np.fromiter((p is not None for p in phashes), bool, len(phashes))
        probes = unpack_probes(b"".join(blobs))
        per_image = np.fromiter((len(b) for b in blobs), np.int64, len(blobs)) // (
            3 * PROBE_DTYPE.itemsize
        )
        pk_column = np.array(pks, np.int64)
        own_phashes = np.array([0 if p is None else p for p in phashes], np.int64)
        return cls(
            np.concatenate((pk_column, np.repeat(pk_column, per_image))),
            np.concatenate((np.array(dhashes, np.int64), probes[:, 1])).view(np.uint64),
            np.concatenate((own_phashes, probes[:, 2])).view(np.uint64),
            np.concatenate((has, np.ones(len(probes), bool))),
            np.concatenate(
                (np.full(len(pks), EVERY_VARIANT, np.int16), probes[:, 0].astype(np.int16))
            ),
            np.concatenate((np.ones(len(pks), bool), np.zeros(len(probes), bool))),
        )

    def __len__(self) -> int:
        return len(self.pks)

    def nearest_matches(
        self,
        entries: Iterable[tuple[int, Fingerprint, bool]],
        *,
        rule: MatchRule,
        list_distance: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(pks, distances)``: per stored image (pks ascending), the dHash distance to the
        nearest of ``entries`` (variant number, fingerprint, low information) that it matches
        under ``rule`` (``MatchRule.matches``, with a hash list's own distance), or -1. Low-
        information entries never block, so never count."""
        nearest = np.full(len(self), 65, np.int64)
        probe = Match(0, 0, list_distance=list_distance)
        max_distance = rule.distance_for(probe)
        unconfirmed = min(rule.max_unconfirmed_distance, max_distance)
        for number, fp, low in entries:
            if low:
                continue
            d = np.bitwise_count(self.dhashes ^ np.uint64(fp.dhash)).astype(np.int64)
            if fp.phash is None:
                matched = d <= unconfirmed
            else:
                p = np.bitwise_count(self.phashes ^ np.uint64(fp.phash))
                confirmed = (d <= max_distance) & (p <= rule.max_confirm_distance)
                matched = np.where(self.has_phash, confirmed, d <= unconfirmed)
            matched &= (self.variants == EVERY_VARIANT) | (self.variants == number)
            np.minimum(nearest, np.where(matched, d, 65), out=nearest)
        pks, image = np.unique(self.pks, return_inverse=True)
        by_whole = np.full(len(pks), 65, np.int64)
        by_probe = np.full(len(pks), 65, np.int64)
        np.minimum.at(by_whole, image[self.whole], nearest[self.whole])
        np.minimum.at(by_probe, image[~self.whole], nearest[~self.whole])
        result = np.where(by_whole < 65, by_whole, by_probe)
        result[result == 65] = -1
        return pks, result


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
            is_low_information(information),
            packed,
        )


_VARIANT_COLUMNS = (
    "flagged_id",
    "variant",
    "dhash",
    "phash",
    "flagged__information",
    "flagged__hash_list__max_distance",
    "flagged__hash_list__mode",
    "flagged__hash_list__proposed_distance",
)


def active_variant_rows(flag_ids: Iterable[int] | None = None):
    """``variant_entries`` input for every active flag of an enabled list, or only for
    ``flag_ids``."""
    rows = FingerprintVariant.objects.filter(
        flagged__active=True, flagged__hash_list__enabled=True
    ).order_by()
    if flag_ids is not None:
        rows = rows.filter(flagged_id__in=list(flag_ids))
    return rows.values_list(*_VARIANT_COLUMNS)


class BannedSet:
    """The active banned fingerprints of this process, synced from the change log."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._index = BannedIndex()
        self._last_change_id: int | None = None

    def __len__(self) -> int:
        with self._lock:
            return len(self._index)

    def sync(self) -> None:
        """Bring the index up to date with every change committed so far."""
        with self._lock:
            if self._last_change_id is None:
                self._cold_load()
            else:
                self._apply_changes_after(self._last_change_id)

    def check(
        self,
        fingerprint: Fingerprint,
        *,
        rule: MatchRule | None = None,
        sync: bool = True,
        cuts: Mapping[int, Fingerprint] | None = None,
        inner: Fingerprint | None = None,
    ):
        """The ``Verdict`` an upload of ``fingerprint`` gets (the site's rule by default);
        ``cuts``, ``inner``: the upload's cuts and framed picture, see ``BannedIndex.check``.

        ``sync=False`` skips the change-log query; only for a caller that has just called
        ``sync()`` itself and looks up many hashes in a row (the full sweep).
        """
        rule = MatchRule.from_settings() if rule is None else rule
        if sync:
            self.sync()
        with self._lock:
            return self._index.check(fingerprint, rule, cuts=cuts, inner=inner)

    def find(
        self, fingerprint: Fingerprint, max_distance: int | None = None, *, sync: bool = True
    ) -> list[Match]:
        """Banned flags that ``fingerprint`` matches under the rule, nearest first.

        ``max_distance`` overrides the dHash distance of the rule (staff lookups).
        """
        rule = MatchRule.from_settings(max_distance=max_distance)
        return self.check(fingerprint, rule=rule, sync=sync).matches

    def nbytes(self) -> int:
        with self._lock:
            return self._index.nbytes()

    def _cold_load(self) -> None:
        # Read the log position first: anything committed while the table loads is replayed
        # afterwards, and replaying a change the snapshot already contains is harmless.
        last = BannedSetChange.objects.aggregate(last=Max("id"))["last"] or 0
        index = BannedIndex()
        index.build(variant_entries(active_variant_rows().iterator(chunk_size=COLD_LOAD_CHUNK)))
        self._index = index
        self._last_change_id = last
        self._apply_changes_after(last)

    def _apply_changes_after(self, last: int) -> None:
        changes = (
            BannedSetChange.objects.filter(id__gt=last)
            .order_by("id")
            .values_list(
                "id",
                "fingerprint_id",
                "variant",
                "dhash",
                "phash",
                "information",
                "active",
                "max_distance",
                "shadow",
                "proposed_distance",
            )
        )
        for change_id, flag_id, variant, dhash, phash, information, active, *policy in changes:
            if active:
                row = (flag_id, variant, dhash, phash, information, *policy)
                [entry] = variant_entries([row])
                self._index.add(*entry)
            else:
                self._index.remove(entry_key(flag_id, variant))
            self._last_change_id = change_id


_banned_set = BannedSet()


def banned_set() -> BannedSet:
    """This process's banned set (synced on every lookup)."""
    return _banned_set


def check(
    fingerprint: Fingerprint,
    *,
    cuts: Mapping[int, Fingerprint] | None = None,
    inner: Fingerprint | None = None,
) -> Verdict:
    """The decision an upload of ``fingerprint`` (with its ``cuts`` and framed picture
    ``inner``, see ``BannedIndex.check``) gets now: block, review or pass (after the
    allowlist, see ``without_allowed``)."""
    return without_allowed(_banned_set.check(fingerprint, cuts=cuts, inner=inner), fingerprint)


def without_allowed(verdict: Verdict, fingerprint: Fingerprint) -> Verdict:
    """``verdict`` without the flags a moderator has allowed this image for (``AllowedMatch``
    in force, within ``MODERATION_ALLOWLIST_DISTANCE`` dHash bits), decided again.

    One query, only when the verdict has matches or near misses (rare for an upload). The
    allowlist is never cached: a revoked exception stops applying at the next lookup in every
    process, with no change log to replay.
    """
    ids = {m.fingerprint_id for m in (*verdict.matches, *verdict.near)}
    ids |= {t.match.fingerprint_id for t in verdict.trial}
    if not ids:
        return verdict
    limit = settings.MODERATION_ALLOWLIST_DISTANCE
    unsigned = fingerprint.dhash
    allowed = {
        fid
        for fid, dhash in AllowedMatch.objects.in_force()
        .filter(fingerprint_id__in=ids)
        .values_list(
            "fingerprint_id", "dhash"
        )
        if (to_unsigned(dhash) ^ unsigned).bit_count() <= limit
    }
    if not allowed:
        return verdict
    matched = [m for m in verdict.matches if m.fingerprint_id not in allowed]
    near = [m for m in verdict.near if m.fingerprint_id not in allowed]
    trial = [t for t in verdict.trial if t.match.fingerprint_id not in allowed]
    decision = _decision(matched, near)
    return Verdict(decision, matched, verdict.candidates, near, verdict.shadow, trial)


def find(fingerprint: Fingerprint, max_distance: int | None = None) -> list[Match]:
    """Banned flags ``fingerprint`` matches (default: the site's rule), nearest first."""
    return _banned_set.find(fingerprint, max_distance)


def reset_banned_set() -> None:
    """Forget this process's index; the next lookup reloads it. For tests and after restores."""
    global _banned_set
    _banned_set = BannedSet()
