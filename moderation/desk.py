"""The desk: what moderators decide about queued images and the flags behind them.

Ban a queued image (it is flagged, taken down and swept, through ``flagging``), dismiss it (an
allowlist exception for that flag; a flag dismissed too often is suspended), revoke an
exception. Every decision is audited; a decision on an item already decided changes nothing.
A flag the flood guard held is resumed or dropped here too, and a flag whose record is poor
is kept after a re-review (``precision`` says which).
"""

from __future__ import annotations

import logging

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from moderation import flood_guard, precision, registry, sweeping
from moderation.banned_set import lock_banned_set, log_change
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
    dismissals (a flag that keeps catching innocent images). A held upload (its uploader is
    escalated as a prober) is only released: no exception, no dismissal counted. Returns
    False if already decided.
    """
    with transaction.atomic():
        if not _decide(item, ReviewItem.Status.DISMISSED, actor):
            return False
        if item.signal_entry_id is not None:
            _dismiss_list_entry_match(item, actor, reason)
            return True
        if item.found_by == ReviewItem.FoundBy.HELD:
            # Held because of who uploaded it, not for a match: released, nothing allowed, and
            # the flag it was filed under is not counted as dismissed.
            AuditEvent.objects.create(
                action=AuditEvent.Action.DISMISS,
                actor=actor,
                fingerprint_id=item.fingerprint_id,
                target=item.target,
                distance=item.distance,
                reason=reason or "held upload of an escalated uploader released",
            )
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


def same_flag_pending(item: ReviewItem):
    """The other pending near misses of ``item``'s flag, or of its hash list entry (not held
    uploads), oldest first."""
    if item.fingerprint_id is not None:
        same = {"fingerprint_id": item.fingerprint_id}
    elif item.signal_entry_id is not None:
        same = {"signal_entry_id": item.signal_entry_id}
    else:
        return ReviewItem.objects.none()
    return (
        ReviewItem.objects.pending()
        .filter(**same)
        .exclude(pk=item.pk)
        .exclude(found_by=ReviewItem.FoundBy.HELD)
    )


def review_group(
    *, item: ReviewItem, decision: str, actor: AbstractBaseUser | None, reason: str = ""
) -> int:
    """One decision (``ban`` or ``dismiss``) for ``item`` and every other pending near miss of
    the same flag: each is decided (and audited) as if decided alone, with the one ``reason``.
    Returns how many were decided now. A ban that cannot be made (a low-information image)
    stops nothing else."""
    decide = review_ban if decision == "ban" else review_dismiss
    done = 0
    for each in [item, *same_flag_pending(item)]:
        try:
            done += decide(item=each, actor=actor, reason=reason)
        except ValidationError as e:
            logger.warning("review item #%s not banned: %s", each.pk, " ".join(e.messages))
    return done


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


def flag_rereview(
    *, flagged: FlaggedFingerprint, actor: AbstractBaseUser | None, reason: str
) -> bool:
    """Mark a flag re-reviewed and kept: a moderator read its record (``precision``) and
    decided it stays as it is. It leaves the "Flags to re-review" until a decision about one of
    its matches is judged after now. Audited (``rereview``) with the reason and the record as it
    stood. Unflagging it instead is ``unflag_fingerprint``'s (the admin's Unflag action).

    ``reason`` is required (``ValidationError`` otherwise, nothing written). Returns False for
    a flag that is no longer active (there is nothing to keep)."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError("Say why the flag stays.", code="no_reason")
    with transaction.atomic():
        kept = FlaggedFingerprint.objects.filter(pk=flagged.pk, active=True).update(
            rereviewed_at=timezone.now(), rereviewed_by=actor
        )
        if kept:
            record = precision.record_of(flagged)
            AuditEvent.objects.create(
                action=AuditEvent.Action.REREVIEW,
                actor=actor,
                fingerprint_id=flagged.pk,
                reason=f"{reason} (record: {record.summary})",
            )
    flagged.refresh_from_db()
    return bool(kept)


def flood_resume(*, flagged: FlaggedFingerprint, actor: AbstractBaseUser | None) -> bool:
    """Resume a flag the flood guard held: the moderator confirms it is right. It is enforced
    again from the next lookup everywhere, the guard no longer applies to it, and its sweep
    runs again once this commits, taking down what was held (and what was uploaded meanwhile).
    Returns False when it was not held (already decided, or never held)."""
    with transaction.atomic():
        lock_banned_set()
        locked = FlaggedFingerprint.objects.select_for_update().get(pk=flagged.pk)
        if not locked.active or not locked.held:
            return False
        locked.flood_state = flood_guard.RESUMED
        locked.save(update_fields=["flood_state"])
        log_change(locked)
        AuditEvent.objects.create(
            action=AuditEvent.Action.FLOOD_RESUME,
            actor=actor,
            fingerprint=locked,
            reason="confirmed by a moderator: the held takedowns run",
        )
        sweeping.sweep_after_commit([locked.pk])
    flagged.refresh_from_db()
    return True


def flood_drop(
    *, flagged: FlaggedFingerprint, actor: AbstractBaseUser | None, reason: str = ""
) -> bool:
    """Drop a flag the flood guard held: it was a mistake. It is unflagged (audited as usual);
    photos it took down before it was held stay down, with their evidence, for review.
    Returns False when it was not held."""
    with transaction.atomic():
        locked = FlaggedFingerprint.objects.select_for_update().get(pk=flagged.pk)
        if not locked.active or not locked.held:
            return False
        reason = reason or "dropped by a moderator after the flood guard held it"
        unflag_fingerprint(flagged=locked, actor=actor, reason=reason)
        FlaggedFingerprint.objects.filter(pk=locked.pk).update(flood_state=flood_guard.DROPPED)
        AuditEvent.objects.create(
            action=AuditEvent.Action.FLOOD_DROP, actor=actor, fingerprint=locked, reason=reason
        )
    flagged.refresh_from_db()
    return True
