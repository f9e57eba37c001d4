"""The small JPEG a refusal keeps of the refused picture, as evidence for moderators.

Pure Pillow, no ORM. A refused upload writes nothing to storage; its row keeps this
thumbnail instead (``RefusedUpload.thumbnail``) for the keep period, so moderators judging the
refusal, or an appeal of it, see what was refused beside what it matched. It is made from the
picture the upload path has already decoded (no second decode), and only for a refusal.
"""

from __future__ import annotations

import io

from PIL import Image

# Longest side of the kept thumbnail: enough to tell whether two pictures are the same, small
# enough (a few KB) to live in the database row.
THUMBNAIL_MAX_SIDE = 192
THUMBNAIL_QUALITY = 70


def thumbnail_jpeg(picture: Image.Image, *, max_side: int = THUMBNAIL_MAX_SIDE) -> bytes:
    """``picture`` shrunk to at most ``max_side`` px on its longer side, as JPEG bytes without
    metadata. ``picture`` itself is left as it is (the caller may still store it)."""
    width, height = picture.size
    scale = min(1.0, max_side / max(width, height))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # reducing_gap: a cheap box reduction first, then the filter on the few pixels left.
    small = picture.convert("RGB") if picture.mode != "RGB" else picture
    small = small.resize(size, Image.Resampling.BICUBIC, reducing_gap=2.0)
    out = io.BytesIO()
    small.save(out, format="JPEG", quality=THUMBNAIL_QUALITY)
    return out.getvalue()
