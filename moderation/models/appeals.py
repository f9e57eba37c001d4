"""What a person is told about a decision on their photo, and their appeal against it.

A ``Notice`` is the statement of reasons: written in the transaction of a takedown (or with
the record of a refused upload), it says what happened, on what ground (the list's public
description, never which image matched or how close), and when. An ``Appeal`` is the person's
one objection to one notice, decided by a moderator (upheld or overturned, with a reason).
Written by the flows (``moderation.notices``, ``moderation.appeals``), shown to the person on
their profile page and to moderators in the admin.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Count, Q
from django.utils.formats import date_format
from django.utils.timezone import localtime
from django.utils.translation import gettext_lazy as _

from moderation.models.banned_set import FlaggedFingerprint
from moderation.models.records import AuditEvent, RefusedUpload

# An appeal is a short text: long enough to explain, short enough to read in the queue.
APPEAL_MAX_CHARS = 2000


class NoticeQuerySet(models.QuerySet):
    def for_user(self, user) -> NoticeQuerySet:
        return self.filter(user=user)

    def kept_takedowns(self) -> NoticeQuerySet:
        """Takedowns whose photo is still kept privately and has not been put back."""
        return self.filter(
            kind=Notice.Kind.TAKEDOWN, purged_at__isnull=True, restored_at__isnull=True
        ).exclude(kept_file="")

    def purgeable(self, before) -> NoticeQuerySet:
        """Takedowns whose kept copy is older than ``before``, not purged, and not under an
        open appeal (the moderator still needs the picture)."""
        return (
            self.filter(kind=Notice.Kind.TAKEDOWN, purged_at__isnull=True, created_at__lt=before)
            .exclude(kept_file="")
            .exclude(appeal__status=Appeal.Status.OPEN)
        )


class Notice(models.Model):
    """A statement of reasons to the person whose photo was taken down or refused.

    ``ground`` is the text the person was shown, frozen when the notice was written (a list's
    description edited later does not rewrite what someone was told). The flag, the
    fingerprint of their picture and the kept copy are staff-only. A takedown's copy stays in
    quarantine (``kept_file``) for ``MODERATION_TAKEDOWN_KEEP_DAYS``, so an overturned appeal
    can put the photo back (``restored_at``); then it is purged (``purged_at``). A refusal
    keeps no file.
    """

    class Kind(models.TextChoices):
        TAKEDOWN = "takedown", _("Photo taken down")
        REFUSAL = "refusal", _("Upload refused")

    kind = models.CharField(_("what happened"), max_length=10, choices=Kind.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("person"),
        on_delete=models.CASCADE,
        related_name="moderation_notices",
    )
    ground = models.TextField(_("ground given"))
    fingerprint = models.ForeignKey(
        FlaggedFingerprint,
        verbose_name=_("flag"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="notices",
    )
    # ...or the hash list entry that took the photo down (a list sweep); one of the two is set.
    signal_entry = models.ForeignKey(
        "moderation.SignalEntry",
        verbose_name=_("list entry"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="notices",
    )
    # The person's picture's own (whole-image) dHash: what an overturn allows for the flag.
    dhash = models.BigIntegerField(_("dHash of the photo (signed 64-bit)"))
    target_key = models.CharField(_("kind of image"), max_length=100, blank=True)
    object_id = models.PositiveBigIntegerField(_("object id"), null=True, blank=True)
    target = models.CharField(_("target"), max_length=200, blank=True)
    kept_file = models.CharField(_("kept copy (private)"), max_length=300, blank=True)
    takedown = models.ForeignKey(
        AuditEvent,
        verbose_name=_("takedown"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    refused_upload = models.ForeignKey(
        RefusedUpload,
        verbose_name=_("refused upload"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    created_at = models.DateTimeField(_("when"), db_index=True)
    purged_at = models.DateTimeField(_("kept copy purged"), null=True, blank=True)
    # Set when the photo went back on the profile (an overturned appeal, a withdrawn flag).
    restored_at = models.DateTimeField(_("photo restored"), null=True, blank=True)

    objects = NoticeQuerySet.as_manager()

    class Meta:
        verbose_name = _("statement of reasons")
        verbose_name_plural = _("statements of reasons")
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        when = date_format(localtime(self.created_at), "SHORT_DATE_FORMAT")
        return f"{self.get_kind_display()} ({self.user}, {when})"


class AppealQuerySet(models.QuerySet):
    def open(self) -> AppealQuerySet:
        return self.filter(status=Appeal.Status.OPEN)

    def outcomes_by_flag(self) -> dict[int, dict[str, int]]:
        """``{flag id: {"upheld": n, "overturned": n}}``: each overturn is a photo the flag
        took down or refused wrongly, the evidence a flag's precision is judged on."""
        rows = self.values("notice__fingerprint_id").annotate(
            upheld=Count("pk", filter=Q(status=Appeal.Status.UPHELD)),
            overturned=Count("pk", filter=Q(status=Appeal.Status.OVERTURNED)),
        )
        return {
            row["notice__fingerprint_id"]: {
                "upheld": row["upheld"],
                "overturned": row["overturned"],
            }
            for row in rows
        }


class Appeal(models.Model):
    """A person's objection to a notice: one per notice, decided once, with a reason."""

    class Status(models.TextChoices):
        OPEN = "open", _("Open")
        UPHELD = "upheld", _("Upheld (the decision stands)")
        OVERTURNED = "overturned", _("Overturned (the decision was wrong)")

    notice = models.OneToOneField(
        Notice, verbose_name=_("notice"), on_delete=models.CASCADE, related_name="appeal"
    )
    text = models.TextField(_("what the person says"), max_length=APPEAL_MAX_CHARS)
    status = models.CharField(
        _("status"), max_length=12, choices=Status.choices, default=Status.OPEN, db_index=True
    )
    created_at = models.DateTimeField(_("filed"), db_index=True)
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
    # Whether an overturn put the photo back (it may have been purged, or replaced meanwhile).
    restored = models.BooleanField(_("photo restored"), default=False)

    objects = AppealQuerySet.as_manager()

    class Meta:
        verbose_name = _("appeal")
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"appeal of {self.notice}"
