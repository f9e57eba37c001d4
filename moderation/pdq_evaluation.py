"""``evaluate_matching --pdq-list``: the banned half held as a PDQ-only hash list.

Pure, no database: ``evaluation`` runs the split, the edits and the upload path; this module
holds the list and scores what it decides.

The banned half arrives as a partner's list would carry it: the PDQs its flags store (the same
photos, past the same gate; ``"dihedral"``: the 8 flips and quarter turns, as
``export_hashes --banned-set --every-orientation`` writes them; ``"upright"``: the upright one,
as ``export_hashes --banned-set`` does), written as lines of an exchange file and read back
(``hash_formats``), held as entries without a quality (a list carries none) in the index a
process keeps (``pdq_index.PdqIndex``) and matched under the upload rule
(``signals.pdq_rule``: the list's PDQ distance, 31; an upload whose PDQ quality is below 50 is
only queued). The decision is the upload's screening with no dHash flag and that list: what a
site that only imported the list decides. The same lookups also give the decision of the
other PDQ list and of the banned half flagged as dHash flags (``Outcome.decisions``), so the
report says which edits each signal catches.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from moderation import hash_formats, matching, signals
from moderation.banned_index import BannedIndex
from moderation.hashing import CheckFingerprints
from moderation.models import HashList, SignalEntry
from moderation.pdq import MIN_QUALITY, Pdq
from moderation.pdq_index import PdqIndex, distances, parse_hex, parse_hex_many
from moderation.screening import lookup_in, screen

# The decisions a PDQ-list run compares (``Outcome.decisions``): the banned half as dHash flags,
# and as a PDQ-only list of each kind (``PDQ_LISTS``: the flags' orientations it carries).
DHASH = "dhash flags"
PDQ_LISTS = {"pdq 8 orientations": tuple(range(8)), "pdq upright": (0,)}
PDQ_LIST_KINDS = {"dihedral": "pdq 8 orientations", "upright": "pdq upright"}


@dataclass
class PdqList:
    """A PDQ-only hash list held in memory: ``entries`` (unsaved ``SignalEntry`` rows of one
    enforced ``HashList`` at its default PDQ distance) by key, in a ``PdqIndex``."""

    hash_list: HashList
    entries: dict[int, SignalEntry]
    index: PdqIndex
    hashes: np.ndarray  # (n, 32) uint8, in ``entries`` order
    flags: np.ndarray  # int64: the flag each entry came from, in ``entries`` order

    @classmethod
    def of(cls, pdqs: Iterable[tuple[int, int, str]], *, name: str, orientations) -> PdqList:
        """The list a partner would import: each flag's PDQs of the variant numbers in
        ``orientations`` (duplicates once, as ``export_hashes`` writes them), as lines of a
        ``text`` exchange file, read back as an import reads them."""
        hash_list = HashList(pk=1, name=name)
        lines, flags, seen = [], [], set()
        for flag, number, value in pdqs:
            if number in orientations and value not in seen:
                seen.add(value)
                lines.append(hash_formats.format_entry("text", "pdq", value, "evaluation"))
                flags.append(flag)
        entries = {}
        for key, line in enumerate(lines, start=1):
            row = hash_formats.parse_line("text", line)
            entries[key] = SignalEntry(
                pk=key,
                hash_list=hash_list,
                signal_type=row.signal_type,
                value=row.value,
                tags=row.tags,
            )
        hashes = parse_hex_many([e.value for e in entries.values()])
        index = PdqIndex()
        index.build(np.array(list(entries), dtype=np.int64), hashes)
        return cls(hash_list, entries, index, hashes, np.array(flags, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.entries)

    def matches(self, value: Pdq | None) -> tuple[signals.ListMatch, ...]:
        """What an upload's PDQ matches in the list under the upload rule."""
        if value is None or not self.entries:
            return ()
        keys, dist = self.index.query(parse_hex(value.hex), self.hash_list.pdq_distance)
        rows = ((self.entries[k], d) for k, d in zip(keys.tolist(), dist.tolist(), strict=True))
        return tuple(signals.pdq_rule(rows, quality=value.quality))

    def flag_of(self, key: int) -> int:
        """The flag entry ``key`` came from."""
        return int(self.flags[key - 1])

    def nearest(self, value: Pdq | None) -> int | None:
        """Distance to the nearest entry (256 for an empty list; None without a PDQ)."""
        if value is None:
            return None
        if not self.entries:
            return 256
        return int(distances(self.hashes, parse_hex(value.hex)).min())


