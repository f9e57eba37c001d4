"""The banned set's change log: how every process's index stays in step with the database.

Writers (flagging, unflagging, list policy changes, reindex, imports) take one lock and log each
stored variant they change as a ``BannedSetChange`` row in the same transaction
(``lock_banned_set``, ``log_change``, ``log_list``). Readers (``BannedSet``, one per process)
replay the rows committed since they last looked before every lookup: one primary-key range
query, empty when nothing changed, so a flag or unflag committed anywhere is enforced by the
very next lookup everywhere.

Why the lock: without it two transactions could take change ids 10 and 11 and commit 11 first;
a reader that saw 11 would never look at 10 again. With it, ids are handed out in commit order.

A process does not load the whole set from the database: it maps the host's snapshot (the
files: ``banned_snapshot``; what goes in, and whether one fits this database: below) and
replays the change log after the snapshot's change id into its frozen index's private delta. Past
``MODERATION_SNAPSHOT_DELTA_LIMIT`` changed entries it moves to a newer snapshot, writing one
in a background thread when no process on the host is doing so. The guarantee above is
unchanged: the change log is replayed before every lookup, whatever the index is made of.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping

from django.db import connection
from django.db.models import BooleanField, Case, Max, Q, Value, When

from moderation import hashing
from moderation.banned_index import KEYS_PER_FLAG, BannedIndex, entry_key, variant_entries
from moderation.banned_snapshot import Snapshot, SnapshotStore
from moderation.conf import moderation_settings
from moderation.hashing import Fingerprint
from moderation.matching import Match, MatchRule
from moderation.models import BannedSetChange, FingerprintVariant, FlaggedFingerprint, HashList
from moderation.models.banned_set import FLOOD_HELD

# Any constant works: it names the one PostgreSQL advisory lock that serialises writers of
# the banned-set change log.
BANNED_SET_LOCK_KEY = 0x6D6F645F62616E  # "mod_ban"


def lock_banned_set() -> None:
    """Serialise banned-set writers until commit (PostgreSQL; SQLite has one writer anyway).

    The lock lasts until the transaction ends, so it must be taken inside
    ``transaction.atomic()``: in autocommit it would end at once.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("the banned-set lock must be taken inside transaction.atomic()")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [BANNED_SET_LOCK_KEY])


def log_change(
    flagged: FlaggedFingerprint,
    variants: Iterable[FingerprintVariant] | None = None,
    *,
    active: bool | None = None,
) -> None:
    """Log every stored variant of ``flagged`` (its current rows by default) as ``active`` (by
    default: the flag is active and its hash list enabled), with the list's policy (distance,
    shadow mode, distance on trial) as it is now; a flag held by the flood guard is in shadow
    whatever its list's mode. The caller holds ``lock_banned_set``."""
    rows = flagged.variants.all() if variants is None else variants
    hash_list = HashList.objects.get(pk=flagged.hash_list_id)
    BannedSetChange.objects.bulk_create(
        BannedSetChange(
            fingerprint=flagged,
            variant=v.variant,
            dhash=v.dhash,
            phash=v.phash,
            information=flagged.information,
            active=(flagged.active and hash_list.enabled) if active is None else active,
            max_distance=hash_list.max_distance,
            shadow=hash_list.shadow or flagged.held,
            proposed_distance=hash_list.proposed_distance,
        )
        for v in rows
    )


def log_list(hash_list: HashList) -> None:
    """Log every active flag of ``hash_list`` again with the list's policy as saved now."""
    for flagged in FlaggedFingerprint.objects.active().filter(hash_list=hash_list):
        log_change(flagged)


# A process past its delta limit looks for (or writes) a newer snapshot at most this often.
SNAPSHOT_RETRY_SECONDS = 1.0
# Rows fetched per round trip when loading the whole banned set at start-up.
COLD_LOAD_CHUNK = 50_000
_VARIANT_COLUMNS = (
    "flagged_id",
    "variant",
    "dhash",
    "phash",
    "flagged__information",
    "flagged__hash_list__max_distance",
    "shadow",
    "flagged__hash_list__proposed_distance",
)
# An entry matches in shadow when its list is in shadow mode or its flag is held by the flood
# guard (``FlaggedFingerprint.flood_state``).
_IN_SHADOW = Case(
    When(
        Q(flagged__hash_list__mode=HashList.Mode.SHADOW) | Q(flagged__flood_state=FLOOD_HELD),
        then=Value(True),
    ),
    default=Value(False),
    output_field=BooleanField(),
)


def active_variant_rows(flag_ids: Iterable[int] | None = None):
    """``variant_entries`` input for every active flag of an enabled list, or only for
    ``flag_ids``."""
    rows = FingerprintVariant.objects.filter(
        flagged__active=True, flagged__hash_list__enabled=True
    ).order_by()
    if flag_ids is not None:
        rows = rows.filter(flagged_id__in=list(flag_ids))
    return rows.annotate(shadow=_IN_SHADOW).values_list(*_VARIANT_COLUMNS)


logger = logging.getLogger(__name__)


