"""Signals: the hashes this site speaks, by signal type, and the one rule that matches them.

The service layer an HTTP API, a command or the upload path calls (no views here):

- ``SIGNAL_TYPES``: "pdq", "md5", "sha256" (python-threatexchange's names; its "video_md5" and
  "video_sha256" are read as the byte hashes they are) and "dhash", the site's own 64-bit hash.
- ``hash_file``: every signal of an image file, from one decode (``file_hashes`` also gives
  PDQ's quality).
- ``lookup``: the list matches of one hash, under the rule uploads get (``match_hashes``).
- ``compare``: the distance between two hashes of one type, and whether they match.
- ``index_status``: what each signal type's index holds.

Every bad signal type or malformed hash raises ``SignalError``, whose message is fit to show a
caller (a 400, not a 500).

The rule, per list (its on/off switch, mode and distances, as for dHash flags): a PDQ entry
matches within ``HashList.pdq_distance`` bits (``<=``), an MD5 or SHA-256 entry when equal. A
match in an enforced list blocks, unless the upload's PDQ or the entry's has a quality below
``pdq.MIN_QUALITY``: such a match only sends the image to review. A match in a shadow list
blocks nothing and is recorded as what it would have blocked.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import F, Q

from moderation import banned_set, pdq, signal_set
from moderation.hashing import Fingerprint, fingerprint_with_pdq, hamming
from moderation.matching import MatchRule, Verdict
from moderation.models import FlaggedFingerprint, HashList, SignalEntry, SignalType

PDQ, MD5, SHA256, DHASH = "pdq", "md5", "sha256", "dhash"
SIGNAL_TYPES = (PDQ, MD5, SHA256, DHASH)
# Names other systems use for the same signals (python-threatexchange / HMA).
ALIASES = {"video_md5": MD5, "video_sha256": SHA256}
_HEX_DIGITS = {PDQ: 64, MD5: 32, SHA256: 64, DHASH: 16}

BLOCK, REVIEW, SHADOW = "block", "review", "shadow"


class SignalError(ValueError):
    """A bad signal type or a malformed hash; the message says which, for the caller."""


def signal_type_of(name: str) -> str:
    """The site's name for signal type ``name`` (aliases accepted); ``SignalError`` if unknown."""
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in SIGNAL_TYPES:
        raise SignalError(
            f"unknown signal type {name!r}; known: {', '.join(SIGNAL_TYPES)} "
            f"(also {', '.join(ALIASES)})"
        )
    return key


def normalize(signal_type: str, value: str) -> tuple[str, str]:
    """(signal type, hash as lowercase hex) checked; ``SignalError`` saying what is wrong."""
    kind = signal_type_of(signal_type)
    text = str(value).strip().lower()
    digits = _HEX_DIGITS[kind]
    if len(text) != digits:
        raise SignalError(f"a {kind} hash is {digits} hex digits, got {len(text)}")
    if any(c not in "0123456789abcdef" for c in text):
        raise SignalError(f"a {kind} hash is hex digits (0-9, a-f)")
    return kind, text


# --- hashing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileHashes:
    """Every signal of one image file (hex), and PDQ's quality for its PDQ (0-100)."""

    pdq: str
    pdq_quality: int
    md5: str
    sha256: str
    dhash: str

    def as_dict(self) -> dict[str, str]:
        """{signal type: hex}, without the quality."""
        return {k: v for k, v in asdict(self).items() if k != "pdq_quality"}


def _read_bytes(file: Any) -> bytes:
    if isinstance(file, bytes | bytearray | memoryview):
        return bytes(file)
    if hasattr(file, "seek"):
        file.seek(0)
    data = file.read()
    if hasattr(file, "seek"):
        file.seek(0)
    return data


def file_hashes(file: Any) -> FileHashes:
    """Every signal of an image file: the byte hashes of its bytes, the dHash and PDQ of its
    first frame from one decode (``hashing.fingerprint_with_pdq``). ``SignalError`` when the
    file is not an acceptable image (the decoder's own message)."""
    data = _read_bytes(file)
    try:
        first = fingerprint_with_pdq(io.BytesIO(data))
    except ValidationError as e:
        raise SignalError(" ".join(e.messages)) from e
    return FileHashes(
        pdq=first.pdq.hex,
        pdq_quality=first.pdq.quality,
        md5=hashlib.md5(data, usedforsecurity=False).hexdigest(),
        sha256=hashlib.sha256(data).hexdigest(),
        dhash=first.hex,
    )


def hash_file(file: Any) -> dict[str, str]:
    """{signal type: hex} of an image file (see ``file_hashes``; quality there)."""
    return file_hashes(file).as_dict()


# --- matching -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListMatch:
    """One list entry (or dHash flag) a hash matched, and what the match does: ``outcome`` is
    BLOCK, REVIEW (a low-quality PDQ, a low-information or near dHash match) or SHADOW (a
    shadow-mode list: recorded, blocks nothing). Staff and trusted services only."""

    signal_type: str
    list_id: int
    list_name: str
    value: str  # the matched entry's hash (hex)
    distance: int
    outcome: str
    entry_id: int | None = None  # the SignalEntry (pdq, md5, sha256)
    flag_id: int | None = None  # the FlaggedFingerprint (dhash)

    @property
    def blocks(self) -> bool:
        return self.outcome == BLOCK

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "blocks": self.blocks}