def lists_of(pdqs: Iterable[tuple[int, int, str]], *, first: str) -> dict[str, PdqList]:
    """Every kind of PDQ list (``PDQ_LISTS``) made from flags' ``(flag, variant, PDQ)``, the
    kind ``first`` ("dihedral" or "upright", ``PDQ_LIST_KINDS``) first: the one that decides."""
    pdqs = list(pdqs)
    lead = PDQ_LIST_KINDS[first]
    order = [lead, *(name for name in PDQ_LISTS if name != lead)]
    return {name: PdqList.of(pdqs, name=name, orientations=PDQ_LISTS[name]) for name in order}


@dataclass(frozen=True)
class Outcome:
    """One uploaded file in a PDQ-list run: the decision of each way of holding the banned
    half (``DHASH`` and ``PDQ_LISTS``' names), the deciding list's, and the upload PDQ's
    distance to that list's nearest entry (256 when it has none) and its quality."""

    decisions: dict[str, str]
    decision: str
    distance: int | None
    quality: int | None


def outcome_of(
    checked: CheckFingerprints,
    rule: matching.MatchRule,
    dhash_decision: str,
    pdq_lists: dict[str, PdqList],
) -> Outcome:
    """An upload's fingerprints screened with no dHash flag against each list, as a site that
    holds only that list screens it (``dhash_decision``: against the flags, for comparison).
    The first list decides."""
    first = checked.frames[0].pdq
    no_flags = screen(checked, lookup=lookup_in(BannedIndex(), rule), allowlist=False)
    decisions = {DHASH: dhash_decision}
    for name, pdq_list in pdq_lists.items():
        decisions[name] = replace(no_flags, lists=pdq_list.matches(first)).decision
    lead = next(iter(pdq_lists))
    return Outcome(
        decisions,
        decisions[lead],
        pdq_lists[lead].nearest(first),
        None if first is None else first.quality,
    )


def comparison(run: Any) -> dict | None:
    """What a PDQ-list run found (``run``: an ``evaluation.Run``; None for a dHash run): per
    edit, what each way of holding the banned half blocks and queues of the banned copies and
    of the innocent files, the PDQ distances of the banned copies to the deciding list (median,
    max), how many of them have a PDQ quality below ``MIN_QUALITY``, and how many one signal
    blocks and the other does not."""
    if run.pdq_list is None:
        return None
    decided_by = PDQ_LIST_KINDS[run.pdq_list]
    names = [DHASH, *PDQ_LISTS]
    edits = [edit for side, edit in run.lookups if side == "banned"]

    def counts(lookups: list, name: str, prefix: str = "") -> dict[str, int]:
        return {
            f"{prefix}blocked": sum(lu.pdq.decisions[name] == matching.BLOCK for lu in lookups),
            f"{prefix}queued": sum(lu.pdq.decisions[name] == matching.REVIEW for lu in lookups),
        }

    per_edit = {}
    for edit in edits:
        banned = run.lookups.get(("banned", edit), [])
        innocent = run.lookups.get(("innocent", edit), [])
        row: dict = {"banned_files": len(banned), "innocent_files": len(innocent)}
        for name in names:
            row[name] = {**counts(banned, name), **counts(innocent, name, "innocent_")}
        dist = [lu.pdq.distance for lu in banned if lu.pdq.distance is not None]
        row["pdq_distance_median"] = float(np.median(dist)) if dist else None
        row["pdq_distance_max"] = max(dist) if dist else None
        row["low_quality"] = sum(
            lu.pdq.quality is not None and lu.pdq.quality < MIN_QUALITY for lu in banned
        )
        both = [(lu.pdq.decisions[DHASH], lu.pdq.decision) for lu in banned]
        row["only_pdq"] = sum(p == matching.BLOCK and d != matching.BLOCK for d, p in both)
        row["only_dhash"] = sum(d == matching.BLOCK and p != matching.BLOCK for d, p in both)
        per_edit[edit] = row
    innocent = [lu for (side, _), lus in run.lookups.items() if side == "innocent" for lu in lus]
    return {
        "decided_by": decided_by,
        "lists": {name: len(held) for name, held in lists_of(run.pdqs, first=run.pdq_list).items()},
        "per_edit": per_edit,
        "innocent_files": len(innocent),
        "innocent": {name: counts(innocent, name) for name in names},
    }
