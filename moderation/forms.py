"""Form fields for images users upload."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from moderation.conf import moderation_settings
from moderation.decoding import ERROR_MESSAGES


class ImageUploadField(forms.ImageField):
    """An image upload field that refuses on size first and leaves the decoding to the validator.

    Django's ``forms.ImageField`` opens every upload with *all* of Pillow's format plugins (EPS,
    PSD, TIFF, FITS...) and reads a file of any size into memory to do it, before any validator
    runs. Here the byte limit is checked from the upload's declared size without reading it, and
    nothing is parsed: the model field's ``BannedImageValidator`` opens the file once, with the
    JPEG/PNG/GIF/WebP allowlist and the pixel limits, and gives the precise error.

    The client's file name is ignored: no extension check (the content decides, and a JPEG named
    ``x.php`` is stored as a re-encoded ``<random>.jpg``), no length limit (300 characters or a
    NUL or a right-to-left override never reach storage, which picks its own name).
    """

    default_validators = []

    def __init__(self, **kwargs: Any) -> None:
        kwargs.pop("max_length", None)
        super().__init__(**kwargs)

    def to_python(self, data: Any) -> Any:
        upload = forms.FileField.to_python(self, data)  # empty file, missing name, max_length
        if upload is None:
            return None
        limit = moderation_settings.MAX_UPLOAD_BYTES
        if upload.size > limit:
            raise ValidationError(
                ERROR_MESSAGES["too_large"],
                code="too_large",
                params={"limit": round(limit / 1_000_000, 1)},
            )
        return upload
