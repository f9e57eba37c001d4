"""Flagging: how an image enters the banned set, and how it leaves it.

A flag stores the fingerprints of every variant of the image (``variants.VARIANTS``), keeps the
original privately (quarantine), is audited, is logged to the banned set's change log so every
process enforces it at its next lookup, and, once committed, has its sweep take down the stored
images that match it (``sweeping.sweep_task``). Unflagging deactivates, never deletes; the
moderator may then put back the photos the flag took down (``restore_takedowns``).

Callers: the admin (flag selected photos, "Flag an image"), ``manage.py flag_images``, the desk
(ban from the review queue), list imports (``exchange``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO, Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.base import ContentFile
from django.db import IntegrityError, models, transaction
from django.tasks import task
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from moderation import notices, registry, restoring, sweeping
from moderation.background import enqueue_on_commit
from moderation.banned_index import stored_variants
from moderation.banned_set import lock_banned_set, log_change
from moderation.conf import moderation_settings
from moderation.files import (
    copy_to_quarantine,
    delete_from_quarantine,
    remove_banned_copy_after_commit,
    storage_errors,
)
from moderation.hashing import Fingerprint, fingerprint_variants
from moderation.matching import PASS, is_low_information
from moderation.models import AuditEvent, FingerprintVariant, FlaggedFingerprint, HashList, Notice
from moderation.screening import screen_upload, signal_of_file
from moderation.verification import MIN_FLAG_KEYPOINTS, keypoint_count


@dataclass(frozen=True)
class FlagResult:
    fingerprint: FlaggedFingerprint
    created: bool  # False when the image was already banned (the flag is still audited)


LOW_INFORMATION_MESSAGE = _(
    "This image carries too little detail to be recognised reliably (%(information)s of 64 "
    "fingerprint bits are informative; at least %(minimum)s are needed): near-flat images such as "
    "fog, sky or a plain wall look alike to the matcher, so banning it would also block innocent "
    "photos. It was not flagged. A superuser can flag it anyway; a match with it then sends an "
    "upload to review instead of blocking it."
)


FEATURELESS_MESSAGE = _(
    "This image has too few distinctive details to be verified (%(keypoints)s found; at least "
    "%(minimum)s are needed): a copy of it could not be told from a different picture that "
    "happens to look alike, so banning it would also block innocent photos. It was not flagged. "
    "A superuser can flag it anyway; a match with it then sends an upload to review instead of "
    "blocking it."
)


def check_information(
    fp: Fingerprint,
    *,
    allow_low: bool,
    actor: AbstractBaseUser | None,
    signal: bytes | None = None,
) -> bool:
    """The low-information gate of every flag. Returns True when ``fp`` is low-information
    (too few informative dHash bits) or the image is featureless (its verification ``signal``
    has fewer than ``verification.MIN_FLAG_KEYPOINTS`` keypoints, so its copies could not be
    verified).

    Raises ``ValidationError`` (code ``low_information``) unless ``allow_low``, which only a
    superuser (or a command run without a user) may use: ``PermissionDenied`` otherwise.
    """
    keypoints = None if signal is None else keypoint_count(signal)
    featureless = keypoints is not None and keypoints < MIN_FLAG_KEYPOINTS
    if not is_low_information(fp.information) and not featureless:
        return False
    if not allow_low:
        if is_low_information(fp.information):
            raise ValidationError(
                LOW_INFORMATION_MESSAGE,
                code="low_information",
                params={
                    "information": fp.information,
                    "minimum": moderation_settings.MIN_INFORMATION,
                },
            )
        raise ValidationError(
            FEATURELESS_MESSAGE,
            code="low_information",
            params={"keypoints": keypoints, "minimum": MIN_FLAG_KEYPOINTS},
        )
    if actor is not None and not actor.is_superuser:
        raise PermissionDenied("only a superuser may flag a low-information image")
    return True


def _override_note(reason: str, low: bool) -> str:
    return f"{reason} [low-information image, flagged by override]".strip() if low else reason


def variant_rows(flagged: FlaggedFingerprint, variants: list[Fingerprint]):
    """The rows of the variants a flag stores (``banned_index.stored_variants``)."""
    for number, fp in stored_variants(variants):
        yield FingerprintVariant(
            flagged=flagged,
            variant=number,
            dhash=fp.signed,
            phash=fp.phash_signed,
            pdq=fp.pdq.hex if fp.pdq is not None else "",
            pdq_quality=fp.pdq.quality if fp.pdq is not None else None,
        )


def _record_flag(
    *,
    variants: list[Fingerprint],
    reason: str,
    source: str,
    actor: AbstractBaseUser | None,
    original_name: str = "",
    target: str = "",
    hash_list: HashList | None = None,
    signal: bytes = b"",
) -> FlagResult:
    """Insert the flag and its variants (or reuse the active flag with the same upright hash)
    and audit it. ``variants`` are ``fingerprint_variants`` of the image."""
    fp = variants[0]
    lock_banned_set()
    existing = FlaggedFingerprint.objects.active().filter(dhash=fp.signed).first()
    created = existing is None
    if created:
        try:
            with transaction.atomic():
                flagged = FlaggedFingerprint.objects.create(
                    dhash=fp.signed,
                    pipeline_version=fp.pipeline_version,
                    information=fp.information,
                    reason=reason,
                    source=source,
                    flagged_by=actor,
                    original=original_name,
                    verification=signal,
                    **({"hash_list": hash_list} if hash_list is not None else {}),
                )
                FingerprintVariant.objects.bulk_create(variant_rows(flagged, variants))
        except IntegrityError:
            # Another moderator flagged the same image a moment ago (possible on SQLite,
            # where there is no advisory lock): one fingerprint, two audit rows.
            flagged = FlaggedFingerprint.objects.active().get(dhash=fp.signed)
            created = False
        else:
            log_change(flagged)
    else:
        flagged = existing
    if not created and original_name and not flagged.original:
        flagged.original = original_name
        flagged.save(update_fields=["original"])
        original_name = ""
    if not created and signal and not flagged.verification:
        flagged.verification = signal
        flagged.save(update_fields=["verification"])
    AuditEvent.objects.create(
        action=AuditEvent.Action.FLAG,
        actor=actor,
        fingerprint=flagged,
        target=target,
        reason=reason,
        evidence=original_name if not created else "",
    )
    sweeping.sweep_after_commit([flagged.pk])
    return FlagResult(flagged, created)


def flag_image(
    *,
    file: IO[bytes] | Any,
    reason: str,
    source: str,
    actor: AbstractBaseUser | None = None,
    keep_original: bool = True,
    allow_low_information: bool = False,
    hash_list: HashList | None = None,
) -> FlagResult:
    """Fingerprint an image file (every variant: 8 orientations and the crops of
    ``variants.VARIANTS``) into the banned set and keep the original privately.

    Used by the admin's "Flag an image" page and ``manage.py flag_images``. Raises
    ``ValidationError`` when the file is not an acceptable image, or (code ``low_information``)
    carries too little information to be matched reliably, unless ``allow_low_information``
    (superusers only, see ``check_information``); writes nothing then. After commit, a sweep
    takes down existing photos that match.
    """
    variants = fingerprint_variants(file)
    fp = variants[0]
    signal = signal_of_file(file)
    low = check_information(fp, allow_low=allow_low_information, actor=actor, signal=signal)
    reason = _override_note(reason, low)
    already_kept = (
        FlaggedFingerprint.objects.active().filter(dhash=fp.signed).exclude(original="").exists()
    )
    # A re-flag of an image whose original is already kept adds an audit row, not another copy.
    stored = copy_to_quarantine(file, "originals") if keep_original and not already_kept else ""
    try:
        with transaction.atomic():
            return _record_flag(
                variants=variants,
                reason=reason,
                source=source,
                actor=actor,
                original_name=stored,
                hash_list=hash_list,
                signal=signal,
            )
    except BaseException:
        if stored:
            delete_from_quarantine(stored)
        raise


def flag_stored_image(
    *,
    instance: models.Model,
    reason: str,
    actor: AbstractBaseUser | None = None,
    expected_name: str | None = None,
    allow_low_information: bool = False,
) -> FlagResult | None:
    """Ban the image a registered model holds (e.g. a profile photo) and take it down.

    The file moves to private storage as the flag's original; the model loses its image.
    ``expected_name`` is the stored file the moderator looked at: if the image has been
    replaced since (stored names are never reused), nothing is flagged. Returns None when the
    instance has no image any more, or no longer the expected one. A low-information image
    raises ``ValidationError`` as in ``flag_image``, and nothing changes.
    """
    target = registry.target_for(instance)
    with transaction.atomic():
        locked = target.objects.select_for_update().get(pk=instance.pk)
        image = target.image(locked)
        if not image or (expected_name is not None and image.name != expected_name):
            return None
        public_name = image.name
        with storage_errors(), image.open("rb") as fh:
            variants = fingerprint_variants(fh)
            signal = signal_of_file(fh)
            low = check_information(
                variants[0], allow_low=allow_low_information, actor=actor, signal=signal
            )
            reason = _override_note(reason, low)
            stored = copy_to_quarantine(fh, "originals")
        try:
            label = target.label(locked)
            result = _record_flag(
                variants=variants,
                reason=reason,
                source=FlaggedFingerprint.Source.PROFILE_PHOTO,
                actor=actor,
                original_name=stored,
                target=label,
                signal=signal,
            )
            target.clear(locked)
            event = AuditEvent.objects.create(
                action=AuditEvent.Action.TAKEDOWN,
                actor=actor,
                fingerprint=result.fingerprint,
                target=label,
                distance=0,
                reason=reason,
                evidence=stored,
            )
            notices.notify_takedown(
                instance=locked,
                flagged=result.fingerprint,
                dhash=variants[0].signed,
                event=event,
                kept_file=stored,
            )
        except BaseException:
            delete_from_quarantine(stored)
            raise
        remove_banned_copy_after_commit(image.storage, public_name)
    instance.refresh_from_db()
    return result


def unflag_fingerprint(
    *, flagged: FlaggedFingerprint, actor: AbstractBaseUser | None = None, reason: str = ""
) -> bool:
    """Deactivate a banned fingerprint (never delete it). Returns False if it was inactive.

    Photos already taken down stay down (their evidence remains in quarantine for review)
    unless the moderator also chooses ``restore_takedowns``.
    """
    with transaction.atomic():
        lock_banned_set()
        locked = FlaggedFingerprint.objects.select_for_update().get(pk=flagged.pk)
        if not locked.active:
            return False
        locked.active = False
        locked.unflagged_by = actor
        locked.unflagged_at = timezone.now()
        locked.save(update_fields=["active", "unflagged_by", "unflagged_at"])
        log_change(locked)
        AuditEvent.objects.create(
            action=AuditEvent.Action.UNFLAG, actor=actor, fingerprint=locked, reason=reason
        )
    flagged.refresh_from_db()
    return True


@dataclass(frozen=True)
class RestoredTakedowns:
    """What ``restore_takedowns`` did with the photos a flag took down that were still kept."""

    restored: int = 0  # back on their profiles, their owners told
    still_matched: int = 0  # left down: another active flag or a hash list matches them
    skipped: int = 0  # left down: a newer photo on the profile, or the copy is gone


def restore_takedowns(
    *, flagged: FlaggedFingerprint, actor: AbstractBaseUser | None = None
) -> RestoredTakedowns:
    """Put back the photos an unflagged ``flagged`` took down, where the copy is still kept.

    Each kept copy is screened as an upload would be (the whole rule, the hash lists and the
    allowlist) after the unflag committed, and stays down if anything still blocks it or
    sends it to review. A profile that holds a newer photo keeps it. Each restore is one
    transaction (``restoring.restore_photo``: audited, rechecked after commit), and the owner is
    told (``notices.notify_restored``) in it. A flag still active restores nothing.

    Safe to run again, or after a run that died part-way (``restore_takedowns_task``): each
    notice is marked ``restored_at`` in its restore's transaction and only unmarked ones are
    looked at, re-read under a lock, so no photo goes back, or is announced, twice.
    """
    flagged.refresh_from_db(fields=["active"])
    if flagged.active:
        return RestoredTakedowns()
    restored = still_matched = skipped = 0
    reason = f"restored from the kept copy: flag {flagged.hex} was unflagged"
    for notice in Notice.objects.kept_takedowns().filter(fingerprint=flagged).order_by("pk"):
        outcome = restore_takedown(notice=notice, actor=actor, reason=reason)
        restored += outcome == RESTORED
        still_matched += outcome == STILL_MATCHED
        skipped += outcome == SKIPPED
    return RestoredTakedowns(restored, still_matched, skipped)


RESTORED, STILL_MATCHED, SKIPPED = "restored", "still matched", "skipped"


def restore_takedown(*, notice: Notice, actor: AbstractBaseUser | None, reason: str) -> str:
    """Screen one kept takedown and put it back if nothing blocks it (see
    ``restore_takedowns``): ``RESTORED``, ``STILL_MATCHED`` or ``SKIPPED``."""
    data = restoring.kept_photo(notice)
    if data is None:
        return SKIPPED
    try:
        screening = screen_upload(ContentFile(data, "kept.jpg"), record=False, blocking=False)
    except ValidationError:
        return SKIPPED  # no longer decodes as an image the site accepts
    if screening.decision != PASS:
        return STILL_MATCHED
    with transaction.atomic():
        locked = Notice.objects.select_for_update().kept_takedowns().filter(pk=notice.pk)
        notice = locked.first()
        done = notice is not None and restoring.restore_photo(
            notice=notice, actor=actor, reason=reason, data=data
        )
        if done:
            notices.notify_restored(notice)
    return RESTORED if done else SKIPPED


def kept_takedowns_of(flags: models.QuerySet[FlaggedFingerprint]) -> int:
    """How many photos these flags took down are still kept and not put back: what restoring
    them would look at."""
    return Notice.objects.kept_takedowns().filter(fingerprint__in=flags).count()


def restores_in_background(kept: int) -> bool:
    """Whether putting back ``kept`` photos is work for the task worker rather than the
    request (more than ``MODERATION_RESTORE_INLINE_MAX``: each is screened and stored)."""
    return kept > moderation_settings.RESTORE_INLINE_MAX


def restore_takedowns_later(*, flagged: FlaggedFingerprint, actor: AbstractBaseUser | None) -> None:
    """``restore_takedowns`` for ``flagged`` by the task worker, queued with the caller's
    transaction (``restore_takedowns_task``)."""
    enqueue_on_commit(restore_takedowns_task, flagged.pk, actor.pk if actor else None)


@task
def restore_takedowns_task(flagged_id: int, actor_id: int | None = None) -> dict:
    """Put back what unflagged flag ``flagged_id`` took down, for moderator ``actor_id`` (the
    audit rows name them). A worker killed part-way leaves the task to be run again; the rerun
    picks up the photos not yet put back (``restore_takedowns``)."""
    flagged = FlaggedFingerprint.objects.filter(pk=flagged_id).first()
    if flagged is None:
        return {"flag": flagged_id, "note": "flag missing"}
    actor = get_user_model()._default_manager.filter(pk=actor_id).first() if actor_id else None
    result = restore_takedowns(flagged=flagged, actor=actor)
    return {
        "flag": flagged_id,
        "restored": result.restored,
        "still_matched": result.still_matched,
        "skipped": result.skipped,
    }
