"""The flood guard: a flag that reaches too many people's photos is held before it takes down more.

A mistaken flag of a common picture (a default avatar, a meme template) would otherwise take
down every copy on the site in one sweep. Each automatic takedown (``sweeping.take_down_image``:
sweeps after a flag, full sweeps range by range, rechecks after uploads) first asks
``may_take_down`` with the flag's row locked; a sweep's batch asks ``allows_batch`` before its
first takedown. What a flag has reached is read from the database each time: its takedowns'
audit events (each committed with its takedown) and the users whose uploads it refused, within
``MODERATION_FLOOD_WINDOW_MINUTES``. So the count holds across ranges, workers, retries and
crashes, and at most ``MODERATION_FLOOD_MAX_USERS`` distinct users' photos are taken down
before the flag is held (``hold_flag``): it matches in shadow from the next lookup in every
process (the change log carries it), moderators are alerted on the dashboard and by email (the
review-queue subscribers), and the desk resumes it (the held takedowns run) or drops it.

A hash list's sweep (``list_sweep``: stored photos against entries the list just gained) is
guarded the same way, per list: what the list's entries took down in the window counts, and a
list that would reach one user too many is held (``hold_list``: switched to shadow, audited,
moderators alerted; ``held_lists`` for the dashboard). A moderator who switches it back to
enforce resumes it: that sweep is not guarded, and later imports count only the takedowns of
entries added since; one who drops it leaves it in shadow.

A person refused and also taken down by the same flag counts twice (takedowns are counted by
stored image, refusals by client address): the guard errs towards holding sooner. The other
side of counting refusals: someone with more than the limit of addresses can hold a flag by
uploading its picture from each. They gain little: moderators are alerted at once, and a flag
they resume is never held again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta

from django.db import models, transaction
from django.db.models import Count, Max, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce, Concat
from django.urls import reverse
from django.utils import timezone

from moderation import review
from moderation.banned_set import lock_banned_set, log_change, log_list
from moderation.conf import moderation_settings
from moderation.models import (
    AuditEvent,
    EmailDelivery,
    FlaggedFingerprint,
    HashList,
    RefusedUpload,
)
from moderation.models.banned_set import FLOOD_HELD
from moderation.signal_set import log_signal_list

logger = logging.getLogger(__name__)

RESUMED = "resumed"
DROPPED = "dropped"


def _limit() -> int:
    return moderation_settings.FLOOD_MAX_USERS


def reached(flagged_id: int, *, now=None) -> set[str]:
    """Whom the flag has reached within the window: each stored image it took down (by its
    label) and each client address whose signed-in upload it refused (several accounts on one
    address count once, so sock puppets on one machine cannot switch a flag off)."""
    since = (now or timezone.now()) - timedelta(minutes=moderation_settings.FLOOD_WINDOW_MINUTES)
    taken = (
        AuditEvent.objects.filter(
            action=AuditEvent.Action.TAKEDOWN, fingerprint_id=flagged_id, created_at__gte=since
        )
        .order_by()
        .values_list("target", flat=True)
        .distinct()
    )
    refused = (
        RefusedUpload.objects.banned_matches()
        .filter(nearest_id=flagged_id, created_at__gte=since, user__isnull=False)
        .order_by()
        .values_list("ip", "user_id")
        .distinct()
    )
    return {f"image:{label}" for label in taken} | {
        f"from:{ip}" if ip else f"user:{user}" for ip, user in refused
    }


def _guarded(flagged: FlaggedFingerprint) -> bool:
    """Whether the guard applies: it is on, and no moderator has resumed this flag."""
    return bool(_limit()) and flagged.flood_state != RESUMED


def may_take_down(*, flagged: FlaggedFingerprint, target: str) -> bool:
    """Whether an automatic takedown of ``target`` (a stored image's label) by ``flagged`` may
    go ahead. The caller holds ``flagged``'s row lock (so concurrent takedowns count one after
    the other) and has just read it. False for a flag that is held or no longer active, and for
    a takedown that would reach one user too many: the caller then holds the flag
    (``hold_flag``) once its transaction has ended."""
    if not flagged.active or flagged.held:
        return False
    if not _guarded(flagged):
        return True
    seen = reached(flagged.pk)
    return f"image:{target}" in seen or len(seen) < _limit()


def allows_batch(*, flagged_id: int, targets: Iterable[str]) -> bool:
    """Before a sweep's batch takes anything down for ``flagged_id``: False (and the flag is
    held) when the batch would take it past the limit, so none of the batch is taken down."""
    flagged = FlaggedFingerprint.objects.filter(pk=flagged_id).first()
    if flagged is None or not flagged.active or flagged.held:
        return False
    if not _guarded(flagged):
        return True
    seen = reached(flagged_id)
    total = len(seen | {f"image:{t}" for t in targets})
    if total <= _limit():
        return True
    hold_flag(flagged_id=flagged_id, reached=total)
    return False


def note_refusal(*, flagged_id: int | None) -> bool:
    """After an upload was refused because of ``flagged_id``: hold the flag if its refusals and
    takedowns now reach more than the limit of users. Returns True when it was held now."""
    if flagged_id is None or not _limit():
        return False
    flagged = FlaggedFingerprint.objects.filter(pk=flagged_id).first()
    if flagged is None or not flagged.active or not _guarded(flagged) or flagged.held:
        return False
    total = len(reached(flagged_id))
    if total <= _limit():
        return False
    return hold_flag(flagged_id=flagged_id, reached=total)


def hold_flag(*, flagged_id: int, reached: int) -> bool:
    """Switch a flag to shadow (it blocks and takes down nothing; what it would have done is
    recorded as shadow hits) and alert moderators. Returns False when it was already held,
    resumed by a moderator, or inactive. Logged to the change log in the same commit, so every
    process stops enforcing it at its next lookup."""
    with transaction.atomic():
        lock_banned_set()
        locked = FlaggedFingerprint.objects.select_for_update().get(pk=flagged_id)
        if not locked.active or locked.flood_state in (FLOOD_HELD, RESUMED):
            return False
        locked.flood_state = FLOOD_HELD
        locked.flood_held_at = timezone.now()
        locked.save(update_fields=["flood_state", "flood_held_at"])
        log_change(locked)
        reason = (
            f"held in shadow by the flood guard: it reached {reached} users' photos within "
            f"{moderation_settings.FLOOD_WINDOW_MINUTES} minutes (more than "
            f"MODERATION_FLOOD_MAX_USERS={_limit()}); a moderator resumes or drops it"
        )
        AuditEvent.objects.create(
            action=AuditEvent.Action.FLOOD_HOLD, fingerprint=locked, reason=reason
        )
        _alert(locked, reached)
    logger.warning("fingerprint #%s %s", flagged_id, reason)
    return True


def _alert(flagged: FlaggedFingerprint, count: int) -> None:
    url = moderation_settings.SITE_URL.rstrip("/") + reverse("admin:moderation_dashboard")
    review.email_moderators(
        kind=EmailDelivery.Kind.FLOOD_ALERT,
        subject=f"[moderation] a flag was held: it reached {count} users' photos",
        body=(
            f"A flag reached {count} different users' photos within "
            f"{moderation_settings.FLOOD_WINDOW_MINUTES} minutes, more than the "
            f"{_limit()} allowed, and was switched to shadow before taking down more.\n\n"
            f"Resume it (the held takedowns run) or drop it: {url}\n"
        ),
    )


# --- hash lists' sweeps -----------------------------------------------------------------------


# A list's flood events, the last of which says whether it is held.
LIST_FLOOD_ACTIONS = [
    AuditEvent.Action.LIST_FLOOD_HOLD,
    AuditEvent.Action.LIST_FLOOD_RESUME,
    AuditEvent.Action.LIST_FLOOD_DROP,
]


def list_target(hash_list: HashList) -> str:
    """How audit events name a list (as ``hash_lists`` and ``signal_lists`` do)."""
    return f"hash list {hash_list.name}"[:200]


def list_reached(hash_list: HashList, *, now=None) -> set[str]:
    """The stored images the list's entries took down within the window (by label). After a
    moderator resumed the list, only its entries added since count: the resume accepted what
    the entries it had would take down (its sweep runs unguarded), so they do not hold it again.
    """
    since = (now or timezone.now()) - timedelta(minutes=moderation_settings.FLOOD_WINDOW_MINUTES)
    resumed = AuditEvent.objects.filter(
        action=AuditEvent.Action.LIST_FLOOD_RESUME,
        target=list_target(hash_list),
        created_at__gte=since,
    ).aggregate(last=Max("created_at"))["last"]
    taken = AuditEvent.objects.filter(
        action=AuditEvent.Action.TAKEDOWN,
        signal_entry__hash_list_id=hash_list.pk,
        created_at__gte=since,
    )
    if resumed is not None:
        taken = taken.filter(signal_entry__added_at__gt=resumed)
    labels = taken.order_by().values_list("target", flat=True).distinct()
    return {f"image:{label}" for label in labels}


def may_take_down_for_list(*, hash_list: HashList, target: str, guarded: bool) -> bool:
    """``may_take_down`` for a takedown by one of ``hash_list``'s entries (the caller holds the
    list's row lock and has just read it): False for a list switched off or in shadow, and for
    a takedown that would reach one user too many (the caller then holds the list)."""
    if not hash_list.enabled or hash_list.shadow:
        return False
    if not guarded or not _limit():
        return True
    seen = list_reached(hash_list)
    return f"image:{target}" in seen or len(seen) < _limit()


def list_allows_batch(*, hash_list_id: int, targets: Iterable[str], guarded: bool) -> bool:
    """``allows_batch`` for a list sweep's batch: False (and the list is held) when the batch
    would take the list past the limit, so none of it is taken down."""
    hash_list = HashList.objects.filter(pk=hash_list_id).first()
    if hash_list is None or not hash_list.enabled or hash_list.shadow:
        return False
    if not guarded or not _limit():
        return True
    total = len(list_reached(hash_list) | {f"image:{t}" for t in targets})
    if total <= _limit():
        return True
    hold_list(hash_list_id=hash_list_id, reached=total)
    return False


def hold_list(*, hash_list_id: int, reached: int) -> bool:
    """Switch a list to shadow (its entries block and take down nothing; what they would have
    done is recorded as shadow hits), audited and logged for every process, and alert
    moderators. False when it was off or in shadow already."""
    with transaction.atomic():
        lock_banned_set()
        locked = HashList.objects.select_for_update().get(pk=hash_list_id)
        if not locked.enabled or locked.shadow:
            return False
        locked.mode = HashList.Mode.SHADOW
        locked.save(update_fields=["mode"])
        log_list(locked)
        log_signal_list(locked)
        reason = (
            f"held in shadow by the flood guard: its entries reached {reached} users' photos "
            f"within {moderation_settings.FLOOD_WINDOW_MINUTES} minutes (more than "
            f"MODERATION_FLOOD_MAX_USERS={_limit()}); switching it back to enforce resumes it"
        )
        AuditEvent.objects.create(
            action=AuditEvent.Action.LIST_FLOOD_HOLD, target=list_target(locked), reason=reason
        )
        url = moderation_settings.SITE_URL.rstrip("/") + reverse("admin:moderation_dashboard")
        review.email_moderators(
            kind=EmailDelivery.Kind.FLOOD_ALERT,
            subject=f"[moderation] a hash list was held: it reached {reached} users' photos",
            body=(
                f"The hash list {locked.name} reached {reached} different users' photos "
                f"within {moderation_settings.FLOOD_WINDOW_MINUTES} minutes, more than the "
                f"{_limit()} allowed, and was switched to shadow before taking down more.\n\n"
                f"Resume it (back to enforce: its sweep runs again, unguarded) or drop it "
                f"(it stays in shadow) on the dashboard: {url}\n"
            ),
        )
    logger.warning("hash list #%s %s", hash_list_id, reason)
    return True


def list_was_held(hash_list: HashList) -> bool:
    """Whether the flood guard's hold is the list's last flood event (not resumed since)."""
    last = (
        AuditEvent.objects.filter(
            target=list_target(hash_list),
            action__in=LIST_FLOOD_ACTIONS,
        )
        .order_by("-created_at", "-pk")
        .values_list("action", flat=True)
        .first()
    )
    return last == AuditEvent.Action.LIST_FLOOD_HOLD


def held_lists() -> models.QuerySet:
    """The lists the flood guard holds in shadow, waiting for a moderator (the hold is the last
    of their flood events and they are still on and in shadow), oldest hold first; each with
    ``held_at`` and ``taken_down`` (the photos its entries took down, before the hold)."""
    flood_events = AuditEvent.objects.filter(
        target=Concat(Value("hash list "), OuterRef("name"), output_field=models.CharField()),
        action__in=LIST_FLOOD_ACTIONS,
    ).order_by("-created_at", "-pk")
    takedowns = (
        AuditEvent.objects.filter(
            action=AuditEvent.Action.TAKEDOWN, signal_entry__hash_list_id=OuterRef("pk")
        )
        .order_by()
        .values("signal_entry__hash_list_id")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return (
        HashList.objects.filter(enabled=True, mode=HashList.Mode.SHADOW)
        .annotate(
            last_flood=Subquery(flood_events.values("action")[:1]),
            held_at=Subquery(flood_events.values("created_at")[:1]),
            taken_down=Coalesce(Subquery(takedowns), 0),
        )
        .filter(last_flood=AuditEvent.Action.LIST_FLOOD_HOLD)
        .order_by("held_at", "pk")
    )
