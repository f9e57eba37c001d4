"""The banned set as seen by one process: an in-memory index kept in step with the database.

The database is the source of truth. Each process (web worker, task worker, command) holds a
``BannedSet`` whose index is a cache; before every lookup it replays the ``BannedSetChange``
rows committed since it last looked (one primary-key range query, empty when nothing changed),
so a flag or unflag committed anywhere is enforced by the very next lookup everywhere.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Max

from moderation.fingerprint_index import FingerprintIndex
from moderation.hashing import Fingerprint, to_unsigned
from moderation.models import BannedSetChange, FlaggedFingerprint

# Rows fetched per round trip when loading the whole banned set at start-up.
COLD_LOAD_CHUNK = 50_000


@dataclass(frozen=True, slots=True)
class Match:
    """A banned fingerprint near a looked-up one. Staff-only information."""

    fingerprint_id: int
    distance: int


class BannedSet:
    """The active banned fingerprints of this process, synced from the change log."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._index = FingerprintIndex()
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

    def find(
        self, fingerprint: Fingerprint, max_distance: int | None = None, *, sync: bool = True
    ) -> list[Match]:
        """Active banned fingerprints within ``max_distance`` bits (<=), nearest first.

        ``sync=False`` skips the change-log query; only for a caller that has just called
        ``sync()`` itself and looks up many hashes in a row (the full sweep).
        """
        distance = settings.MODERATION_MAX_DISTANCE if max_distance is None else max_distance
        if sync:
            self.sync()
        with self._lock:
            hits = self._index.query(fingerprint.dhash, distance)
        # Ids and distances only: the index keeps hashes in compact arrays (about 45 bytes per
        # fingerprint, no Python object each); staff tools read the few matched rows themselves.
        return [Match(fid, d) for fid, d in hits]

    def _cold_load(self) -> None:
        # Read the log position first: anything committed while the table loads is replayed
        # afterwards, and replaying a change the snapshot already contains is harmless.
        last = BannedSetChange.objects.aggregate(last=Max("id"))["last"] or 0
        ids: list[int] = []
        hashes: list[int] = []
        # No ordering: the model's default (by date) would make the database sort 1M rows.
        rows = FlaggedFingerprint.objects.active().order_by().values_list("id", "dhash")
        for fid, signed in rows.iterator(chunk_size=COLD_LOAD_CHUNK):
            ids.append(fid)
            hashes.append(to_unsigned(signed))
        self._index = FingerprintIndex()
        self._index.build(ids, hashes)
        self._last_change_id = last
        self._apply_changes_after(last)

    def _apply_changes_after(self, last: int) -> None:
        changes = (
            BannedSetChange.objects.filter(id__gt=last)
            .order_by("id")
            .values_list("id", "fingerprint_id", "dhash", "active")
        )
        for change_id, fid, signed, active in changes:
            if active:
                self._index.add(fid, to_unsigned(signed))
            else:
                self._index.remove(fid)
            self._last_change_id = change_id


_banned_set = BannedSet()


def banned_set() -> BannedSet:
    """This process's banned set (synced on every ``find``)."""
    return _banned_set


def find(fingerprint: Fingerprint, max_distance: int | None = None) -> list[Match]:
    """Active banned fingerprints within ``max_distance`` (default: the setting), nearest first."""
    return _banned_set.find(fingerprint, max_distance)


def reset_banned_set() -> None:
    """Forget this process's index; the next lookup reloads it. For tests and after restores."""
    global _banned_set
    _banned_set = BannedSet()
