"""A person's public profile and the fingerprint of its photo."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from moderation.validators import BannedImageValidator


def photo_upload_to(instance: Profile, filename: str) -> str:
    """A random name: the user's filename never reaches storage (the site re-encodes to JPEG)."""
    return f"photos/{uuid.uuid4().hex}.jpg"


class Profile(models.Model):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile"
    )
    display_name = models.CharField(_("display name"), max_length=80, blank=True)
    photo = models.ImageField(
        _("photo"), upload_to=photo_upload_to, blank=True, validators=[BannedImageValidator()]
    )
    # Fingerprint of the stored (re-encoded) photo, signed 64-bit; NULL when there is none.
    photo_dhash = models.BigIntegerField(_("photo dHash"), null=True, blank=True, db_index=True)
    # Its confirming pHash (signed 64-bit); NULL also for photos stored before pipeline 3.
    photo_phash = models.BigIntegerField(_("photo pHash"), null=True, blank=True)
    photo_pipeline_version = models.PositiveSmallIntegerField(null=True, blank=True)
    # The photo's cuts (centre, caption band) and the picture inside its frame, as the upload
    # was checked (``CheckFingerprints.probe_bytes``, packed int64s): sweeps compare them too.
    # Empty for none and for photos stored before pipeline 5 (``manage.py reindex`` fills them).
    photo_probes = models.BinaryField(_("photo probes"), default=b"", blank=True, editable=False)
    photo_checked_at = models.DateTimeField(
        _("photo last checked"),
        null=True,
        blank=True,
        help_text=_("When the photo was last compared with the whole banned set."),
    )
    # Set when a reindex found the stored file gone: the photo is hidden from every page (never a
    # broken image) but keeps its hash, so sweeps still compare it with the banned set.
    photo_missing_since = models.DateTimeField(
        _("photo file missing since"), null=True, blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("profile")
        ordering = ["user__username"]

    def __str__(self) -> str:
        return self.display_name or self.user.get_username()

    @property
    def photo_visible(self) -> bool:
        """Whether pages may show the photo: there is one, and its file was not found missing."""
        return bool(self.photo) and self.photo_missing_since is None

    @property
    def photo_hex(self) -> str:
        if self.photo_dhash is None:
            return ""
        return f"{self.photo_dhash & 0xFFFF_FFFF_FFFF_FFFF:016x}"
