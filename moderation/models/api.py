"""Tokens of the services that call the lookup API: one per calling service, revocable.

Only a digest of each secret is kept (SHA-256 of the whole token): the secret is shown once,
when the token is issued, and cannot be recovered. A fast digest is enough because the secret
is 256 random bits, not a password a person chose; a slow password hasher would cost every API
call tens of milliseconds for no gain.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

# Requests per window (``moderation.api.auth.RATE_WINDOW`` seconds) a new token may make.
DEFAULT_RATE_LIMIT = 600


class ApiTokenQuerySet(models.QuerySet):
    def active(self) -> ApiTokenQuerySet:
        """Tokens that still authenticate (not revoked)."""
        return self.filter(revoked_at__isnull=True)


class ApiToken(models.Model):
    """A calling service's credential for the lookup API (``Authorization: Bearer <token>``)."""

    name = models.CharField(
        _("name"), max_length=100, help_text=_("The calling service, e.g. 'chat-attachments'.")
    )
    prefix = models.CharField(
        _("prefix"),
        max_length=16,
        editable=False,
        help_text=_("The token's first characters, to recognise it in logs and configs."),
    )
    key_digest = models.CharField(_("key digest"), max_length=64, unique=True, editable=False)
    rate_limit = models.PositiveIntegerField(
        _("rate limit"),
        default=DEFAULT_RATE_LIMIT,
        help_text=_("Requests per minute; more are answered 429 with Retry-After. 0: no limit."),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("created by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True, editable=False)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("revoked by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        verbose_name = _("API token")
        verbose_name_plural = _("API tokens")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None
