"""The PDQ entries of the hash lists, as each process holds them, and their change log.

Writers (an entry added or retracted, an import applied, a list's policy changed) log a
``SignalChange`` row under the banned-set writers' lock (``banned_set.lock_banned_set``), in
the same transaction as the change, so change ids follow commit order. Each process's
``SignalSet`` replays the rows after the last one it saw before every lookup, exactly as
``banned_set.BannedSet`` does for dHash flags: an import committed anywhere is matched by the
next lookup everywhere.

The index (``pdq_index.PdqIndex``, keyed by entry id) only finds candidates within the widest
PDQ distance of any list. Which of them count (entry still active, list switched on, within
that list's own distance, enforce or shadow) is read from the entries' rows for the few
candidates found, so a retraction or a list switched off never depends on the replay.

MD5 and SHA-256 entries need no memory: they are looked up by value in the database (one
indexed query), always current.
"""

from __future__ import annotations

import threading

import numpy as np
from django.db import connection
from django.db.models import Max

from moderation.models import HashList, SignalChange, SignalEntry, SignalImport, SignalType
from moderation.pdq import MATCH_DISTANCE
from moderation.pdq_index import PdqIndex, parse_hex, parse_hex_many

# Rows fetched per round trip when loading every PDQ entry at start-up.
LOAD_CHUNK = 100_000
# An applied import with more PDQ entries than this rebuilds the index instead of adding them
# one by one to its delta.
REBUILD_AT = 5_000


def log_entry(entry: SignalEntry) -> None:
    """Log that ``entry`` was added or retracted. The caller holds ``lock_banned_set``."""
    SignalChange.objects.create(hash_list_id=entry.hash_list_id, entry=entry)


def log_import(signal_import: SignalImport) -> None:
    """Log that ``signal_import`` was applied (its added and retracted entries)."""
    SignalChange.objects.create(
        hash_list_id=signal_import.hash_list_id, signal_import=signal_import
    )


def log_signal_list(hash_list: HashList) -> None:
    """Log that ``hash_list``'s policy changed (its PDQ distance decides the index's reach)."""
    SignalChange.objects.create(hash_list=hash_list)


def _pdq_rows(queryset):
    """(ids, hashes) of the entries in ``queryset``: one query, fetched in chunks of
    ``LOAD_CHUNK`` rows by the driver, without a model object or dict per row (a million
    entries load in about 2 s)."""
    sql, params = queryset.values_list("pk", "value").order_by().query.sql_with_params()
    ids, values = [], []
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(LOAD_CHUNK):
            ids.extend(r[0] for r in rows)
            values.extend(r[1] for r in rows)
    return np.array(ids, dtype=np.int64), parse_hex_many(values)


def widest_distance() -> int:
    """The widest PDQ distance of any list that is switched on (what the index must reach)."""
    found = HashList.objects.filter(enabled=True).aggregate(widest=Max("pdq_distance"))["widest"]
    return MATCH_DISTANCE if found is None else found


class SignalSet:
    """This process's PDQ entries, synced from the change log before every lookup."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._index = PdqIndex()
        self._last: int | None = None
        self._radius = MATCH_DISTANCE

    def __len__(self) -> int:
        with self._lock:
            return len(self._index)

    @property
    def last_change_id(self) -> int | None:
        return self._last

    @property
    def radius(self) -> int:
        return self._radius

    def nbytes(self) -> int:
        with self._lock:
            return self._index.nbytes()

    def sync(self) -> None:
        with self._lock:
            if self._last is None:
                self._cold_load()
            else:
                self._replay()

    def _cold_load(self) -> None:
        # The log position first: whatever commits while the table loads is replayed after.
        last = SignalChange.objects.aggregate(last=Max("id"))["last"] or 0
        keys, hashes = _pdq_rows(SignalEntry.objects.active().filter(signal_type=SignalType.PDQ))
        index = PdqIndex()
        index.build(keys, hashes)
        self._index, self._last, self._radius = index, last, widest_distance()
        self._replay()

    def _replay(self) -> None:
        changes = list(
            SignalChange.objects.filter(id__gt=self._last)
            .order_by("id")
            .values_list("id", "entry_id", "signal_import_id")
        )
        if not changes:
            return
        for change_id, entry_id, import_id in changes:
            if entry_id is not None:
                row = (
                    SignalEntry.objects.filter(pk=entry_id)
                    .values_list("signal_type", "value", "active")
                    .first()
                )
                if row is not None and row[0] == SignalType.PDQ:
                    if row[2]:
                        self._index.add(entry_id, parse_hex(row[1]))
                    else:
                        self._index.remove(entry_id)
            elif import_id is not None:
                self._apply_import(import_id)
            self._last = change_id
        # Any change may be a list's: the reach is read again (one small aggregate).
        self._radius = widest_distance()

    def _apply_import(self, import_id: int) -> None:
        pdq = SignalEntry.objects.filter(signal_type=SignalType.PDQ)
        for pk in pdq.filter(retracted_by_id=import_id).values_list("pk", flat=True).iterator():
            self._index.remove(pk)
        keys, hashes = _pdq_rows(pdq.filter(imported_by_id=import_id, active=True))
        if len(keys) > REBUILD_AT:
            old_keys, old_hashes = self._index.entries()
            keep = ~np.isin(old_keys, keys)
            index = PdqIndex()
            index.build(
                np.concatenate([old_keys[keep], keys]), np.vstack([old_hashes[keep], hashes])
            )
            self._index = index
        else:
            for key, hash_bytes in zip(keys.tolist(), hashes, strict=True):
                self._index.add(key, hash_bytes)

    def candidates(self, value: str, radius: int | None = None) -> list[tuple[int, int]]:
        """(entry id, distance) of every PDQ entry within ``radius`` bits of ``value`` (default:
        the widest list distance), nearest first. The caller has synced."""
        radius = self._radius if radius is None else radius
        with self._lock:
            keys, dist = self._index.query(parse_hex(value), radius)
        return list(zip(keys.tolist(), dist.tolist(), strict=True))


_signal_set = SignalSet()


def current() -> SignalSet:
    """This process's PDQ entries (sync before looking up)."""
    return _signal_set


def reset() -> None:
    """Forget this process's index: the next lookup reloads it (tests)."""
    global _signal_set
    _signal_set = SignalSet()
