"""Reports: signed-in people telling moderators that a profile photo should not be there.

One ``Report`` per reported photo (the stored file) while it waits: every further report of
the same photo joins it as a ``ReportFiling``, so moderators decide a photo once, however many
people reported it. Written by ``moderation.reports``; decided in the admin.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

# A report's text is a pointer for the moderator, not an essay.
REPORT_MAX_CHARS = 1000


class ReportQuerySet(models.QuerySet):
    def open(self) -> ReportQuerySet:
        return self.filter(status=Report.Status.OPEN)


class Report(models.Model):
    """A reported photo waiting for (or given) a moderator's decision."""

    class Status(models.TextChoices):
        OPEN = "open", _("Open")
        BANNED = "banned", _("Banned")
        DISMISSED = "dismissed", _("Dismissed (the photo stays)")
        GONE = "gone", _("Photo gone before a decision")

    target_key = models.CharField(_("kind of image"), max_length=100)
    object_id = models.PositiveBigIntegerField(_("object id"))
    file_name = models.CharField(_("reported file"), max_length=300)
    target = models.CharField(_("target"), max_length=200, blank=True)
    uploader = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("uploader"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.OPEN, db_index=True
    )
    created_at = models.DateTimeField(_("first reported"), db_index=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("decided by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    decided_at = models.DateTimeField(_("decided"), null=True, blank=True)
    decision_reason = models.TextField(_("reason for the decision"), blank=True)

    objects = ReportQuerySet.as_manager()

    class Meta:
        verbose_name = _("reported photo")
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["target_key", "object_id", "file_name"],
                condition=Q(status="open"),
                name="one_open_report_per_photo",
            )
        ]

    def __str__(self) -> str:
        return f"report of {self.target or self.file_name}"


class ReportFiling(models.Model):
    """One person's report of a photo: their reason and words."""

    class Reason(models.TextChoices):
        SEXUAL = "sexual", _("Sexual or nude content")
        VIOLENCE = "violence", _("Violence or gore")
        HATE = "hate", _("Hateful symbols or content")
        NOT_THEM = "not_them", _("Not a photo of this person (impersonation, stock photo)")
        OTHER = "other", _("Something else")

    report = models.ForeignKey(
        Report, verbose_name=_("report"), on_delete=models.CASCADE, related_name="filings"
    )
    reporter = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("reporter"),
        on_delete=models.CASCADE,
        related_name="+",
    )
    reason = models.CharField(_("reason"), max_length=10, choices=Reason.choices)
    text = models.TextField(_("details"), max_length=REPORT_MAX_CHARS, blank=True)
    created_at = models.DateTimeField(_("reported"))

    class Meta:
        verbose_name = _("report filing")
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["report", "reporter"], name="one_filing_per_reporter")
        ]

    def __str__(self) -> str:
        return f"{self.reporter}: {self.get_reason_display()}"