def _outcome(hash_list: HashList, *, weak: bool) -> str:
    if hash_list.shadow:
        return SHADOW
    return REVIEW if weak else BLOCK


def _entry_matches(
    signal_type: str, rows: list[tuple[SignalEntry, int]], *, weak_query: bool
) -> list[ListMatch]:
    out = []
    for entry, distance in rows:
        hash_list = entry.hash_list
        if signal_type == PDQ and distance > hash_list.pdq_distance:
            continue
        weak = signal_type == PDQ and (
            weak_query or (entry.quality is not None and entry.quality < pdq.MIN_QUALITY)
        )
        out.append(
            ListMatch(
                signal_type=signal_type,
                list_id=hash_list.pk,
                list_name=hash_list.name,
                value=entry.value,
                distance=distance,
                outcome=_outcome(hash_list, weak=weak),
                entry_id=entry.pk,
            )
        )
    return out


def pdq_matches(value: str, *, quality: int | None = None) -> list[ListMatch]:
    """The PDQ entries in force that ``value`` matches, nearest first. ``quality``: the
    queried hash's PDQ quality (None: unknown, taken as good enough to block)."""
    found = signal_set.current()
    found.sync()
    distances = dict(found.candidates(value))
    if not distances:
        return []
    entries = SignalEntry.objects.in_force().filter(pk__in=distances).select_related("hash_list")
    return pdq_rule(((e, distances[e.pk]) for e in entries), quality=quality)


def pdq_rule(
    rows: Iterable[tuple[SignalEntry, int]], *, quality: int | None = None
) -> list[ListMatch]:
    """The upload rule on PDQ candidates: ``(entry in force, distance)`` rows (each entry with
    its ``hash_list``), nearest first, kept when within their list's PDQ distance. Pure: also
    for entries held in memory (``pdq_evaluation``: a list measured, not stored)."""
    ordered = sorted(rows, key=lambda r: (r[1], r[0].pk))
    weak = quality is not None and quality < pdq.MIN_QUALITY
    return _entry_matches(PDQ, ordered, weak_query=weak)


def exact_rule(entries: Iterable[SignalEntry]) -> list[ListMatch]:
    """The upload rule on MD5 / SHA-256 entries in force that equal a file's digest (each
    with its ``hash_list``). Pure, as ``pdq_rule``."""
    return [m for e in entries for m in _entry_matches(e.signal_type, [(e, 0)], weak_query=False)]


def entry_candidates(*, pdq_hex: str = "", md5: str = "", sha256: str = "") -> dict[int, int]:
    """Entry id -> distance of every active entry that may match a stored image's kept signals
    (``StoredSignal``): PDQ entries within the widest list distance (this process's index,
    synced first), MD5 / SHA-256 entries equal to its digests (one query). Which of them count
    is the rule's (``pdq_rule``, ``exact_rule``) on the rows in force."""
    found: dict[int, int] = {}
    if pdq_hex:
        pdq_set = signal_set.current()
        pdq_set.sync()
        found.update(pdq_set.candidates(pdq_hex))
    query = Q()
    for kind, value in ((MD5, md5), (SHA256, sha256)):
        if value:
            query |= Q(signal_type=kind, value=value)
    if query:
        exact = SignalEntry.objects.active().filter(query).values_list("pk", flat=True)
        found.update(dict.fromkeys(exact, 0))
    return found


def exact_matches(signal_type: str, value: str) -> list[ListMatch]:
    """The MD5 or SHA-256 entries in force equal to ``value``."""
    entries = (
        SignalEntry.objects.in_force()
        .filter(signal_type=signal_type, value=value)
        .select_related("hash_list")
        .order_by("pk")
    )
    return _entry_matches(signal_type, [(e, 0) for e in entries], weak_query=False)


def dhash_matches(value: str) -> list[ListMatch]:
    """The dHash flags ``value`` matches under the site's rule (no pHash: unconfirmed), as the
    banned set decides it: matches block (review when low-information), near misses review,
    shadow lists' matches are SHADOW."""
    rule = MatchRule.from_settings()
    return verdict_matches([banned_set.current().check(Fingerprint.from_hex(value), rule=rule)])


def verdict_matches(verdicts: Iterable[Verdict]) -> list[ListMatch]:
    """The dHash flags behind verdicts of the banned set (a screening's frames), one per flag,
    as ``ListMatch``: matches block (review when low-information), near misses review, shadow
    lists' matches are SHADOW."""
    found = [
        (m, outcome)
        for verdict in verdicts
        for m, outcome in (
            *((m, REVIEW if m.low_information else BLOCK) for m in verdict.matches),
            *((m, REVIEW) for m in verdict.near),
            *((m, SHADOW) for m in verdict.shadow),
        )
    ]
    if not found:
        return []
    flags = {
        f.pk: f
        for f in FlaggedFingerprint.objects.filter(
            pk__in=[m.fingerprint_id for m, _ in found]
        ).select_related("hash_list")
    }
    seen: set[int] = set()
    out = []
    for m, outcome in found:
        if m.fingerprint_id not in flags or m.fingerprint_id in seen:
            continue
        seen.add(m.fingerprint_id)
        flag = flags[m.fingerprint_id]
        out.append(
            ListMatch(
                signal_type=DHASH,
                list_id=flag.hash_list_id,
                list_name=flag.hash_list.name,
                value=flag.hex,
                distance=m.distance,
                outcome=outcome,
                flag_id=m.fingerprint_id,
            )
        )
    return out


