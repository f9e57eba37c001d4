"""Reports: signed-in people report a profile photo; a moderator bans it or dismisses it.

A report names the photo as stored (its file), so a photo replaced since is not judged by
reports of the one before. Every report of one photo joins one open ``Report`` (deduplicated),
each person reports a photo once, and each person's reports are rate-limited
(``MODERATION_REPORT_RATE_PER_USER``, in the view). Banning goes through
``flagging.flag_stored_image`` (the flag, the takedown with its notice to the owner, and the
sweep for copies), in one step from the report; dismissing leaves the photo. Every reporter is
told the outcome (their profile page, and email with a confirmed address).
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction
from django.utils import timezone

from moderation import registry, review
from moderation.flagging import flag_stored_image
from moderation.models import (
    REPORT_MAX_CHARS,
    AuditEvent,
    EmailDelivery,
    Report,
    ReportFiling,
)


def file_report(
    *, instance: models.Model, reporter: AbstractBaseUser, reason: str, text: str = ""
) -> Report:
    """``reporter`` reports ``instance``'s current image. Raises ``ValidationError`` (nothing
    written) for an image that is not there (``no_photo``), one's own (``own_photo``), an
    unknown reason or a text over ``REPORT_MAX_CHARS``, and a second report of the same photo
    by the same person (``already_reported``)."""
    target = registry.target_for(instance)
    image = target.image(instance)
    if not image:
        raise ValidationError("There is no photo to report.", code="no_photo")
    if target.owner_id(instance) == reporter.pk:
        raise ValidationError("You cannot report your own photo.", code="own_photo")
    if reason not in ReportFiling.Reason.values:
        raise ValidationError("Choose a reason.", code="reason")
    text = (text or "").strip()
    if len(text) > REPORT_MAX_CHARS:
        raise ValidationError(f"At most {REPORT_MAX_CHARS} characters.", code="too_long")
    already = ValidationError("You have already reported this photo.", code="already_reported")
    now = timezone.now()
    try:
        with transaction.atomic():
            report, _ = Report.objects.get_or_create(
                target_key=target.key,
                object_id=instance.pk,
                file_name=image.name,
                status=Report.Status.OPEN,
                defaults={
                    "target": target.label(instance),
                    "uploader_id": target.owner_id(instance),
                    "created_at": now,
                },
            )
            if ReportFiling.objects.filter(report=report, reporter=reporter).exists():
                raise already
            ReportFiling.objects.create(
                report=report, reporter=reporter, reason=reason, text=text, created_at=now
            )
    except IntegrityError as e:  # the same person twice at once, or two first reports at once
        raise already from e
    return report


def report_ban(*, report: Report, actor: AbstractBaseUser | None, reason: str) -> bool:
    """Ban a reported photo in one step: flag it (take-down, notice to its owner, sweep for
    copies) and close the report; its reporters are told. False when the report was decided
    already, or the photo is gone or replaced (the report is then closed as gone). A
    low-information photo raises ``ValidationError`` as in ``flag_image``; nothing changes."""
    reason = _required(reason)
    with transaction.atomic():
        if not _claim(report, Report.Status.BANNED, actor, reason):
            return False
        target = registry.target_by_key(report.target_key)
        instance = target.objects.filter(pk=report.object_id).first()
        result = None
        if instance is not None:
            result = flag_stored_image(
                instance=instance,
                reason=f"reported photo: {reason}",
                actor=actor,
                expected_name=report.file_name,
            )
        if result is None:
            Report.objects.filter(pk=report.pk).update(status=Report.Status.GONE)
        _tell_reporters(report, removed=True)
    report.refresh_from_db()
    return report.status == Report.Status.BANNED


def report_dismiss(*, report: Report, actor: AbstractBaseUser | None, reason: str) -> bool:
    """Dismiss a report: the photo stays. Audited; its reporters are told. False when the
    report was decided already."""
    reason = _required(reason)
    with transaction.atomic():
        if not _claim(report, Report.Status.DISMISSED, actor, reason):
            return False
        AuditEvent.objects.create(
            action=AuditEvent.Action.REPORT_DISMISS,
            actor=actor,
            target=report.target,
            reason=reason,
        )
        _tell_reporters(report, removed=False)
    report.refresh_from_db()
    return True


def _required(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError("Give a reason.", code="no_reason")
    return reason


def _claim(report: Report, status: str, actor, reason: str) -> bool:
    return bool(
        Report.objects.filter(pk=report.pk, status=Report.Status.OPEN).update(
            status=status, decided_by=actor, decided_at=timezone.now(), decision_reason=reason
        )
    )


def _tell_reporters(report: Report, *, removed: bool) -> None:
    outcome = (
        "A moderator looked at the profile photo you reported and removed it. Thank you."
        if removed
        else "A moderator looked at the profile photo you reported and decided it can stay."
    )
    for filing in ReportFiling.objects.filter(report=report).select_related("reporter"):
        review.owe_email(
            kind=EmailDelivery.Kind.REPORT_OUTCOME,
            user=filing.reporter,
            subject="Your report was decided",
            body=f"{outcome}\n",
        )
