"""The upload validator: refuse an image that is near a banned fingerprint.

Users get one generic message; which banned image matched, and how close, is staff-only
information (it would let someone probe the threshold) and goes to the log instead.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import ValidationError
from django.utils.deconstruct import deconstructible
from django.utils.translation import gettext_lazy as _

from moderation import matching
from moderation.hashing import Fingerprint, fingerprint

logger = logging.getLogger(__name__)

# The validator leaves the fingerprint on the file object so the code that saves the upload
# stores it without decoding the image a second time.
FINGERPRINT_ATTR = "_moderation_fingerprint"


def fingerprint_of(file: Any) -> Fingerprint:
    """The fingerprint the validator computed for this upload, or compute it now."""
    fp = getattr(file, FINGERPRINT_ATTR, None)
    return fp if fp is not None else fingerprint(file)


@deconstructible
class BannedImageValidator:
    """Refuses a file whose dHash is within ``MODERATION_MAX_DISTANCE`` of an active ban.

    Also refuses anything that is not a safely decodable JPEG, PNG, GIF or WebP, with the
    specific error from ``moderation.hashing``.
    """

    message = _("This image can't be used as a profile photo.")
    code = "banned_image"

    def __init__(self, message: str | None = None, code: str | None = None) -> None:
        if message is not None:
            self.message = message
        if code is not None:
            self.code = code

    def __call__(self, value: Any) -> None:
        # A FieldFile that is already stored (the form re-validating an unchanged photo) was
        # checked when it was uploaded; the sweep covers it since.
        if getattr(value, "_committed", False) is True:
            return
        fp = fingerprint(value)
        setattr(value, FINGERPRINT_ATTR, fp)
        if getattr(value, "file", None) is not None:
            setattr(value.file, FINGERPRINT_ATTR, fp)
        matches = matching.find(fp)
        if matches:
            nearest = matches[0]
            logger.info(
                "refused upload %s: banned fingerprint #%s at distance %s",
                fp.hex,
                nearest.fingerprint_id,
                nearest.distance,
            )
            raise ValidationError(self.message, code=self.code)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, BannedImageValidator)
            and self.message == other.message
            and self.code == other.code
        )
