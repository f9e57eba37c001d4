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
files: ``banned_snapshot``; what goes in: ``BannedSource`` below; the rest, shared with the
hash lists' PDQ entries: ``host_snapshot``) and replays the change log after the snapshot's
change id into its frozen index's private delta. Past ``MODERATION_SNAPSHOT_DELTA_LIMIT``
changed entries it moves to a newer snapshot, writing one in a background thread when no
process on the host is doing so. The guarantee above is unchanged: the change log is replayed
before every lookup, whatever the index is made of.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from django.db.models import BooleanField, Case, Max, Q, Value, When

from moderation import db_locks, hashing, host_snapshot
from moderation.banned_index import KEYS_PER_FLAG, BannedIndex, entry_key, variant_entries
from moderation.banned_snapshot import Snapshot, SnapshotStore
from moderation.conf import moderation_settings
from moderation.hashing import Fingerprint
from moderation.host_snapshot import HostSnapshotSet, SnapshotSource, database_identity
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
    db_locks.hold_until_commit(BANNED_SET_LOCK_KEY, "banned-set")


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


class BannedSource(SnapshotSource):
    """The banned set as ``host_snapshot`` keeps it: its tables, its change log, its index."""

    label = "banned-set"
    folder = ""  # the snapshot folder itself (the PDQ entries have a sub-folder)

    def compatible(self) -> dict:
        # A snapshot made for another pipeline, variant list, information threshold or
        # database is not used.
        return {
            "pipeline_version": hashing.PIPELINE_VERSION,
            "keys_per_flag": KEYS_PER_FLAG,
            "min_information": moderation_settings.MIN_INFORMATION,
            "database": database_identity(),
        }

    def load_from_database(self) -> tuple[BannedIndex, int]:
        return load_from_database()

    def from_state(self, arrays) -> BannedIndex:
        return BannedIndex.from_state(arrays)

    def state(self, index: BannedIndex) -> dict:
        if index.pending() or index.frozen:
            fresh = BannedIndex()
            fresh.build_arrays(*index.arrays())
            index = fresh
        return index.state()

    def replay(self, index: BannedIndex, last: int) -> tuple[BannedIndex, int]:
        return index, apply_changes_after(index, last)

    def change_identity(self, change_id: int) -> list | None:
        if change_id == 0:
            return []
        row = (
            BannedSetChange.objects.filter(id=change_id)
            .values_list("fingerprint_id", "variant", "dhash", "active")
            .first()
        )
        return None if row is None else list(row)


SOURCE = BannedSource()


class BannedSet(HostSnapshotSet):
    """The active banned fingerprints of this process, synced from the change log; held once
    per host (``host_snapshot``).

    ``snapshots``: start from the host's snapshot (and write one when there is none) rather
    than from the tables; ``background``: write a newer one in a thread, not in the lookup.
    """

    source = SOURCE

    def __init__(self, *, snapshots: bool = True, background: bool = True) -> None:
        super().__init__(BannedIndex(), snapshots=snapshots, background=background)
        self._list_reach = 0

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
            mapped = self._snapshot
            self._keep_delta_small()
            if self._snapshot != mapped and self._snapshot is not None:
                # A newer snapshot may hold a list's change this process never replayed.
                self._list_reach = max(self._list_reach, enforced_list_reach())

    @property
    def list_reach(self) -> int:
        """At least the largest dHash distance of an enabled, enforced hash list as of the
        last ``sync`` (0: none has its own); see ``MatchRule.for_blocking``."""
        return self._list_reach

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


# --- the host's snapshot -------------------------------------------------------------------


def snapshot_store() -> SnapshotStore | None:
    """This host's snapshots of the banned set (``MODERATION_SNAPSHOT_DIR``; None when set
    empty), as this code and this database need them."""
    return SOURCE.store()


def usable_snapshot(store: SnapshotStore) -> Snapshot | None:
    """The newest snapshot that is intact and made from this database's change log."""
    return host_snapshot.usable_snapshot(SOURCE, store)


def rebuild_snapshot(
    store: SnapshotStore, *, blocking: bool, force: bool = False, if_missing: bool = False
) -> tuple[Snapshot | None, str]:
    """``host_snapshot.rebuild_snapshot`` of the banned set."""
    return host_snapshot.rebuild_snapshot(
        SOURCE, store, blocking=blocking, force=force, if_missing=if_missing
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
