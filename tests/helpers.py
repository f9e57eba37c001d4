"""Small actions many test files need: ban an image, upload a photo as a user."""

from __future__ import annotations

from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from moderation import flagging
from moderation.models import FlaggedFingerprint
from tests import images


def ban(
    img,
    reason: str = "test ban",
    source: str = FlaggedFingerprint.Source.COMMAND,
    actor=None,
    keep_original: bool = True,
) -> FlaggedFingerprint:
    """Flag a drawn image through the real flag service; return its fingerprint row."""
    return flagging.flag_image(
        file=images.upload(img, "banned.png", "PNG"),
        reason=reason,
        source=source,
        actor=actor,
        keep_original=keep_original,
    ).fingerprint


def post_photo(client, img, name: str = "me.jpg", fmt: str = "JPEG", **params):
    """Upload ``img`` (an image, or a file's bytes as they are) through the real profile form,
    as the logged-in user of ``client``."""
    if isinstance(img, bytes):
        photo = SimpleUploadedFile(name, img, "image/jpeg")
    else:
        photo = images.upload(img, name, fmt, **params)
    return client.post(reverse("profile-edit"), {"display_name": "Alice", "photo": photo})
