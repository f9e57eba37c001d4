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

The index is held once per host, like the banned set: each process maps the host's snapshot of
it (``MODERATION_SNAPSHOT_DIR/pdq/``, written by ``manage.py banned_snapshot`` or by the first
process that finds none) and replays the log after the snapshot's change id into its own small
delta; the machinery is ``host_snapshot``'s, shared with the banned set.

MD5 and SHA-256 entries need no memory: they are looked up by value in the database (one
indexed query), always current.
"""

from __future__ import annotations

import numpy as np
from django.db import connection
from django.db.models import Max

from moderation import host_snapshot
from moderation.banned_snapshot import Snapshot, SnapshotStore
from moderation.host_snapshot import HostSnapshotSet, SnapshotSource, database_identity
from moderation.models import HashList, SignalChange, SignalEntry, SignalImport, SignalType
from moderation.pdq import MATCH_DISTANCE
from moderation.pdq_index import PdqIndex, parse_hex, parse_hex_many

# Bump when the meaning of the index's arrays changes: older snapshots are then ignored.
PDQ_INDEX_VERSION = 1
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


def load_from_database() -> tuple[PdqIndex, int]:
    """Every active PDQ entry from the table, and the change id the index is consistent with
    (read first: whatever commits while the table loads is replayed after)."""
    last = SignalChange.objects.aggregate(last=Max("id"))["last"] or 0
    keys, hashes = _pdq_rows(SignalEntry.objects.active().filter(signal_type=SignalType.PDQ))
    index = PdqIndex()
    index.build(keys, hashes)
    return index, last


def apply_changes_after(index: PdqIndex, last: int) -> tuple[PdqIndex, int]:
    """Replay every change committed after ``last``: the index (a new one when a large import
    rebuilt a private one) and the last change applied."""
    changes = (
        SignalChange.objects.filter(id__gt=last)
        .order_by("id")
        .values_list("id", "entry_id", "signal_import_id")
    )
    for change_id, entry_id, import_id in changes:
        if entry_id is not None:
            row = (
                SignalEntry.objects.filter(pk=entry_id)
                .values_list("signal_type", "value", "active")
                .first()
            )
            if row is not None and row[0] == SignalType.PDQ:
                if row[2]:
                    index.add(entry_id, parse_hex(row[1]))
                else:
                    index.remove(entry_id)
        elif import_id is not None:
            index = _apply_import(index, import_id)
        last = change_id
    return index, last


def _apply_import(index: PdqIndex, import_id: int) -> PdqIndex:
    pdq = SignalEntry.objects.filter(signal_type=SignalType.PDQ)
    for pk in pdq.filter(retracted_by_id=import_id).values_list("pk", flat=True).iterator():
        index.remove(pk)
    keys, hashes = _pdq_rows(pdq.filter(imported_by_id=import_id, active=True))
    if len(keys) <= REBUILD_AT:
        for key, hash_bytes in zip(keys.tolist(), hashes, strict=True):
            index.add(key, hash_bytes)
    elif index.frozen:
        # Mapped: the entries wait in the delta (scanned), and past the delta limit the
        # process moves to a newer snapshot; nothing mapped is copied here.
        index.add_many(keys, hashes)
    else:
        old_keys, old_hashes = index.entries()
        keep = ~np.isin(old_keys, keys)
        index = PdqIndex()
        index.build(np.concatenate([old_keys[keep], keys]), np.vstack([old_hashes[keep], hashes]))
    return index


class PdqSource(SnapshotSource):
    """The PDQ entries as ``host_snapshot`` keeps them: the entries' table, ``SignalChange``,
    the ``PdqIndex`` arrays (``MODERATION_SNAPSHOT_DIR/pdq/``)."""

    label = "PDQ"
    folder = "pdq"

    def compatible(self) -> dict:
        return {"pdq_index": PDQ_INDEX_VERSION, "database": database_identity()}

    def load_from_database(self) -> tuple[PdqIndex, int]:
        return load_from_database()

    def from_state(self, arrays) -> PdqIndex:
        return PdqIndex.from_state(arrays)

    def state(self, index: PdqIndex) -> dict:
        if index.pending() or index.frozen:
            fresh = PdqIndex()
            fresh.build(*index.entries())
            index = fresh
        return index.state()

    def replay(self, index: PdqIndex, last: int) -> tuple[PdqIndex, int]:
        return apply_changes_after(index, last)

    def change_identity(self, change_id: int) -> list | None:
        if change_id == 0:
            return []
        row = (
            SignalChange.objects.filter(id=change_id)
            .values_list("hash_list_id", "entry_id", "signal_import_id")
            .first()
        )
        return None if row is None else list(row)


SOURCE = PdqSource()


class SignalSet(HostSnapshotSet):
    """This process's PDQ entries, synced from the change log before every lookup; held once
    per host (``host_snapshot``).

    ``snapshots``: start from the host's snapshot (and write one when there is none) rather
    than from the table; ``background``: write a newer one in a thread, not in the lookup.
    """

    source = SOURCE

    def __init__(self, *, snapshots: bool = True, background: bool = True) -> None:
        super().__init__(PdqIndex(), snapshots=snapshots, background=background)
        self._radius = MATCH_DISTANCE

    @property
    def radius(self) -> int:
        return self._radius

    def sync(self) -> None:
        with self._lock:
            before = self._last_change_id
            if before is None:
                self._cold_load()
            else:
                self._replay()
            self._keep_delta_small()
            # Any change may be a list's (also one a newer snapshot brought in): the reach is
            # read again (one small aggregate).
            if self._last_change_id != before:
                self._radius = widest_distance()

    def candidates(self, value: str, radius: int | None = None) -> list[tuple[int, int]]:
        """(entry id, distance) of every PDQ entry within ``radius`` bits of ``value`` (default:
        the widest list distance), nearest first. The caller has synced."""
        radius = self._radius if radius is None else radius
        with self._lock:
            keys, dist = self._index.query(parse_hex(value), radius)
        return list(zip(keys.tolist(), dist.tolist(), strict=True))


# --- the host's snapshot -------------------------------------------------------------------


def snapshot_store() -> SnapshotStore | None:
    """This host's snapshots of the PDQ entries (None: ``MODERATION_SNAPSHOT_DIR`` is empty)."""
    return SOURCE.store()


def rebuild_snapshot(
    store: SnapshotStore, *, blocking: bool, force: bool = False, if_missing: bool = False
) -> tuple[Snapshot | None, str]:
    """``host_snapshot.rebuild_snapshot`` of the PDQ entries."""
    return host_snapshot.rebuild_snapshot(
        SOURCE, store, blocking=blocking, force=force, if_missing=if_missing
    )


_signal_set = SignalSet()


def current() -> SignalSet:
    """This process's PDQ entries (sync before looking up)."""
    return _signal_set


def reset(*, snapshots: bool = False) -> None:
    """Forget this process's index; the next lookup reloads it, from the table (tests change
    rows behind the change log's back), or from the host's snapshot with ``snapshots=True``."""
    global _signal_set
    _signal_set = SignalSet(snapshots=snapshots)