def load_from_database() -> tuple[BannedIndex, int]:
    """The whole active banned set from its tables, and the change id it is consistent with:
    replaying the log after that id brings it up to date (see ``BannedSet._cold_load``)."""
    # Read the log position first: anything committed while the table loads is replayed
    # afterwards, and replaying a change the index already contains is harmless.
    last = BannedSetChange.objects.aggregate(last=Max("id"))["last"] or 0
    index = BannedIndex()
    index.build(variant_entries(active_variant_rows().iterator(chunk_size=COLD_LOAD_CHUNK)))
    return index, last


def enforced_list_reach() -> int:
    """The largest own dHash distance of an enabled, enforced hash list (0: none has one)."""
    reach = HashList.objects.filter(enabled=True, mode=HashList.Mode.ENFORCE).aggregate(
        reach=Max("max_distance")
    )["reach"]
    return reach or 0


def apply_changes_after(index: BannedIndex, last: int, reach: list[int] | None = None) -> int:
    """Replay every change committed after ``last`` into ``index``; the last id applied.
    ``reach``: a one-item list raised to the largest own distance of an enforced list among
    the entries added (a list's new distance is logged with each of its flags)."""
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
            max_distance, shadow, _ = policy
            if reach is not None and max_distance is not None and not shadow:
                reach[0] = max(reach[0], max_distance)
            row = (flag_id, variant, dhash, phash, information, *policy)
            [entry] = variant_entries([row])
            index.add(*entry)
        else:
            index.remove(entry_key(flag_id, variant))
        last = change_id
    return last


class BannedSet:
    """The active banned fingerprints of this process, synced from the change log.

    ``snapshots``: start from the host's snapshot (and write one when there is none) rather
    than from the tables; ``background``: write a newer one in a thread, not in the lookup.
    """

    def __init__(self, *, snapshots: bool = True, background: bool = True) -> None:
        self._lock = threading.Lock()
        self._index = BannedIndex()
        self._last_change_id: int | None = None
        self._use_snapshots = snapshots
        self._background = background
        self._snapshot: str | None = None  # the name of the mapped snapshot
        self._helper: threading.Thread | None = None  # finds or writes a newer one
        self._ready: Snapshot | None = None  # what it found, checked, to map
        self._retry_at = 0.0
        self._cannot_write = False
        self._list_reach = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._index)

    def sync(self) -> None:
        """Bring the index up to date with every change committed so far."""
        with self._lock:
            if self._last_change_id is None:
                self._cold_load()
                self._list_reach = enforced_list_reach()
            else:
                # Raised by a list's larger distance as its flags are logged again; never
                # lowered until the next cold load (a wider lookup is slower, never wrong).
                reach = [self._list_reach]
                self._last_change_id = apply_changes_after(self._index, self._last_change_id, reach)
                self._list_reach = reach[0]
            if self._index.frozen and (
                self._index.pending() >= moderation_settings.SNAPSHOT_DELTA_LIMIT
            ):
                self._move_to_newer_snapshot()

    @property
    def list_reach(self) -> int:
        """At least the largest dHash distance of an enabled, enforced hash list as of the
        last ``sync`` (0: none has its own); see ``MatchRule.for_blocking``."""
        return self._list_reach

    @property
    def last_change_id(self) -> int | None:
        """The last change of the log applied here (None: not loaded yet)."""
        return self._last_change_id

    @property
    def snapshot(self) -> str | None:
        """The name of the snapshot this process maps (None: its own copy)."""
        return self._snapshot

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
        store = snapshot_store() if self._use_snapshots else None
        if store is not None:
            found = usable_snapshot(store)
            if found is None:  # the first process of the host writes one (the others wait)
                try:
                    found, _ = rebuild_snapshot(store, blocking=True, if_missing=True)
                except OSError as e:
                    logger.warning("banned-set snapshot not written in %s: %s", store.root, e)
            if found is not None:
                self._map(found)
                return
        index, last = load_from_database()
        self._index, self._snapshot = index, None
        self._last_change_id = apply_changes_after(index, last)

    def _map(self, snapshot: Snapshot) -> None:
        """Answer from ``snapshot`` (already checked) from now on, with the changes after it."""
        index = BannedIndex.from_state(snapshot.arrays)
        last = apply_changes_after(index, snapshot.change_id)
        self._index, self._last_change_id, self._snapshot = index, last, snapshot.name

    def _move_to_newer_snapshot(self) -> None:
        """The private delta is past the limit: map the newer snapshot a helper thread has
        found (or written) and checked, or start one; meanwhile answers come from the mapping
        plus the delta, still exact. No lookup waits for a snapshot to be written or checked."""
        ready, self._ready = self._ready, None
        if ready is not None and ready.name != self._snapshot:
            self._map(ready)
            return
        if self._cannot_write:  # no snapshot can be written here: merge privately, as before
            logger.warning("banned set: no newer snapshot can be written; merging in memory")
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
            target=self._prepare, kwargs={"in_thread": True}, name="banned-snapshot", daemon=True
        )
        self._helper.start()

    def _prepare(self, *, in_thread: bool) -> None:
        """Find the host's newer snapshot, or write one (unless another process is writing
        one: then the next attempt finds it), checked, in ``self._ready``."""
        try:
            store = snapshot_store()
            if store is None:
                self._cannot_write = True
                return
            found = None
            if store.current_name() not in (None, self._snapshot):
                found = usable_snapshot(store)
            if found is None or found.name == self._snapshot:
                found = rebuild_snapshot(store, blocking=False)[0]
            if found is not None and found.name != self._snapshot:
                self._ready = found
        except OSError:
            logger.exception("banned set: a newer snapshot cannot be written")
            self._cannot_write = True
        except Exception:  # e.g. the database went away: the next attempt may succeed
            logger.exception("banned set: finding or writing a newer snapshot failed")
        finally:
            if in_thread:
                connection.close()  # this thread's own connection


