"""The desk: what moderators decide about queued images and the flags behind them.

Ban a queued image (it is flagged, taken down and swept, through ``flagging``), dismiss it (an
allowlist exception for that flag; a flag dismissed too often is suspended), revoke an
exception. Every decision is audited; a decision on an item already decided changes nothing.
"""

from __future__ import annotations

import logging

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from moderation import registry
from moderation.conf import moderation_settings
from moderation.flagging import flag_stored_image, unflag_fingerprint
from moderation.hashing import Fingerprint
from moderation.models import (
    AllowedMatch,
    AuditEvent,
    FlaggedFingerprint,
    ReviewItem,
    SignalEntry,
)

logger = logging.getLogger(__name__)


def _decide(item: ReviewItem, status: str, actor: AbstractBaseUser | None) -> bool:
    updated = ReviewItem.objects.filter(pk=item.pk, status=ReviewItem.Status.PENDING).update(
        status=status, decided_by=actor, decided_at=timezone.now()
    )
    item.refresh_from_db()
    return bool(updated)


def review_ban(*, item: ReviewItem, actor: AbstractBaseUser | None, reason: str = "") -> bool:
    """Ban a queued image: flag it through ``flag_stored_image`` (take-down, sweep, audit).

    Returns False when the item was already decided, or the image has been replaced or
    removed since it was queued (the item is then closed as gone). A low-information image
    raises ``ValidationError`` as in ``flag_image``, and nothing changes.
    """
    if item.status != ReviewItem.Status.PENDING:
        return False
    target = registry.target_by_key(item.target_key)
    instance = target.objects.filter(pk=item.object_id).first()
    near = item.fingerprint.hex if item.fingerprint_id else str(item.signal_entry)
    reason = reason or f"banned from the review queue (near {near})"
    result = None
    if instance is not None:
        result = flag_stored_image(
            instance=instance, reason=reason, actor=actor, expected_name=item.file_name
        )
    if result is None:
        _decide(item, ReviewItem.Status.GONE, actor)
        return False
    return _decide(item, ReviewItem.Status.BANNED, actor)


def review_dismiss(*, item: ReviewItem, actor: AbstractBaseUser | None, reason: str = "") -> bool:
    """Dismiss a queued image: it is innocent. Records an allowlist exception
    (``AllowedMatch``) so the same image is not refused or queued again for that fingerprint,
    and suspends the fingerprint once it has more than ``MODERATION_MAX_DISMISSALS``
    dismissals (a flag that keeps catching innocent images). Returns False if already decided.
    """
    with transaction.atomic():
        if not _decide(item, ReviewItem.Status.DISMISSED, actor):
            return False
        if item.signal_entry_id is not None:
            _dismiss_list_entry_match(item, actor, reason)
            return True
        AllowedMatch.objects.create(
            fingerprint_id=item.fingerprint_id, dhash=item.dhash, review_item=item, created_by=actor
        )
        AuditEvent.objects.create(
            action=AuditEvent.Action.DISMISS,
            actor=actor,
            fingerprint_id=item.fingerprint_id,
            target=item.target,
            distance=item.distance,
            reason=reason or "not a match: allowed for this fingerprint",
        )
        dismissals = (
            AllowedMatch.objects.in_force().filter(fingerprint_id=item.fingerprint_id).count()
        )
        limit = moderation_settings.MAX_DISMISSALS
        if limit and dismissals > limit:
            suspend_fingerprint(flagged=item.fingerprint, dismissals=dismissals)
    return True


def _dismiss_list_entry_match(item: ReviewItem, actor, reason: str) -> None:
    """A queued match of a hash list's entry dismissed: the entry's ``times_dismissed`` grows
    (the "false positive" an exchange wants back). No allowlist exception: those belong to
    flags; an entry that keeps catching innocent images is for its list's owner to retract."""
    SignalEntry.objects.filter(pk=item.signal_entry_id).update(
        times_dismissed=F("times_dismissed") + 1
    )
    AuditEvent.objects.create(
        action=AuditEvent.Action.DISMISS,
        actor=actor,
        target=f"{item.target} ({item.signal_entry})"[:200],
        distance=item.distance,
        reason=reason or "not a match of the list entry",
    )


def allowed_match_revoke(
    *, allowed: AllowedMatch, actor: AbstractBaseUser | None, reason: str = ""
) -> bool:
    """Revoke an allowlist exception: the image is refused or queued again for that
    fingerprint from the next lookup in every process (the allowlist is read from the
    database at each lookup, never cached). The row is kept, marked revoked, and audited.
    Returns False when it was already revoked. A suspended fingerprint stays suspended: that
    is for a moderator to undo by flagging again.
    """
    with transaction.atomic():
        revoked = AllowedMatch.objects.filter(pk=allowed.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now(), revoked_by=actor
        )
        if revoked:
            AuditEvent.objects.create(
                action=AuditEvent.Action.REVOKE,
                actor=actor,
                fingerprint_id=allowed.fingerprint_id,
                target=f"allowed image {Fingerprint.from_signed(allowed.dhash).hex}",
                reason=reason or "allowlist exception revoked",
            )
    allowed.refresh_from_db()
    return bool(revoked)


def suspend_fingerprint(*, flagged: FlaggedFingerprint, dismissals: int) -> bool:
    """Deactivate a fingerprint that moderators keep dismissing matches of, and say why."""
    reason = (
        f"suspended automatically: {dismissals} dismissed matches "
        f"(more than MODERATION_MAX_DISMISSALS={moderation_settings.MAX_DISMISSALS})"
    )
    if not unflag_fingerprint(flagged=flagged, actor=None, reason=reason):
        return False
    FlaggedFingerprint.objects.filter(pk=flagged.pk).update(suspended=True)
    AuditEvent.objects.create(action=AuditEvent.Action.SUSPEND, fingerprint=flagged, reason=reason)
    flagged.refresh_from_db()
    logger.warning("fingerprint #%s %s", flagged.pk, reason)
    return True
