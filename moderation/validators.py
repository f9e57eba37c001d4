"""The upload validator: refuse an image that is near a banned fingerprint.

Users get one generic message; which banned image matched, and how close, is staff-only
information (it would let someone probe the threshold): ``screening`` logs it, and the view
records it from the form's ``Screening``.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.utils.deconstruct import deconstructible
from django.utils.translation import gettext_lazy as _

from moderation.screening import ScreenedUpload, Screening, screen_upload


@deconstructible
class BannedImageValidator:
    """Refuses a file that matches an active ban (``screening.screen``: dHash within
    ``MODERATION_MAX_DISTANCE`` of any variant -- orientation or crop -- of a flagged image,
    confirmed by pHash; every frame of an animation, the cuts, the picture inside a frame).

    A file the form has already screened (``screening.ScreenedUpload``) is judged by that
    screening, not decoded again. Also refuses anything that is not a safely decodable JPEG,
    PNG, GIF or WebP, with the specific error from ``moderation.decoding``.
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
        self.refuse_if_blocked(screening_of(value))

    def refuse_if_blocked(self, screening: Screening) -> None:
        if screening.blocked:
            raise ValidationError(self.message, code=self.code)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, BannedImageValidator)
            and self.message == other.message
            and self.code == other.code
        )


def screening_of(value: Any) -> Screening:
    """The screening of an upload: the one the form made (a ``ScreenedUpload``, bare or inside
    the model's ``FieldFile``), or a fresh one of the file as it is."""
    for candidate in (value, getattr(value, "file", None)):
        if isinstance(candidate, ScreenedUpload):
            return candidate.screening
    return screen_upload(value)