# --- the host's snapshot -------------------------------------------------------------------


def snapshot_store() -> SnapshotStore | None:
    """This host's snapshots (``MODERATION_SNAPSHOT_DIR``; None when set empty), as this code
    and this database need them: a snapshot made for another pipeline, variant list,
    information threshold or database is not used."""
    root = moderation_settings.SNAPSHOT_DIR
    if not root:
        return None
    settings = connection.settings_dict
    return SnapshotStore(
        root,
        {
            "pipeline_version": hashing.PIPELINE_VERSION,
            "keys_per_flag": KEYS_PER_FLAG,
            "min_information": moderation_settings.MIN_INFORMATION,
            "database": f"{connection.vendor}:{settings.get('HOST') or ''}:"
            f"{settings.get('PORT') or ''}/{settings['NAME']}",
        },
    )


def _change_identity(change_id: int) -> list | None:
    """What identifies change ``change_id`` in this database's log (None: no such change)."""
    if change_id == 0:
        return []
    row = (
        BannedSetChange.objects.filter(id=change_id)
        .values_list("fingerprint_id", "variant", "dhash", "active")
        .first()
    )
    return None if row is None else list(row)


def usable_snapshot(store: SnapshotStore) -> Snapshot | None:
    """The newest snapshot that is intact and made from this database's change log: its last
    change is still in the log, unchanged (a restored or other database fails this)."""
    for snapshot in store.newest():
        if _change_identity(snapshot.change_id) != snapshot.meta.get("last_change"):
            logger.warning(
                "banned-set snapshot %s ignored: change %s is not in this database's log as it was",
                snapshot.path,
                snapshot.change_id,
            )
            continue
        try:
            BannedIndex.from_state(snapshot.arrays)  # the arrays fit together
        except (KeyError, ValueError) as e:
            logger.warning("banned-set snapshot %s ignored: %s", snapshot.path, e)
            continue
        return snapshot
    return None


def _write(store: SnapshotStore, index: BannedIndex, last: int) -> Snapshot:
    """Write ``index`` (consistent with change ``last``) as the host's snapshot; the caller
    holds the builders' lock. A mapped or changed index is first rebuilt from its arrays."""
    if index.pending() or index.frozen:
        fresh = BannedIndex()
        fresh.build_arrays(*index.arrays())
        index = fresh
    return store.write(
        index.state(), change_id=last, last_change=_change_identity(last), entries=len(index)
    )


def rebuild_snapshot(
    store: SnapshotStore, *, blocking: bool, force: bool = False, if_missing: bool = False
) -> tuple[Snapshot | None, str]:
    """Under the builders' lock, write a snapshot of the banned set as committed now: from the
    current snapshot + the change log after it when there is one (fast), else from the tables
    (``if_missing``: only then). Returns the current snapshot (None: the lock was busy and
    ``blocking`` off) and what was done, in words. OSError when the folder is not writable."""
    with store.lock(blocking=blocking) as held:
        if not held:
            return None, "another process is writing a snapshot"
        base = usable_snapshot(store)
        if base is not None and if_missing:
            return base, f"{base.name} was written meanwhile"
        if base is None:
            index, last = load_from_database()  # written as loaded: no second build
            written = _write(store, index, last)
            return written, f"wrote {written.name} from the database ({len(index)} entries)"
        index = BannedIndex.from_state(base.arrays)
        last = apply_changes_after(index, base.change_id)
        if last == base.change_id and not force:
            return base, f"{base.name} is up to date (change {last})"
        written = _write(store, index, last)
        return written, (
            f"wrote {written.name} from {base.name} and the changes after it "
            f"({index.pending()} entries changed, {len(index)} entries)"
        )


_banned_set = BannedSet()


def current() -> BannedSet:
    """This process's banned set (synced on every lookup)."""
    return _banned_set


def find(fingerprint: Fingerprint, max_distance: int | None = None) -> list[Match]:
    """Banned flags ``fingerprint`` matches (default: the site's rule), nearest first; no
    allowlist (a staff lookup). ``max_distance`` overrides the rule's dHash distance."""
    return _banned_set.find(fingerprint, max_distance)


def reset(*, snapshots: bool = False) -> None:
    """Forget this process's index; the next lookup reloads it, from the tables (tests change
    rows behind the change log's back; after a restore the snapshot is stale too), or from the
    host's snapshot with ``snapshots=True``."""
    global _banned_set
    _banned_set = BannedSet(snapshots=snapshots)
