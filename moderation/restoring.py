"""Restoring: putting a taken-down photo back on its profile from the copy kept privately.

Two decisions undo a takedown: an overturned appeal (``appeals.decide_appeal``) and a flag
withdrawn with its takedowns (``flagging.restore_takedowns``, chosen on the unflag page). Both
come here, so a restored photo is always stored the same way: a new public name, its
fingerprint recomputed, rechecked after commit as an upload is, the notice marked and the
restore audited. A photo is never put over one the person uploaded since.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.core.files.base import ContentFile
from django.utils import timezone

from moderation import registry, sweeping
from moderation.files import delete_quietly, storage_errors
from moderation.hashing import check_fingerprints
from moderation.models import AuditEvent, Notice, quarantine_storage


def kept_photo(notice: Notice) -> bytes | None:
    """The bytes of a takedown's kept copy; None for a refusal, a purged or missing copy, or a
    notice whose photo was put back already."""
    if (
        notice.kind != Notice.Kind.TAKEDOWN
        or notice.purged_at
        or notice.restored_at
        or not notice.kept_file
    ):
        return None
    try:
        with storage_errors(), quarantine_storage().open(notice.kept_file, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def restore_photo(
    *, notice: Notice, actor: AbstractBaseUser | None, reason: str, data: bytes | None = None
) -> bool:
    """Put a taken-down photo back on its profile from the kept copy (``data``, read here when
    not given). False when there is nothing to restore (``kept_photo``) or the profile holds
    another photo now (the person's newer choice wins). Runs in the caller's transaction;
    ``reason`` goes in the audit row."""
    try:
        target = registry.target_by_key(notice.target_key)
    except KeyError:
        return False
    instance = target.objects.select_for_update().filter(pk=notice.object_id).first()
    if instance is None or target.image(instance):
        return False
    if data is None:
        data = kept_photo(notice)
    if data is None:
        return False
    image = target.image(instance)
    storage = image.storage
    with storage_errors():
        name = storage.save(
            image.field.generate_filename(instance, "restored.jpg"), ContentFile(data)
        )
    try:
        target.set_image(instance, name, check_fingerprints(ContentFile(data)))
        Notice.objects.filter(pk=notice.pk).update(restored_at=timezone.now())
        AuditEvent.objects.create(
            action=AuditEvent.Action.RESTORE,
            actor=actor,
            fingerprint_id=notice.fingerprint_id,
            target=target.label(instance),
            reason=reason,
        )
        sweeping.recheck_after_commit(instance)
    except BaseException:
        delete_quietly(storage, name)
        raise
    notice.refresh_from_db(fields=["restored_at"])
    return True
