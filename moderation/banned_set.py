"""The banned set's change log: how every process's index stays in step with the database.

Writers (flagging, unflagging, list policy changes, reindex, imports) take one lock and log each
stored variant they change as a ``BannedSetChange`` row in the same transaction
(``lock_banned_set``, ``log_change``, ``log_list``). Readers (``BannedSet``, one per process)
replay the rows committed since they last looked before every lookup: one primary-key range
query, empty when nothing changed, so a flag or unflag committed anywhere is enforced by the
very next lookup everywhere.

Why the lock: without it two transactions could take change ids 10 and 11 and commit 11 first;
a reader that saw 11 would never look at 10 again. With it, ids are handed out in commit order.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping

from django.db import connection
from django.db.models import Max

from moderation.banned_index import BannedIndex, entry_key, variant_entries
from moderation.hashing import Fingerprint
from moderation.matching import Match, MatchRule
from moderation.models import BannedSetChange, FingerprintVariant, FlaggedFingerprint, HashList

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
    shadow mode, distance on trial) as it is now. The caller holds ``lock_banned_set``."""
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
            shadow=hash_list.shadow,
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


def current() -> BannedSet:
    """This process's banned set (synced on every lookup)."""
    return _banned_set


def find(fingerprint: Fingerprint, max_distance: int | None = None) -> list[Match]:
    """Banned flags ``fingerprint`` matches (default: the site's rule), nearest first; no
    allowlist (a staff lookup). ``max_distance`` overrides the rule's dHash distance."""
    return _banned_set.find(fingerprint, max_distance)


def reset() -> None:
    """Forget this process's index; the next lookup reloads it. For tests and after restores."""
    global _banned_set
    _banned_set = BannedSet()
