"""What the site stores for a profile photo: a clean re-encoding, never the uploaded bytes.

Re-encoding drops metadata (GPS, camera serials) and anything hidden in comments or trailing
bytes, applies the EXIF orientation once and for all, and bounds the stored size.
"""

from __future__ import annotations

import io
from typing import Any

from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile

from moderation.hashing import further_frame_fingerprints, open_image
from moderation.validators import checked_instead

# Longest side of the stored photo: plenty for a profile page, and it keeps 24 MP uploads
# from filling storage.
STORED_MAX_SIDE = 2048
JPEG_QUALITY = 90


def reencode_photo(file: Any) -> ContentFile:
    """Decode ``file`` safely (same checks as the validator) and return clean JPEG bytes."""
    # Shrunk to fit by open_image, which may decode a big JPEG at reduced scale to do it
    # (never below STORED_MAX_SIDE on the longer side, so no detail the result could show).
    img = open_image(file, max_side=STORED_MAX_SIDE)
    if img.mode != "RGB":
        img = img.convert("RGB")
    # Pillow carries ``info`` through transpose/convert/resize, and its JPEG writer copies
    # info["comment"] into a COM segment: an uploaded JPEG/GIF comment or a PNG "comment" text
    # chunk (an HTML or PHP payload) would survive re-encoding. Keep nothing but pixels.
    img.info = {}
    out = io.BytesIO()
    # No optimize=True: its second Huffman pass costs ~8 ms on a 2 MP photo (about a tenth of
    # an upload) to save ~2% of the bytes.
    img.save(out, format="JPEG", quality=JPEG_QUALITY)
    return ContentFile(out.getvalue())


# Marks an uploaded file that is already the clean re-encoding (``prepare_photo``).
PREPARED_ATTR = "_profiles_prepared_photo"


def prepare_photo(upload: Any) -> SimpleUploadedFile:
    """The upload as it will be stored, for the form to validate in its place.

    Re-encodes first, so the banned-image validator fingerprints the file that will be stored
    and shown, and that fingerprint is also the one stored: the upload is decoded once and the
    clean file once, instead of upload, upload again, and clean file. An animation's frames
    after the first (which the re-encoding drops) are still compared, from the upload.
    Raises the same ``ValidationError`` codes as the validator for a file it cannot use.
    """
    content = reencode_photo(upload)
    further = further_frame_fingerprints(upload)
    prepared = SimpleUploadedFile("photo.jpg", content.read(), "image/jpeg")
    setattr(prepared, PREPARED_ATTR, True)
    return checked_instead(upload, prepared, further)


def is_prepared(file: Any) -> bool:
    return getattr(file, PREPARED_ATTR, False) is True
