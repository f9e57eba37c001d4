"""Appeals: a person contests a notice once; a moderator upholds or overturns it, with a reason.

An appeal is filed against one of the person's own notices (``file_appeal``), at most one per
notice, and waits in the moderators' queue of appeals with the evidence side by side. The
decision (``decide_appeal``) is final and audited, and the person is told it (on the page,
and by email with a verified address). An overturn is a wrong decision of a flag: the image
is allowed for that flag (an ``AllowedMatch``, as a dismissed review item is), counts against
the flag's precision (its record, ``moderation.precision``) and towards its suspension
(``MODERATION_MAX_DISMISSALS``, as dismissals do), and a taken-down photo still kept is put
back on its profile. A refused upload kept no file (only a thumbnail in its row, for
moderators): its owner is told to upload it again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.urls import reverse
from django.utils import timezone

from moderation import desk, notices, restoring, review
from moderation.conf import moderation_settings
from moderation.models import (
    APPEAL_MAX_CHARS,
    AllowedMatch,
    Appeal,
    AuditEvent,
    EmailDelivery,
    Notice,
    SignalEntry,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AppealDecision:
    """What deciding an appeal did: nothing (``decided`` False: it was decided already), or
    upheld / overturned, and whether the photo went back on the profile."""

    decided: bool
    overturned: bool = False
    restored: bool = False


def _clean_text(text: str) -> str:
    text = (text or "").strip()
    if not text:
        raise ValidationError("Say in a few words why the decision is wrong.", code="empty")
    if len(text) > APPEAL_MAX_CHARS:
        raise ValidationError(
            "An appeal is at most %(limit)d characters.",
            code="too_long",
            params={"limit": APPEAL_MAX_CHARS},
        )
    return text


def file_appeal(*, notice: Notice, user: AbstractBaseUser, text: str) -> Appeal:
    """File ``user``'s appeal against their own ``notice``.

    Raises ``PermissionDenied`` for someone else's notice, and ``ValidationError`` for an empty
    or too long text (``empty``, ``too_long``) or a notice already appealed
    (``already_appealed``); nothing is written then. The notice's row is locked while the
    appeal is written, and the one-appeal-per-notice constraint settles a race.
    """
    if notice.user_id != user.pk:
        raise PermissionDenied("not your notice")
    text = _clean_text(text)
    already = ValidationError("You have already appealed this decision.", code="already_appealed")
    try:
        with transaction.atomic():
            Notice.objects.select_for_update().get(pk=notice.pk)
            if Appeal.objects.filter(notice=notice).exists():
                raise already
            appeal = Appeal.objects.create(notice=notice, text=text, created_at=timezone.now())
            AuditEvent.objects.create(
                action=AuditEvent.Action.APPEAL,
                actor=user,
                fingerprint_id=notice.fingerprint_id,
                target=_subject(notice),
                reason=f"appeal #{appeal.pk} of a {notice.get_kind_display().lower()}",
            )
    except IntegrityError as e:  # filed a moment ago by another request
        raise already from e
    return appeal


def decide_appeal(
    *, appeal: Appeal, actor: AbstractBaseUser | None, overturn: bool, reason: str
) -> AppealDecision:
    """Uphold or overturn an open appeal, with ``reason`` (shown to the person; required).

    Overturn: the picture is allowed for the notice's flag, a taken-down photo still kept is
    restored to its profile if the profile has no other photo now (``restoring``), and the
    flag is suspended if it now has too many allowed matches. Either way the decision is
    audited and the person is emailed. An appeal decided already changes nothing."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError("Give a reason: the person is told it.", code="no_reason")
    notice = appeal.notice
    restored = False
    with transaction.atomic():
        status = Appeal.Status.OVERTURNED if overturn else Appeal.Status.UPHELD
        claimed = Appeal.objects.filter(pk=appeal.pk, status=Appeal.Status.OPEN).update(
            status=status, decided_by=actor, decided_at=timezone.now(), decision_reason=reason
        )
        if not claimed:
            appeal.refresh_from_db()
            return AppealDecision(decided=False)
        AuditEvent.objects.create(
            action=AuditEvent.Action.OVERTURN if overturn else AuditEvent.Action.UPHOLD,
            actor=actor,
            fingerprint_id=notice.fingerprint_id,
            target=_subject(notice),
            reason=reason,
        )
        if overturn and notice.fingerprint_id is not None:
            AllowedMatch.objects.create(
                fingerprint_id=notice.fingerprint_id, dhash=notice.dhash, created_by=actor
            )
        elif overturn:
            # A list entry's takedown: the overturned appeal itself keeps a list sweep off
            # this picture (``list_sweep``); the entry's owner hears of it as a dismissal.
            SignalEntry.objects.filter(pk=notice.signal_entry_id).update(
                times_dismissed=F("times_dismissed") + 1
            )
        if overturn:
            restored = restoring.restore_photo(
                notice=notice,
                actor=actor,
                reason="restored from the kept copy after an overturned appeal",
            )
            Appeal.objects.filter(pk=appeal.pk).update(restored=restored)
            _suspend_if_too_often_wrong(notice)
        # A kept copy, or a refusal's thumbnail, waited for this decision.
        refused = notice.refused_upload
        if (notice.kept_file and not notice.purged_at) or (
            refused is not None and refused.thumbnail is not None
        ):
            notices.schedule_purge(max(notice.created_at + notices.keep_period(), timezone.now()))
        review.owe_email(
            kind=EmailDelivery.Kind.APPEAL_OUTCOME,
            user=notice.user,
            subject="Your appeal was decided",
            body=_outcome_body(notice, overturn=overturn, restored=restored, reason=reason),
        )
    appeal.refresh_from_db()
    return AppealDecision(decided=True, overturned=overturn, restored=restored)


def _suspend_if_too_often_wrong(notice: Notice) -> None:
    if notice.fingerprint_id is None:
        return  # a list entry's: its list's owner retracts it
    limit = moderation_settings.MAX_DISMISSALS
    allowed = AllowedMatch.objects.in_force().filter(fingerprint_id=notice.fingerprint_id).count()
    if limit and allowed > limit:
        desk.suspend_fingerprint(flagged=notice.fingerprint, dismissals=allowed)


def _subject(notice: Notice) -> str:
    if notice.kind == Notice.Kind.REFUSAL:
        return f"refused upload by {notice.user}"
    return notice.target


def _outcome_body(notice: Notice, *, overturn: bool, restored: bool, reason: str) -> str:
    link = moderation_settings.SITE_URL.rstrip("/") + reverse("notice-detail", args=[notice.pk])
    if not overturn:
        outcome = "A moderator looked at your appeal, and the decision stands."
    elif restored:
        outcome = "A moderator looked at your appeal and reversed the decision: your photo is back."
    else:
        outcome = (
            "A moderator looked at your appeal and reversed the decision. Your photo could not "
            "be put back automatically; you can upload it again and it will be accepted."
        )
    return f"{outcome}\n\nThe moderator's reason: {reason}\n\nThe notice: {link}\n"
