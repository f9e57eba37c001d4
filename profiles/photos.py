"""What happens to a profile photo, from the upload to the stored file.

1. The form re-encodes the upload (``reencoded_photo``): a clean JPEG, upright, metadata
   dropped, at most ``STORED_MAX_SIDE`` px (a large JPEG from a reduced decode, at least
   ``STORED_LEAST_SIDE``). What will be stored and shown is what is checked.
2. It is screened against the banned set (``prepare_photo`` -> ``moderation.screening``): the
   re-encoding's fingerprint, its cuts and the picture inside its frame, plus the upload's
   further animation frames (which the re-encoding drops). A blocked upload is refused with
   one generic message, and the view records the refusal for moderators; nothing is written
   to storage: the refusal's row keeps a small thumbnail of the picture, private, for the
   keep period (``moderation.thumbnails``).
3. A photo that passes is stored under a random name, with the fingerprint and probes it was
   screened with (``profile_set_photo``); the previous file goes once that has committed.
4. After commit, the stored photo is screened once more (``moderation.sweeping``'s recheck),
   which catches an upload that raced a flag of the same image. Later flags reach it through
   their sweeps, which compare what was stored here.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from typing import Any

from django.core.files.base import ContentFile
from django.db import transaction
from PIL import Image

from moderation import registry
from moderation.decoding import open_to_store
from moderation.files import delete_after_commit
from moderation.hashing import check_fingerprints
from moderation.review import record_list_matches
from moderation.screening import ScreenedUpload, screened_upload
from moderation.stored_hashes import file_digests
from moderation.sweeping import recheck_after_commit
from profiles.models import Profile, photo_upload_to

logger = logging.getLogger(__name__)

# Longest side of the stored photo: plenty for a profile page, and it keeps 24 MP uploads
# from filling storage. A large JPEG may be stored a little smaller, down to
# STORED_LEAST_SIDE, when that is what its 1/2, 1/4 or 1/8 scale decode gives: a 4000 x 3000
# phone photo is stored at 2000 x 1500 from a half-scale decode instead of decoded whole and
# resampled (``decoding.open_to_store``).
STORED_MAX_SIDE = 2048
STORED_LEAST_SIDE = 1440  # a 24 MP camera photo (6000 px) at 1/4: 1500
JPEG_QUALITY = 90


class PhotoStorageError(Exception):
    """The photo could not be written to storage; nothing was changed. Safe to retry."""


@dataclass(frozen=True)
class ReencodedPhoto:
    """An upload re-encoded: the clean JPEG bytes, and the decoded picture they were encoded
    from (for a refusal's thumbnail, without decoding again)."""

    content: bytes
    picture: Image.Image


def reencode_photo(file: Any) -> ContentFile:
    """Decode ``file`` safely (same checks as the validator) and return clean JPEG bytes."""
    return ContentFile(reencoded_photo(file).content)


def reencoded_photo(file: Any) -> ReencodedPhoto:
    """``file`` decoded safely (same checks as the validator) and re-encoded as a clean JPEG."""
    img = open_to_store(file, max_side=STORED_MAX_SIDE, least_side=STORED_LEAST_SIDE)
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
    return ReencodedPhoto(out.getvalue(), img)


def prepare_photo(upload: Any) -> ScreenedUpload:
    """The upload as it will be stored, screened: for the form to validate in its place.

    The upload is decoded once (re-encoding) and the clean file once (fingerprinting), and the
    fingerprint stored is the one checked. A refused upload carries a thumbnail made from the
    first decode (``ScreenedUpload.thumbnail``), for its record. Raises the same
    ``ValidationError`` codes as the validator for a file it cannot use.
    """
    photo = reencoded_photo(upload)
    return screened_upload(upload, photo.content, picture=photo.picture)


def profile_set_photo(*, profile: Profile, upload: Any) -> Profile:
    """Store a validated upload as the profile's photo (re-encoded, under a random name).

    The caller has run the form; an upload the form has already prepared (``prepare_photo``)
    is stored as it is, with the fingerprint it was screened with. After commit the stored
    photo is screened once more. Raises ``PhotoStorageError`` if storage fails.
    """
    if isinstance(upload, ScreenedUpload):
        content, checked = upload, upload.screening.checked
        digests = upload.screening.digests
    else:
        digests = None
        if hasattr(upload, "seek"):
            upload.seek(0)
            digests = file_digests(upload)
            upload.seek(0)
        content = reencode_photo(upload)
        checked = check_fingerprints(content)
    target = registry.target_for(Profile)
    storage = profile.photo.storage
    try:
        new_name = storage.save(photo_upload_to(profile, ""), content)
    except Exception as e:
        raise PhotoStorageError("storage refused the photo") from e
    old_name = profile.photo.name
    try:
        with transaction.atomic():
            target.set_image(
                profile, new_name, checked, also=("updated_at",), digests=digests
            )
            if isinstance(upload, ScreenedUpload) and upload.screening.lists:
                record_list_matches(
                    instance=profile, fingerprint=checked.frames[0], matches=upload.screening.lists
                )
            if old_name:
                delete_after_commit(storage, old_name)
            recheck_after_commit(profile)
    except BaseException:
        profile.photo = old_name
        try:
            storage.delete(new_name)
        except Exception:  # noqa: BLE001
            logger.exception("could not remove %s after a failed save", new_name)
        raise
    return profile


def profile_remove_photo(*, profile: Profile) -> bool:
    """Remove the profile's photo; the file goes once the change has committed."""
    if not profile.photo:
        return False
    with transaction.atomic():
        old_name, storage = profile.photo.name, profile.photo.storage
        registry.target_for(Profile).set_image(profile, "", None, also=("updated_at",))
        delete_after_commit(storage, old_name)
    return True
