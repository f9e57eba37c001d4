"""What the desk keeps for the people who look at images: each moderator's display preference
and how many images they looked at each day."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class ModeratorPreference(models.Model):
    """One moderator's choices about how the admin shows images. No row: the defaults
    (every image blurred and greyscale until clicked)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        verbose_name=_("moderator"),
        on_delete=models.CASCADE,
        related_name="moderator_preference",
    )
    blur_images = models.BooleanField(
        _("blur images until clicked"),
        default=True,
        help_text=_(
            "Show every image in the admin blurred and in greyscale; a click reveals one. "
            "Turning this off shows them as they are."
        ),
    )

    class Meta:
        verbose_name = _("moderator preference")

    def __str__(self) -> str:
        return str(self.user)


class ImageViewDay(models.Model):
    """How many images one moderator looked at on one day: each reveal of a blurred image and
    each full-size view of a quarantined file counts once. Incremented with one UPDATE (or an
    insert the first time that day), so concurrent views all count."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("moderator"),
        on_delete=models.CASCADE,
        related_name="+",
    )
    day = models.DateField(_("day"), default=timezone.localdate)
    views = models.PositiveIntegerField(_("images viewed"), default=0)

    class Meta:
        verbose_name = _("images viewed per day")
        verbose_name_plural = _("images viewed per day")
        ordering = ["-day", "-views"]
        constraints = [
            models.UniqueConstraint(fields=["user", "day"], name="one_view_count_per_user_day")
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.day}: {self.views}"
