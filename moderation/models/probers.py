"""Uploaders escalated as probers: an account or an IP whose uploads kept landing near banned
images (refused, or accepted and queued as near misses) more often than chance explains."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from moderation.models.banned_set import FlaggedFingerprint


class ProberEscalationQuerySet(models.QuerySet):
    def open(self) -> ProberEscalationQuerySet:
        return self.filter(status=ProberEscalation.Status.OPEN)


class ProberEscalation(models.Model):
    """One account (``user``) or one client address (``ip``) escalated for probing: its
    attempts reached ``MODERATION_PROBER_ATTEMPTS`` within ``MODERATION_PROBER_WINDOW_MINUTES``.

    While it is open, every upload it makes that passes screening is held for review (queued,
    and not shown publicly until a moderator decides). The user is told nothing new: refused
    uploads keep the one generic message. A moderator closes it (the record stays)."""

    class Status(models.TextChoices):
        OPEN = "open", _("Open")
        CLOSED = "closed", _("Closed")

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("account"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    ip = models.GenericIPAddressField(_("IP address"), null=True, blank=True)
    fingerprint = models.ForeignKey(
        FlaggedFingerprint,
        verbose_name=_("most probed banned fingerprint"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    attempts = models.PositiveIntegerField(_("attempts in the window when escalated"))
    opened_at = models.DateTimeField(_("escalated"), default=timezone.now, db_index=True)
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.OPEN, db_index=True
    )
    closed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("closed by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    closed_at = models.DateTimeField(_("closed"), null=True, blank=True)

    objects = ProberEscalationQuerySet.as_manager()

    class Meta:
        verbose_name = _("escalated prober")
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["user"],
                condition=Q(status="open", user__isnull=False),
                name="one_open_escalation_per_user",
            ),
            models.UniqueConstraint(
                fields=["ip"],
                condition=Q(status="open", ip__isnull=False),
                name="one_open_escalation_per_ip",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user or self.ip} ({self.get_status_display()})"

    @property
    def who(self) -> str:
        return str(self.user) if self.user_id else f"IP {self.ip}"
