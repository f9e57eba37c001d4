"""Profile actions: create, rename, set and remove the photo.

Photo changes follow the file rules in ``moderation.services``: the new file is written before
the row points at it (and removed if the row update fails); the old file is deleted only after
the transaction commits.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from moderation.hashing import Fingerprint, check_fingerprints
from moderation.tasks import recheck_image_task
from moderation.validators import fingerprint_of, probe_bytes_of
from profiles.models import Profile, photo_upload_to
from profiles.photos import is_prepared, reencode_photo

logger = logging.getLogger(__name__)


class PhotoStorageError(Exception):
    """The photo could not be written to storage; nothing was changed. Safe to retry."""


def profile_for(*, user: AbstractBaseUser) -> Profile:
    """The user's profile, created on first use (users made in the admin have none yet)."""
    profile, _ = Profile.objects.get_or_create(user=user)
    return profile


def _delete_file_after_commit(storage, name: str) -> None:
    def delete() -> None:
        try:
            storage.delete(name)
        except Exception:  # noqa: BLE001 - an orphan file is better than a failed request
            logger.exception("could not delete replaced photo %s", name)

    transaction.on_commit(delete)


def _save_photo(
    profile: Profile, name: str, fp: Fingerprint | None, probes: bytes = b""
) -> None:
    """Point the profile at a stored photo, its fingerprint and its packed probes (or at none:
    ``""``, None)."""
    profile.photo = name
    profile.photo_probes = probes
    profile.photo_dhash = fp.signed if fp else None
    profile.photo_phash = fp.phash_signed if fp else None
    profile.photo_pipeline_version = fp.pipeline_version if fp else None
    profile.photo_checked_at = timezone.now() if fp else profile.photo_checked_at
    profile.photo_missing_since = None
    profile.save(
        update_fields=[
            "photo",
            "photo_dhash",
            "photo_phash",
            "photo_probes",
            "photo_pipeline_version",
            "photo_checked_at",
            "photo_missing_since",
            "updated_at",
        ]
    )


def profile_set_photo(*, profile: Profile, upload: Any) -> Profile:
    """Store a validated upload as the profile's photo (re-encoded, under a random name).

    The caller has run the form (and so the banned-image validator); an upload the form has
    already re-encoded (``photos.prepare_photo``) is stored as it is. After commit the stored
    photo is checked once more against the banned set, which catches an upload that raced a
    flag of the same image. Raises ``PhotoStorageError`` if storage fails.
    """
    if is_prepared(upload):
        # Already the clean re-encoding (the form made it), fingerprinted by the validator.
        content, stored_fp, probes = upload, fingerprint_of(upload), probe_bytes_of(upload)
    else:
        content = reencode_photo(upload)
        checked = check_fingerprints(content)
        stored_fp, probes = checked.frames[0], checked.probe_bytes()
    storage = profile.photo.storage
    try:
        new_name = storage.save(photo_upload_to(profile, ""), content)
    except Exception as e:
        raise PhotoStorageError("storage refused the photo") from e
    old_name = profile.photo.name
    try:
        with transaction.atomic():
            _save_photo(profile, new_name, stored_fp, probes)
            if old_name:
                _delete_file_after_commit(storage, old_name)
            transaction.on_commit(
                lambda: recheck_image_task.enqueue(Profile._meta.label_lower, profile.pk)
            )
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
        _save_photo(profile, "", None)
        _delete_file_after_commit(storage, old_name)
    return True


def profile_update_details(*, profile: Profile, display_name: str) -> Profile:
    profile.display_name = display_name
    profile.save(update_fields=["display_name", "updated_at"])
    return profile
