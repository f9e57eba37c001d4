"""A set held once per host: mapped from the host's snapshot, kept exact by its change log.

The banned set (dHash flags, ``banned_set``) and the hash lists' PDQ entries (``signal_set``)
are both held this way. Each process maps the newest usable snapshot of the set from
``MODERATION_SNAPSHOT_DIR`` (the files: ``banned_snapshot.SnapshotStore``), replays its change
log after the snapshot's change id into the index's private delta, and replays it again before
every lookup, so a change committed anywhere counts at the next lookup everywhere. With no
usable snapshot the first process of the host loads the set from the tables and writes one (the
others wait for it and map it); past ``MODERATION_SNAPSHOT_DELTA_LIMIT`` changed entries a
process moves to a newer snapshot, written in a background thread by one process of the host.
When no snapshot can be written at all, each process holds its own copy, as before snapshots.

What differs between the sets (their tables, their log, their index's arrays) is a
``SnapshotSource``; the rest is here, once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from django.db import connection

from moderation.banned_snapshot import Snapshot, SnapshotStore
from moderation.conf import moderation_settings

logger = logging.getLogger(__name__)

# A process past its delta limit looks for (or writes) a newer snapshot at most this often.
SNAPSHOT_RETRY_SECONDS = 1.0


def database_identity() -> str:
    """The database a snapshot was made from (a snapshot of another one is never used)."""
    settings = connection.settings_dict
    return (
        f"{connection.vendor}:{settings.get('HOST') or ''}:"
        f"{settings.get('PORT') or ''}/{settings['NAME']}"
    )


class SnapshotSource:
    """What one snapshotted set is: subclassed by each set's module.

    ``label`` names it in logs and command output; ``folder`` is its sub-folder of
    ``MODERATION_SNAPSHOT_DIR`` ("" for the folder itself). An index must have ``frozen``,
    ``pending()``, ``thaw()`` and ``__len__``."""

    label = ""
    folder = ""

    def compatible(self) -> dict[str, Any]:
        """What a snapshot's meta must hold to be used by this code and this database."""
        raise NotImplementedError

    def load_from_database(self) -> tuple[Any, int]:
        """The whole set from its tables, and the change id it is consistent with (read
        before the tables: replaying after it brings the index up to date)."""
        raise NotImplementedError

    def from_state(self, arrays: Mapping[str, np.ndarray]) -> Any:
        """A frozen index around a snapshot's arrays; ValueError or KeyError when they do not
        fit together."""
        raise NotImplementedError

    def state(self, index: Any) -> dict[str, np.ndarray]:
        """The arrays to write for ``index`` (rebuilt first when mapped or changed)."""
        raise NotImplementedError

    def replay(self, index: Any, last: int) -> tuple[Any, int]:
        """Apply every change committed after ``last``: the index (the same one, or a new one
        when it was rebuilt) and the last change applied."""
        raise NotImplementedError

    def change_identity(self, change_id: int) -> list | None:
        """What identifies change ``change_id`` in this database's log (None: no such
        change; [] for 0): a snapshot whose last change differs was made from another log."""
        raise NotImplementedError

    def store(self) -> SnapshotStore | None:
        """This host's snapshots of the set (None: ``MODERATION_SNAPSHOT_DIR`` is empty)."""
        root = moderation_settings.SNAPSHOT_DIR
        if not root:
            return None
        return SnapshotStore(Path(root) / self.folder, self.compatible(), label=self.label)


def usable_snapshot(source: SnapshotSource, store: SnapshotStore) -> Snapshot | None:
    """The newest snapshot that is intact and made from this database's change log: its last
    change is still in the log, unchanged (a restored or other database fails this)."""
    for snapshot in store.newest():
        if source.change_identity(snapshot.change_id) != snapshot.meta.get("last_change"):
            logger.warning(
                "%s snapshot %s ignored: change %s is not in this database's log as it was",
                source.label,
                snapshot.path,
                snapshot.change_id,
            )
            continue
        try:
            source.from_state(snapshot.arrays)  # the arrays fit together
        except (KeyError, ValueError) as e:
            logger.warning("%s snapshot %s ignored: %s", source.label, snapshot.path, e)
            continue
        return snapshot
    return None


def _write(source: SnapshotSource, store: SnapshotStore, index: Any, last: int) -> Snapshot:
    return store.write(
        source.state(index),
        change_id=last,
        last_change=source.change_identity(last),
        entries=len(index),
    )


def rebuild_snapshot(
    source: SnapshotSource,
    store: SnapshotStore,
    *,
    blocking: bool,
    force: bool = False,
    if_missing: bool = False,
) -> tuple[Snapshot | None, str]:
    """Under the builders' lock, write a snapshot of the set as committed now: from the
    current snapshot + the change log after it when there is one (fast), else from the tables
    (``if_missing``: only then). Returns the current snapshot (None: the lock was busy and
    ``blocking`` off) and what was done, in words. OSError when the folder is not writable."""
    with store.lock(blocking=blocking) as held:
        if not held:
            return None, "another process is writing a snapshot"
        base = usable_snapshot(source, store)
        if base is not None and if_missing:
            return base, f"{base.name} was written meanwhile"
        if base is None:
            index, last = source.load_from_database()  # written as loaded: no second build
            written = _write(source, store, index, last)
            return written, f"wrote {written.name} from the database ({len(index)} entries)"
        index, last = source.replay(source.from_state(base.arrays), base.change_id)
        if last == base.change_id and not force:
            return base, f"{base.name} is up to date (change {last})"
        written = _write(source, store, index, last)
        return written, (
            f"wrote {written.name} from {base.name} and the changes after it "
            f"({index.pending()} entries changed, {len(index)} entries)"
        )