def lookup(signal_type: str, value: str, *, quality: int | None = None) -> list[ListMatch]:
    """The matches of one hash (``SignalError`` when the type or hash is bad), nearest first,
    under the rule uploads get: per list on/off, mode and distance."""
    kind, text = normalize(signal_type, value)
    if kind == PDQ:
        return pdq_matches(text, quality=quality)
    if kind == DHASH:
        return dhash_matches(text)
    return exact_matches(kind, text)


def match_hashes(
    *, pdq_hash: pdq.Pdq | None, md5: str | None = None, sha256: str | None = None
) -> tuple[ListMatch, ...]:
    """What an image's signals match in the lists (PDQ with its quality, and the byte hashes
    of the file): the list side of an upload's screening. One match per entry, exact ones
    first (one query for both byte hashes)."""
    found: list[ListMatch] = []
    wanted = [(kind, value) for kind, value in ((MD5, md5), (SHA256, sha256)) if value]
    if wanted:
        query = Q()
        for kind, value in wanted:
            query |= Q(signal_type=kind, value=value)
        entries = (
            SignalEntry.objects.in_force().filter(query).select_related("hash_list").order_by("pk")
        )
        for entry in entries:
            found += _entry_matches(entry.signal_type, [(entry, 0)], weak_query=False)
    if pdq_hash is not None:
        found += pdq_matches(pdq_hash.hex, quality=pdq_hash.quality)
    return tuple(found)


def bytes_hashes(chunks: Iterable[bytes]) -> tuple[str, str]:
    """(MD5, SHA-256) of a file's bytes, read once in chunks."""
    md5, sha256 = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    for chunk in chunks:
        md5.update(chunk)
        sha256.update(chunk)
    return md5.hexdigest(), sha256.hexdigest()


def count_matches(matches: Iterable[ListMatch]) -> None:
    """Add one to ``times_matched`` of each entry matched (the "seen" an exchange asks for)."""
    ids = {m.entry_id for m in matches if m.entry_id is not None}
    if ids:
        SignalEntry.objects.filter(pk__in=ids).update(times_matched=F("times_matched") + 1)


def decision_of(matches: tuple[ListMatch, ...] | list[ListMatch]) -> str | None:
    """BLOCK when a match blocks, REVIEW when one reviews, else None (shadow matches and no
    matches decide nothing)."""
    outcomes = {m.outcome for m in matches}
    return BLOCK if BLOCK in outcomes else REVIEW if REVIEW in outcomes else None


@dataclass(frozen=True)
class Comparison:
    signal_type: str
    distance: int
    match: bool  # within the type's default match distance (PDQ 31, dHash the site's)
    threshold: int


def compare(signal_type: str, a: str, b: str) -> Comparison:
    """The distance between two hashes of one signal type and whether they match under the
    type's default distance (PDQ ``pdq.MATCH_DISTANCE``, dHash ``MODERATION_MAX_DISTANCE``,
    byte hashes: equal). ``SignalError`` when the type or either hash is bad."""
    kind, left = normalize(signal_type, a)
    _, right = normalize(kind, b)
    if kind == PDQ:
        d = pdq.distance(left, right)
        return Comparison(kind, d, d <= pdq.MATCH_DISTANCE, pdq.MATCH_DISTANCE)
    if kind == DHASH:
        threshold = MatchRule.from_settings().max_distance
        d = hamming(int(left, 16), int(right, 16))
        return Comparison(kind, d, d <= threshold, threshold)
    d = 0 if left == right else 1
    return Comparison(kind, d, d == 0, 0)


def index_status() -> dict[str, dict[str, Any]]:
    """Per signal type: how many entries are in force, and what holds them."""
    found = signal_set.current()
    found.sync()
    banned = banned_set.current()
    banned.sync()
    exact = {
        kind: SignalEntry.objects.in_force().filter(signal_type=kind).count()
        for kind in (SignalType.MD5, SignalType.SHA256)
    }
    return {
        PDQ: {
            "size": len(found),
            "index": "multi-index hashing, 16 chunks of 16 bits (exact)",
            "reach": found.radius,
            "last_change_id": found.last_change_id,
            "bytes": found.nbytes(),
        },
        MD5: {"size": exact[SignalType.MD5], "index": "database (exact value)"},
        SHA256: {"size": exact[SignalType.SHA256], "index": "database (exact value)"},
        DHASH: {"size": len(banned), "index": "banned set (variants of flags)"},
    }