class HostSnapshotSet:
    """A process's view of one snapshotted set: its index (mapped or its own), the last change
    applied, and the moves to newer snapshots. Subclasses hold ``_lock`` while calling
    ``_cold_load`` and ``_keep_delta_small`` (from their ``sync``).

    ``snapshots``: start from the host's snapshot (and write one when there is none) rather
    than from the tables; ``background``: write a newer one in a thread, not in the lookup.
    """

    source: SnapshotSource

    def __init__(self, index: Any, *, snapshots: bool = True, background: bool = True) -> None:
        self._lock = threading.Lock()
        self._index = index
        self._last_change_id: int | None = None
        self._use_snapshots = snapshots
        self._background = background
        self._snapshot: str | None = None  # the name of the mapped snapshot
        self._helper: threading.Thread | None = None  # finds or writes a newer one
        self._ready: Snapshot | None = None  # what it found, checked, to map
        self._retry_at = 0.0
        self._cannot_write = False

    def __len__(self) -> int:
        with self._lock:
            return len(self._index)

    @property
    def last_change_id(self) -> int | None:
        """The last change of the log applied here (None: not loaded yet)."""
        return self._last_change_id

    @property
    def snapshot(self) -> str | None:
        """The name of the snapshot this process maps (None: its own copy)."""
        return self._snapshot

    def nbytes(self) -> int:
        with self._lock:
            return self._index.nbytes()

    def _replay(self) -> None:
        self._index, self._last_change_id = self.source.replay(self._index, self._last_change_id)

    def _cold_load(self) -> None:
        source = self.source
        store = source.store() if self._use_snapshots else None
        if store is not None:
            found = usable_snapshot(source, store)
            if found is None:  # the first process of the host writes one (the others wait)
                try:
                    found, _ = rebuild_snapshot(source, store, blocking=True, if_missing=True)
                except OSError as e:
                    logger.warning("%s snapshot not written in %s: %s", source.label, store.root, e)
            if found is not None:
                self._map(found)
                return
        index, last = source.load_from_database()
        self._index, self._last_change_id = source.replay(index, last)
        self._snapshot = None

    def _map(self, snapshot: Snapshot) -> None:
        """Answer from ``snapshot`` (already checked) from now on, with the changes after it."""
        index, last = self.source.replay(
            self.source.from_state(snapshot.arrays), snapshot.change_id
        )
        self._index, self._last_change_id, self._snapshot = index, last, snapshot.name

    def _keep_delta_small(self) -> None:
        if self._index.frozen and self._index.pending() >= moderation_settings.SNAPSHOT_DELTA_LIMIT:
            self._move_to_newer_snapshot()

    def _move_to_newer_snapshot(self) -> None:
        """The private delta is past the limit: map the newer snapshot a helper thread has
        found (or written) and checked, or start one; meanwhile answers come from the mapping
        plus the delta, still exact. No lookup waits for a snapshot to be written or checked."""
        ready, self._ready = self._ready, None
        if ready is not None and ready.name != self._snapshot:
            self._map(ready)
            return
        if self._cannot_write:  # no snapshot can be written here: merge privately, as before
            logger.warning(
                "%s: no newer snapshot can be written; merging in memory", self.source.label
            )
            self._index.thaw()
            self._snapshot = None
            return
        busy = self._helper is not None and self._helper.is_alive()
        if busy or time.monotonic() < self._retry_at:
            return
        self._retry_at = time.monotonic() + SNAPSHOT_RETRY_SECONDS
        if not self._background:
            self._prepare(in_thread=False)
            if self._ready is not None or self._cannot_write:
                self._move_to_newer_snapshot()
            return
        self._helper = threading.Thread(
            target=self._prepare,
            kwargs={"in_thread": True},
            name=f"{self.source.label}-snapshot",
            daemon=True,
        )
        self._helper.start()

    def _prepare(self, *, in_thread: bool) -> None:
        """Find the host's newer snapshot, or write one (unless another process is writing
        one: then the next attempt finds it), checked, in ``self._ready``."""
        source = self.source
        try:
            store = source.store()
            if store is None:
                self._cannot_write = True
                return
            found = None
            if store.current_name() not in (None, self._snapshot):
                found = usable_snapshot(source, store)
            if found is None or found.name == self._snapshot:
                found = rebuild_snapshot(source, store, blocking=False)[0]
            if found is not None and found.name != self._snapshot:
                self._ready = found
        except OSError:
            logger.exception("%s: a newer snapshot cannot be written", source.label)
            self._cannot_write = True
        except Exception:  # e.g. the database went away: the next attempt may succeed
            logger.exception("%s: finding or writing a newer snapshot failed", source.label)
        finally:
            if in_thread:
                connection.close()  # this thread's own connection
