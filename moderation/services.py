"""Flag, unflag, take down, sweep and reindex: the only code that writes the banned set.

The admin, the management commands, the tasks and the views call these functions; none of them
touches ``FlaggedFingerprint`` or ``BannedSetChange`` directly. Arguments are keyword-only so a
call site reads as a sentence.

Files and transactions: a file is written *before* the rows that point at it and removed again
if the transaction fails; a public file is deleted only after the transaction that stopped
pointing at it has committed. So no row ever points at a missing file, and a rollback never
loses a photo.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import IO, Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.base import ContentFile
from django.db import IntegrityError, connection, models, transaction
from django.db.models import Count, Min, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from moderation import matching, registry
from moderation.hashing import (
    PIPELINE_VERSION,
    Fingerprint,
    check_fingerprints,
    fingerprint_variants,
    image_format,
    probes_from_bytes,
)
from moderation.models import (
    DEFAULT_HASH_LIST,
    AllowedMatch,
    AuditEvent,
    BannedSetChange,
    FingerprintVariant,
    FlaggedFingerprint,
    HashList,
    RefusedUpload,
    ReindexRun,
    ReviewItem,
    ReviewSubscription,
    ShadowHit,
    quarantine_storage,
)
from moderation.variants import VARIANTS

logger = logging.getLogger(__name__)

# Any constant works: it names the one PostgreSQL advisory lock that serialises writers of
# the banned-set change log, so change ids are handed out in commit order.
_BANNED_SET_LOCK_KEY = 0x6D6F645F62616E  # "mod_ban"

_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp"}


@dataclass(frozen=True)
class FlagResult:
    fingerprint: FlaggedFingerprint
    created: bool  # False when the image was already banned (the flag is still audited)


@dataclass
class SweepResult:
    checked: int = 0
    taken_down: list[str] = field(default_factory=list)
    queued: list[str] = field(default_factory=list)  # near misses put in the review queue


# --- helpers ----------------------------------------------------------------------------


def _lock_banned_set() -> None:
    """Serialise banned-set writers until commit (PostgreSQL; SQLite has one writer anyway).

    Without it two transactions could take change ids 10 and 11 and commit 11 first; a reader
    that saw 11 would never look at 10 again. The lock lasts until the transaction ends, so
    it must be taken inside ``transaction.atomic()``: in autocommit it would end at once.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("the banned-set lock must be taken inside transaction.atomic()")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_BANNED_SET_LOCK_KEY])


def _log_change(
    flagged: FlaggedFingerprint,
    variants: Iterable[FingerprintVariant] | None = None,
    *,
    active: bool | None = None,
) -> None:
    """Log every stored variant of ``flagged`` (its current rows by default) as
    ``active`` (by default: the flag is active and its hash list enabled), with the list's
    policy (distance, shadow mode) as it is now."""
    rows = flagged.variants.all() if variants is None else variants
    hash_list = HashList.objects.get(pk=flagged.hash_list_id)
    BannedSetChange.objects.bulk_create(
        BannedSetChange(
            fingerprint=flagged,
            variant=v.variant,
            dhash=v.dhash,
            phash=v.phash,
            information=flagged.information,
            active=(flagged.active and hash_list.enabled) if active is None else active,
            max_distance=hash_list.max_distance,
            shadow=hash_list.shadow,
            proposed_distance=hash_list.proposed_distance,
        )
        for v in rows
    )


class StorageUnavailable(OSError):
    """File storage failed (outage, network, permissions); nothing was changed. Retry later.

    An ``OSError`` so callers that already treat I/O failures as "could not read" keep working;
    a missing file stays ``FileNotFoundError``, which means something else (see take-down).
    """


def _storage_failures() -> tuple[type[BaseException], ...]:
    failures: list[type[BaseException]] = [OSError]
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:  # S3 support not installed: only local storage can fail
        pass
    else:
        failures += [BotoCoreError, ClientError]
    return tuple(failures)


@contextmanager
def storage_errors():
    """Turn storage failures into ``StorageUnavailable``; a missing file stays what it is."""
    try:
        yield
    except (FileNotFoundError, StorageUnavailable):
        raise
    except _storage_failures() as e:
        raise StorageUnavailable(f"file storage failed: {e}") from e


def _quarantine_name(folder: str, file: Any) -> str:
    ext = _EXTENSIONS.get(image_format(file) or "", "bin")
    return f"{folder}/{uuid.uuid4().hex}.{ext}"


def _copy_to_quarantine(file: Any, folder: str) -> str:
    """Copy an image into private storage under a random name; return the stored name."""
    name = _quarantine_name(folder, file)
    if hasattr(file, "seek"):
        file.seek(0)
    with storage_errors():
        stored = quarantine_storage().save(name, ContentFile(file.read()))
    if hasattr(file, "seek"):
        file.seek(0)
    return stored


def _delete_quietly(storage, name: str) -> None:
    try:
        storage.delete(name)
    except Exception:  # noqa: BLE001 - cleanup must not hide the error that caused it
        logger.exception("could not delete %s from %s", name, storage)


LOW_INFORMATION_MESSAGE = _(
    "This image carries too little detail to be recognised reliably (%(information)s of 64 "
    "fingerprint bits are informative; at least %(minimum)s are needed): near-flat images such as "
    "fog, sky or a plain wall look alike to the matcher, so banning it would also block innocent "
    "photos. It was not flagged. A superuser can flag it anyway; a match with it then sends an "
    "upload to review instead of blocking it."
)


def check_information(fp: Fingerprint, *, allow_low: bool, actor: AbstractBaseUser | None) -> bool:
    """The low-information gate of every flag. Returns True when ``fp`` is low-information.

    Raises ``ValidationError`` (code ``low_information``) unless ``allow_low``, which only a
    superuser (or a command run without a user) may use: ``PermissionDenied`` otherwise.
    """
    if not matching.is_low_information(fp.information):
        return False
    if not allow_low:
        raise ValidationError(
            LOW_INFORMATION_MESSAGE,
            code="low_information",
            params={"information": fp.information, "minimum": settings.MODERATION_MIN_INFORMATION},
        )
    if actor is not None and not actor.is_superuser:
        raise PermissionDenied("only a superuser may flag a low-information image")
    return True


def _override_note(reason: str, low: bool) -> str:
    return f"{reason} [low-information image, flagged by override]".strip() if low else reason


def _enqueue_sweep(fingerprint_ids: list[int] | None) -> None:
    from moderation.tasks import sweep_task  # tasks imports services

    transaction.on_commit(lambda: sweep_task.enqueue(fingerprint_ids=fingerprint_ids))


# --- flag / unflag ----------------------------------------------------------------------


def _variant_rows(flagged: FlaggedFingerprint, variants: list[Fingerprint]):
    """The rows of the variants a flag stores (``matching.stored_variants``)."""
    for number, fp in matching.stored_variants(variants):
        yield FingerprintVariant(
            flagged=flagged, variant=number, dhash=fp.signed, phash=fp.phash_signed
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
) -> FlagResult:
    """Insert the flag and its variants (or reuse the active flag with the same upright hash)
    and audit it. ``variants`` are ``fingerprint_variants`` of the image."""
    fp = variants[0]
    _lock_banned_set()
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
                    **({"hash_list": hash_list} if hash_list is not None else {}),
                )
                FingerprintVariant.objects.bulk_create(_variant_rows(flagged, variants))
        except IntegrityError:
            # Another moderator flagged the same image a moment ago (possible on SQLite,
            # where there is no advisory lock): one fingerprint, two audit rows.
            flagged = FlaggedFingerprint.objects.active().get(dhash=fp.signed)
            created = False
        else:
            _log_change(flagged)
    else:
        flagged = existing
    if not created and original_name and not flagged.original:
        flagged.original = original_name
        flagged.save(update_fields=["original"])
        original_name = ""
    AuditEvent.objects.create(
        action=AuditEvent.Action.FLAG,
        actor=actor,
        fingerprint=flagged,
        target=target,
        reason=reason,
        evidence=original_name if not created else "",
    )
    _enqueue_sweep([flagged.pk])
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
    low = check_information(fp, allow_low=allow_low_information, actor=actor)
    reason = _override_note(reason, low)
    already_kept = (
        FlaggedFingerprint.objects.active().filter(dhash=fp.signed).exclude(original="").exists()
    )
    # A re-flag of an image whose original is already kept adds an audit row, not another copy.
    stored = _copy_to_quarantine(file, "originals") if keep_original and not already_kept else ""
    try:
        with transaction.atomic():
            return _record_flag(
                variants=variants,
                reason=reason,
                source=source,
                actor=actor,
                original_name=stored,
                hash_list=hash_list,
            )
    except BaseException:
        if stored:
            _delete_quietly(quarantine_storage(), stored)
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
        locked = type(instance)._default_manager.select_for_update().get(pk=instance.pk)
        image = getattr(locked, target.file_field)
        if not image or (expected_name is not None and image.name != expected_name):
            return None
        public_name = image.name
        with storage_errors(), image.open("rb") as fh:
            variants = fingerprint_variants(fh)
            low = check_information(variants[0], allow_low=allow_low_information, actor=actor)
            reason = _override_note(reason, low)
            stored = _copy_to_quarantine(fh, "originals")
        try:
            label = target.label(locked)
            result = _record_flag(
                variants=variants,
                reason=reason,
                source=FlaggedFingerprint.Source.PROFILE_PHOTO,
                actor=actor,
                original_name=stored,
                target=label,
            )
            _clear_image(target, locked)
            AuditEvent.objects.create(
                action=AuditEvent.Action.TAKEDOWN,
                actor=actor,
                fingerprint=result.fingerprint,
                target=label,
                distance=0,
                reason=reason,
                evidence=stored,
            )
        except BaseException:
            _delete_quietly(quarantine_storage(), stored)
            raise
        _delete_after_commit(image.storage, public_name)
    instance.refresh_from_db()
    return result


def unflag_fingerprint(
    *, flagged: FlaggedFingerprint, actor: AbstractBaseUser | None = None, reason: str = ""
) -> bool:
    """Deactivate a banned fingerprint (never delete it). Returns False if it was inactive.

    Photos already taken down stay down: their evidence remains in quarantine for review.
    """
    with transaction.atomic():
        _lock_banned_set()
        locked = FlaggedFingerprint.objects.select_for_update().get(pk=flagged.pk)
        if not locked.active:
            return False
        locked.active = False
        locked.unflagged_by = actor
        locked.unflagged_at = timezone.now()
        locked.save(update_fields=["active", "unflagged_by", "unflagged_at"])
        _log_change(locked)
        AuditEvent.objects.create(
            action=AuditEvent.Action.UNFLAG, actor=actor, fingerprint=locked, reason=reason
        )
    flagged.refresh_from_db()
    return True


# --- hash lists, export and import ------------------------------------------------------


def hash_list_update(
    *,
    hash_list: HashList,
    max_distance: int | None,
    enabled: bool,
    mode: str,
    actor: AbstractBaseUser | None = None,
) -> HashList:
    """Change a list's distance, on/off switch or mode, and tell every process's index.

    Each active flag of the list is logged again with the new policy (switched off: as
    inactive), so the change is enforced by the next lookup everywhere. Costs one change row
    per stored variant of the list's flags; lists change rarely.
    """
    _check_list_distance(max_distance)
    with transaction.atomic():
        _lock_banned_set()
        locked = HashList.objects.select_for_update().get(pk=hash_list.pk)
        changed = (locked.max_distance, locked.enabled, locked.mode) != (
            max_distance,
            enabled,
            mode,
        )
        locked.max_distance, locked.enabled, locked.mode = max_distance, enabled, mode
        locked.save(update_fields=["max_distance", "enabled", "mode"])
        if changed:
            _log_list(locked)
            logger.info(
                "hash list %s: distance %s, %s, %s (by %s)",
                locked.name,
                max_distance,
                "enabled" if enabled else "disabled",
                mode,
                actor,
            )
    hash_list.refresh_from_db()
    return hash_list


def _log_list(hash_list: HashList) -> None:
    """Log every active flag of ``hash_list`` again with the list's policy as saved now."""
    for flagged in FlaggedFingerprint.objects.active().filter(hash_list=hash_list):
        _log_change(flagged)


def _check_list_distance(distance: int | None) -> None:
    if distance is not None and not 0 <= distance <= settings.MODERATION_REVIEW_DISTANCE:
        raise ValidationError(
            _("A list's distance must be from 0 to %(max)s (MODERATION_REVIEW_DISTANCE)."),
            code="distance",
            params={"max": settings.MODERATION_REVIEW_DISTANCE},
        )


def _audit_list(action: str, hash_list: HashList, actor, reason: str) -> None:
    AuditEvent.objects.create(
        action=action, actor=actor, target=f"hash list {hash_list.name}"[:200], reason=reason
    )


def hash_list_propose_distance(
    *, hash_list: HashList, distance: int, actor: AbstractBaseUser | None = None
) -> HashList:
    """Put a new dHash distance on trial for an enforced list, without enforcing it.

    From the next lookup in every process (the list's flags are logged again with the
    proposal), each accepted upload that the proposed distance would block or queue and the
    enforced one does not is recorded as a ``ShadowHit`` of kind "distance". Audited. Raises
    ``ValidationError`` for a distance out of range, equal to the enforced one, or a list that
    is switched off or in shadow mode (try a shadow list's distance by changing it directly).
    """
    if isinstance(distance, bool) or not isinstance(distance, int):
        raise ValidationError(_("The proposed distance must be a whole number."), code="distance")
    _check_list_distance(distance)
    with transaction.atomic():
        _lock_banned_set()
        locked = HashList.objects.select_for_update().get(pk=hash_list.pk)
        if not locked.enabled or locked.shadow:
            raise ValidationError(
                _("Only an enforcing list that is switched on can try a distance: %(state)s."),
                code="not_enforcing",
                params={"state": _("switched off") if not locked.enabled else _("shadow mode")},
            )
        if distance == locked.effective_distance:
            raise ValidationError(
                _("%(distance)s is the distance the list enforces already."),
                code="same_distance",
                params={"distance": distance},
            )
        locked.proposed_distance = distance
        locked.proposed_by = actor
        locked.proposed_at = timezone.now()
        locked.save(update_fields=["proposed_distance", "proposed_by", "proposed_at"])
        _log_list(locked)
        _audit_list(
            AuditEvent.Action.PROPOSE,
            locked,
            actor,
            f"distance {distance} on trial (enforced: {locked.effective_distance})",
        )
    hash_list.refresh_from_db()
    return hash_list


# Above this many flags, a sweep after widening a list compares the whole banned set.
_SWEEP_BY_IDS_LIMIT = 1000


def _locked_list_on_trial(hash_list: HashList) -> HashList:
    """The list, locked with the banned-set writers' lock (inside the caller's transaction);
    ``ValidationError`` (code ``no_trial``) when no distance is on trial."""
    _lock_banned_set()
    locked = HashList.objects.select_for_update().get(pk=hash_list.pk)
    if locked.proposed_distance is None:
        raise ValidationError(_("No distance is on trial for this list."), code="no_trial")
    return locked


def hash_list_promote_distance(
    *, hash_list: HashList, actor: AbstractBaseUser | None = None
) -> HashList:
    """Enforce the list's proposed distance: it becomes the list's distance, the trial ends,
    every process enforces it from its next lookup, and (when it is wider) the photos already
    stored are swept against the list after commit, as after a flag. Audited.
    ``ValidationError`` (code ``no_trial``) when nothing is on trial."""
    with transaction.atomic():
        locked = _locked_list_on_trial(hash_list)
        before = locked.effective_distance
        _check_list_distance(locked.proposed_distance)  # the setting may have shrunk since
        locked.max_distance = locked.proposed_distance
        locked.proposed_distance = None
        locked.save(update_fields=["max_distance", "proposed_distance"])
        _log_list(locked)
        if locked.max_distance > before:
            # Wider: photos stored before now within it are taken down (or queued), as after a
            # flag. A large list is swept as the whole banned set rather than by a huge id list.
            ids = list(
                FlaggedFingerprint.objects.active()
                .filter(hash_list=locked)
                .values_list("pk", flat=True)[: _SWEEP_BY_IDS_LIMIT + 1]
            )
            _enqueue_sweep(ids if len(ids) <= _SWEEP_BY_IDS_LIMIT else None)
        _audit_list(
            AuditEvent.Action.PROMOTE,
            locked,
            actor,
            f"distance {locked.max_distance} enforced (was {before})",
        )
    hash_list.refresh_from_db()
    return hash_list


def hash_list_discard_distance(
    *, hash_list: HashList, actor: AbstractBaseUser | None = None, reason: str = ""
) -> HashList:
    """End the list's trial without changing what it enforces. Audited; the hits recorded
    during the trial stay. ``ValidationError`` (code ``no_trial``) when nothing is on trial."""
    with transaction.atomic():
        locked = _locked_list_on_trial(hash_list)
        proposed = locked.proposed_distance
        locked.proposed_distance = None
        locked.save(update_fields=["proposed_distance"])
        _log_list(locked)
        _audit_list(
            AuditEvent.Action.DISCARD,
            locked,
            actor,
            f"distance {proposed} discarded (enforced stays {locked.effective_distance})"
            + (f": {reason}" if reason else ""),
        )
    hash_list.refresh_from_db()
    return hash_list


@dataclass(frozen=True)
class FingerprintRecord:
    """One banned image as ``export_fingerprints`` writes it and ``import_fingerprints`` reads
    it: everything the index holds for it, so an import reproduces the banned set exactly."""

    dhash: str  # upright dHash, 16 hex digits
    list: str
    reason: str
    source: str
    created: str  # ISO 8601
    pipeline_version: int
    information: int | None
    variants: tuple[tuple[int, str, str | None], ...]  # (variant, dHash hex, pHash hex)
    list_max_distance: int | None = None
    list_enabled: bool = True
    list_mode: str = HashList.Mode.ENFORCE


def _hex(signed: int | None) -> str | None:
    return None if signed is None else Fingerprint.from_signed(signed).hex


def fingerprint_records(queryset: models.QuerySet | None = None):
    """``FingerprintRecord`` of every active flag in ``queryset`` (default: all), oldest first."""
    rows = FlaggedFingerprint.objects.all() if queryset is None else queryset
    rows = rows.active().select_related("hash_list").prefetch_related("variants")
    for flagged in rows.order_by("flagged_at", "pk").iterator(chunk_size=2000):
        hash_list = flagged.hash_list
        yield FingerprintRecord(
            dhash=flagged.hex,
            list=hash_list.name,
            reason=flagged.reason,
            source=flagged.source,
            created=flagged.flagged_at.isoformat(),
            pipeline_version=flagged.pipeline_version,
            information=flagged.information,
            variants=tuple(
                (v.variant, _hex(v.dhash), _hex(v.phash)) for v in flagged.variants.all()
            ),
            list_max_distance=hash_list.max_distance,
            list_enabled=hash_list.enabled,
            list_mode=hash_list.mode,
        )


def import_fingerprint(
    *, record: FingerprintRecord, actor: AbstractBaseUser | None = None, dry_run: bool = False
) -> bool:
    """Add one exported banned image to the banned set. Returns False when its upright hash is
    already actively banned (so re-importing a file changes nothing).

    A list named in the record is created with the record's distance, switch and mode; an
    existing list keeps its own settings. Call inside ``transaction.atomic()``; the sweep of
    the new flags runs after commit. ``dry_run`` checks and writes nothing.
    """
    from datetime import datetime

    upright = Fingerprint.from_hex(record.dhash)
    variants = [
        (number, Fingerprint.from_hex(d).signed, None if p is None else to_signed(p))
        for number, d, p in record.variants
    ]
    if not variants or variants[0][:2] != (0, upright.signed):
        raise ValidationError(f"{record.dhash}: the first variant must be the upright dHash")
    numbers = [number for number, _, _ in variants]
    if len(set(numbers)) != len(numbers) or not all(0 <= n < len(VARIANTS) for n in numbers):
        # A variant this site does not know (an export from a newer version) has no index key.
        raise ValidationError(
            f"{record.dhash}: variants must be distinct numbers 0-{len(VARIANTS) - 1}, "
            f"got {numbers}"
        )
    created_at = datetime.fromisoformat(record.created)
    if record.source not in FlaggedFingerprint.Source.values:
        raise ValidationError(f"{record.dhash}: unknown source {record.source!r}")
    if record.list_mode not in HashList.Mode.values:
        raise ValidationError(f"{record.dhash}: unknown list mode {record.list_mode!r}")
    if dry_run:
        return not FlaggedFingerprint.objects.active().filter(dhash=upright.signed).exists()
    _lock_banned_set()
    if FlaggedFingerprint.objects.active().filter(dhash=upright.signed).exists():
        return False
    hash_list, _created = HashList.objects.get_or_create(
        name=record.list,
        defaults={
            "max_distance": record.list_max_distance,
            "enabled": record.list_enabled,
            "mode": record.list_mode,
        },
    )
    flagged = FlaggedFingerprint.objects.create(
        dhash=upright.signed,
        hash_list=hash_list,
        pipeline_version=record.pipeline_version,
        information=record.information,
        reason=record.reason,
        source=record.source,
        flagged_by=actor,
        flagged_at=created_at,
    )
    FingerprintVariant.objects.bulk_create(
        FingerprintVariant(flagged=flagged, variant=number, dhash=d, phash=p)
        for number, d, p in variants
    )
    _log_change(flagged)
    AuditEvent.objects.create(
        action=AuditEvent.Action.FLAG,
        actor=actor,
        fingerprint=flagged,
        reason=f"imported into list {hash_list.name}: {record.reason}".strip(),
    )
    _enqueue_sweep([flagged.pk])
    return True


def to_signed(hex_text: str) -> int:
    """A 16-digit hex hash as the signed 64-bit integer the database stores."""
    return Fingerprint.from_hex(hex_text).signed


# --- takedown and sweep -----------------------------------------------------------------


def _clear_image(target: registry.ImageTarget, instance: models.Model) -> None:
    fields = [target.file_field, target.hash_field, target.confirm_field, target.version_field]
    for name in fields:
        setattr(instance, name, "" if name == target.file_field else None)
    if target.probes_field:
        setattr(instance, target.probes_field, b"")
        fields.append(target.probes_field)
    instance.save(update_fields=fields)


def stored_fingerprint(target: registry.ImageTarget, instance: models.Model) -> Fingerprint | None:
    """The fingerprint a registered model stores for its image (None when it has none)."""
    signed = getattr(instance, target.hash_field)
    if signed is None:
        return None
    return Fingerprint.from_signed(
        signed,
        getattr(instance, target.version_field) or PIPELINE_VERSION,
        phash=getattr(instance, target.confirm_field),
    )


def stored_probes(
    target: registry.ImageTarget, instance: models.Model
) -> tuple[dict[int, Fingerprint], Fingerprint | None]:
    """The cuts and framed picture a registered model stores for its image (``probes_field``),
    as ``BannedIndex.check`` takes them; ({}, None) when it stores none."""
    if target.probes_field is None:
        return {}, None
    return probes_from_bytes(getattr(instance, target.probes_field))


def _delete_after_commit(storage, name: str) -> None:
    transaction.on_commit(lambda: _delete_quietly(storage, name))


def take_down_image(
    *,
    instance: models.Model,
    flagged: FlaggedFingerprint,
    distance: int,
    actor: AbstractBaseUser | None = None,
    reason: str = "",
) -> bool:
    """Move a stored image that matches a banned fingerprint into quarantine and clear it.

    Re-reads the row under a lock and gives up (returns False) if the image changed since the
    match was found, e.g. the user replaced it in the meantime.
    """
    target = registry.target_for(instance)
    expected = getattr(instance, target.hash_field)
    with transaction.atomic():
        locked = type(instance)._default_manager.select_for_update().get(pk=instance.pk)
        image = getattr(locked, target.file_field)
        if not image or getattr(locked, target.hash_field) != expected:
            return False
        public_name = image.name
        try:
            with storage_errors(), image.open("rb") as fh:
                stored = _copy_to_quarantine(fh, "takedowns")
        except FileNotFoundError:
            stored = ""  # already gone from storage: clear the row, record that in the audit
            reason = f"{reason} (file was missing from storage)".strip()
        try:
            _clear_image(target, locked)
            AuditEvent.objects.create(
                action=AuditEvent.Action.TAKEDOWN,
                actor=actor,
                fingerprint=flagged,
                target=target.label(locked),
                distance=distance,
                reason=reason or flagged.reason,
                evidence=stored,
            )
        except BaseException:
            if stored:
                _delete_quietly(quarantine_storage(), stored)
            raise
        if stored:
            _delete_after_commit(image.storage, public_name)
    return True


@dataclass
class ImpactPreview:
    """What flagging some stored images would take down besides themselves."""

    count: int = 0  # other stored images the sweep would take down
    nearest: list[tuple[models.Model, int]] = field(default_factory=list)  # (instance, distance)
    unreadable: int = 0  # selected images whose file could not be read


def preview_flag_impact(*, instances: Iterable[models.Model], limit: int = 12) -> ImpactPreview:
    """How many other stored images a flag of ``instances`` would take down, nearest first.

    Read-only. Fingerprints the selected files (every variant, as the flag will) and
    compares every stored image with them under the sweep's rule and the default list's
    policy, vectorised: each kind of stored image's dHash and pHash columns are loaded once
    into numpy arrays, and each selected variant is one XOR + popcount over them
    (``matching.HashColumns``), so 100k profiles cost milliseconds, not a Python loop.
    """
    preview = ImpactPreview()
    selected: set[tuple[str, int]] = set()
    entries: list[tuple[int, Fingerprint, bool]] = []  # (variant, fingerprint, low information)
    default = HashList.objects.filter(name=DEFAULT_HASH_LIST).first()  # read-only: no create
    for instance in instances:
        target = registry.target_for(instance)
        selected.add((target.key, instance.pk))
        image = getattr(instance, target.file_field)
        try:
            with storage_errors(), image.open("rb") as fh:
                variants = fingerprint_variants(fh)
        except (OSError, ValidationError):
            preview.unreadable += 1
            continue
        low = matching.is_low_information(variants[0].information)
        entries += [(number, fp, low) for number, fp in matching.stored_variants(variants)]
    if not entries or (default is not None and (not default.enabled or default.shadow)):
        return preview
    rule = matching.MatchRule.from_settings()
    list_distance = default.max_distance if default is not None else None
    hits: list[tuple[int, str, int]] = []
    for target in registry.targets():
        rows = target.model._default_manager.exclude(**{f"{target.hash_field}__isnull": True})
        probes = (target.probes_field,) if target.probes_field else ()
        columns = matching.HashColumns.load(
            rows.values_list("pk", target.hash_field, target.confirm_field, *probes)
        )
        pks, nearest = columns.nearest_matches(entries, rule=rule, list_distance=list_distance)
        hit = nearest >= 0
        for pk, distance in zip(pks[hit].tolist(), nearest[hit].tolist()):
            if (target.key, pk) not in selected:
                hits.append((distance, target.key, pk))
    preview.count = len(hits)
    for distance, key, pk in sorted(hits)[:limit]:
        instance = registry.target_by_key(key).model._default_manager.filter(pk=pk).first()
        if instance is not None:
            preview.nearest.append((instance, distance))
    return preview


def sweep_banned_matches(*, fingerprint_ids: Iterable[int] | None = None) -> SweepResult:
    """Take down every stored image within the match distance of a banned fingerprint, and
    queue for review every one that is only near it (what an upload would get as ``review``).

    The allowlist applies as at upload: an image a moderator allowed for a fingerprint is
    neither taken down nor queued because of it. A near miss already pending is not queued
    again, so running the sweep twice adds nothing.

    With ``fingerprint_ids`` (the normal case, right after a flag) only those fingerprints are
    compared; without, the whole active banned set is (after a reindex). Every stored image is
    compared from its stored hash, so the cost is one pass over the image table.
    """
    result = SweepResult()
    rule = matching.MatchRule.from_settings()
    if fingerprint_ids is None:
        banned = matching.banned_set()
        banned.sync()

        def verdict(fp: Fingerprint, cuts, inner) -> matching.Verdict:
            return banned.check(fp, rule=rule, sync=False, cuts=cuts, inner=inner)

    else:
        index = matching.BannedIndex()
        index.build(matching.variant_entries(matching.active_variant_rows(fingerprint_ids)))
        if not len(index):
            return result

        def verdict(fp: Fingerprint, cuts, inner) -> matching.Verdict:
            return index.check(fp, rule, cuts=cuts, inner=inner)

    for target in registry.targets():
        rows = target.model._default_manager.exclude(**{f"{target.hash_field}__isnull": True})
        hits: list[tuple[int, int, int]] = []
        near: list[tuple[int, Fingerprint, matching.Match]] = []
        # The stored probes (cuts, framed picture) too, compared as at upload.
        columns = ("pk", target.hash_field, target.confirm_field, target.probes_field or "pk")
        for pk, signed, phash, probes in rows.values_list(*columns).iterator(chunk_size=5000):
            result.checked += 1
            fp = Fingerprint.from_signed(signed, phash=phash)
            cuts, inner = probes_from_bytes(probes) if target.probes_field else ({}, None)
            found = verdict(fp, cuts, inner)
            if found.decision != matching.PASS:  # rare: only then is the allowlist read
                found = matching.without_allowed(found, fp)
            if found.blocked:
                hits.append((pk, found.matches[0].fingerprint_id, found.matches[0].distance))
            elif found.decision == matching.REVIEW:
                near.append((pk, fp, found.for_review))
        for pk, fid, dist in hits:
            instance = target.model._default_manager.filter(pk=pk).first()
            flagged = FlaggedFingerprint.objects.filter(pk=fid).first()
            if instance is None or flagged is None:
                continue
            if take_down_image(instance=instance, flagged=flagged, distance=dist):
                result.taken_down.append(target.label(instance))
        for pk, fp, match in near:
            # Near, not blockable: a moderator looks, as for an upload (once while pending).
            instance = target.model._default_manager.filter(
                pk=pk, **{target.hash_field: fp.signed}
            ).first()
            if instance is None or not getattr(instance, target.file_field):
                continue
            item = queue_for_review(
                instance=instance, fingerprint=fp, match=match, found_by=ReviewItem.FoundBy.SWEEP
            )
            if item is not None:
                result.queued.append(target.label(instance))
        if fingerprint_ids is None:
            rows.update(**{target.checked_field: timezone.now()})
    return result


def recheck_stored_image(*, instance: models.Model) -> bool:
    """Compare one stored image with the current banned set; take it down if it matches.

    Runs after an upload commits: an upload that passed its check just before a flag
    committed is caught here (the flag's own sweep could not see the uncommitted upload).
    An image that is only near a banned fingerprint is queued for review instead.
    """
    target = registry.target_for(instance)
    fp = stored_fingerprint(target, instance)
    if fp is None:
        return False
    cuts, inner = stored_probes(target, instance)
    verdict = matching.check(fp, cuts=cuts, inner=inner)
    if verdict.shadow and not verdict.blocked:
        record_shadow_hits(instance=instance, fingerprint=fp, matches=verdict.shadow)
    if verdict.trial and not verdict.blocked:
        record_trial_hits(instance=instance, fingerprint=fp, trials=verdict.trial)
    if verdict.decision == matching.REVIEW:
        queue_for_review(instance=instance, fingerprint=fp, match=verdict.for_review)
        return False
    if not verdict.blocked:
        return False
    nearest = verdict.matches[0]
    flagged = FlaggedFingerprint.objects.get(pk=nearest.fingerprint_id)
    return take_down_image(instance=instance, flagged=flagged, distance=nearest.distance)


def record_refused_upload(
    *,
    user: AbstractBaseUser | None,
    ip: str | None,
    code: str,
    fingerprint: Fingerprint | None = None,
    match: matching.Match | None = None,
) -> RefusedUpload:
    """Remember a refused upload for moderators (who, from where, why, what it was near).

    Called by the upload view for every refusal, banned or not decodable. Nothing of it is shown
    to the user; a run of ``banned_image`` rows from one user is someone probing the threshold.
    """
    return RefusedUpload.objects.create(
        user=user if user is not None and user.is_authenticated else None,
        ip=ip,
        code=code[:40],
        dhash=fingerprint.signed if fingerprint is not None else None,
        nearest_id=match.fingerprint_id if match is not None else None,
        distance=match.distance if match is not None else None,
        found_by=match.found_by if match is not None else "",
    )


# --- review queue and allowlist ---------------------------------------------------------


def queue_for_review(
    *,
    instance: models.Model,
    fingerprint: Fingerprint,
    match: matching.Match,
    found_by: str = ReviewItem.FoundBy.UPLOAD,
) -> ReviewItem | None:
    """Put a stored image that is near a banned fingerprint in the review queue (once per image
    and fingerprint while pending). Returns None when it is already queued. ``found_by``: the
    upload's recheck, or a sweep over stored images after a flag."""
    target = registry.target_for(instance)
    name = getattr(instance, target.file_field).name
    owner = getattr(instance, f"{target.owner_field}_id", None) if target.owner_field else None
    try:
        with transaction.atomic():
            item, created = ReviewItem.objects.get_or_create(
                target_key=target.key,
                object_id=instance.pk,
                file_name=name,
                fingerprint_id=match.fingerprint_id,
                status=ReviewItem.Status.PENDING,
                defaults={
                    "target": target.label(instance),
                    "dhash": fingerprint.signed,
                    "phash": fingerprint.phash_signed,
                    "uploader_id": owner,
                    "distance": match.distance,
                    "confirm_distance": match.confirm_distance,
                    "found_by": found_by,
                },
            )
    except IntegrityError:  # queued by another process a moment ago
        return None
    if not created:
        return None
    transaction.on_commit(lambda: notify_review_subscribers())
    return item


def record_shadow_hits(
    *, instance: models.Model, fingerprint: Fingerprint, matches: list[matching.Match]
) -> list[ShadowHit]:
    """Record that shadow-mode lists would have blocked this stored image (one row per flag)."""
    target = registry.target_for(instance)
    owner = getattr(instance, f"{target.owner_field}_id", None) if target.owner_field else None
    lists = dict(
        FlaggedFingerprint.objects.filter(pk__in=[m.fingerprint_id for m in matches]).values_list(
            "pk", "hash_list_id"
        )
    )
    return ShadowHit.objects.bulk_create(
        ShadowHit(
            hash_list_id=lists[m.fingerprint_id],
            fingerprint_id=m.fingerprint_id,
            target_key=target.key,
            object_id=instance.pk,
            target=target.label(instance),
            dhash=fingerprint.signed,
            distance=m.distance,
            confirm_distance=m.confirm_distance,
            uploader_id=owner,
        )
        for m in matches
        if m.fingerprint_id in lists
    )


def record_trial_hits(
    *, instance: models.Model, fingerprint: Fingerprint, trials: list[matching.Trial]
) -> list[ShadowHit]:
    """Record what lists' proposed distances would have done to this stored image and their
    enforced distances did not ("would be blocked at proposed distance N"), one row per flag."""
    target = registry.target_for(instance)
    owner = getattr(instance, f"{target.owner_field}_id", None) if target.owner_field else None
    lists = dict(
        FlaggedFingerprint.objects.filter(
            pk__in=[t.match.fingerprint_id for t in trials]
        ).values_list("pk", "hash_list_id")
    )
    return ShadowHit.objects.bulk_create(
        ShadowHit(
            kind=ShadowHit.Kind.DISTANCE,
            outcome=t.outcome,
            proposed_distance=t.match.proposed_distance,
            enforced_distance=t.enforced_distance,
            hash_list_id=lists[t.match.fingerprint_id],
            fingerprint_id=t.match.fingerprint_id,
            target_key=target.key,
            object_id=instance.pk,
            target=target.label(instance),
            dhash=fingerprint.signed,
            distance=t.match.distance,
            confirm_distance=t.match.confirm_distance,
            uploader_id=owner,
        )
        for t in trials
        if t.match.fingerprint_id in lists
    )


def review_subscription_set(*, user: AbstractBaseUser, subscribed: bool) -> bool:
    """Opt a moderator in to (or out of) an email whenever the review queue grows."""
    if subscribed:
        ReviewSubscription.objects.get_or_create(user=user)
    else:
        ReviewSubscription.objects.filter(user=user).delete()
    return subscribed


def _may_review(user) -> bool:
    return bool(
        user.is_active
        and user.is_staff
        and user.email
        and user.has_perm("moderation.review_upload")
    )


def _review_digest(count: int, oldest, now) -> tuple[str, str]:
    """Subject and body of a review-queue email: how many wait, the oldest's age, a link (no
    image, hash or user name)."""
    from django.urls import reverse
    from django.utils.timesince import timesince

    url = settings.MODERATION_SITE_URL.rstrip("/") + reverse(
        "admin:moderation_reviewitem_changelist"
    )
    minutes = settings.MODERATION_REVIEW_NOTIFY_MINUTES
    every = f"at most one of these every {minutes} minutes" if minutes else "one per queued upload"
    waiting = "1 upload waits" if count == 1 else f"{count} uploads wait"
    return (
        f"[moderation] review queue: {count} waiting",
        f"{waiting} in the review queue; the oldest has waited {timesince(oldest, now)}.\n\n"
        f"Review them: {url}?status__exact=pending\n\n"
        f"You get {every} because you opted in on the review queue page.",
    )


def notify_review_subscribers(*, owed_only: bool = False) -> int:
    """Email each subscribed moderator who may still decide queued uploads a summary of the
    queue, at most once per ``MODERATION_REVIEW_NOTIFY_MINUTES``. Returns how many were sent.

    Called after an upload is queued (and, with ``owed_only``, by the deferred digest task).
    Each subscriber's send is claimed with one conditional UPDATE of ``last_notified_at``, so
    several processes queueing at once send one mail, not one each. A subscriber still inside
    the period is marked as owed (``pending_since``); with a worker backend that can defer
    tasks, a digest task is scheduled for the end of the period, otherwise the next queued
    upload after it sends the summary. A mail failure is logged, never raised at the upload,
    and the claim is given back.
    """
    from django.core.mail import send_mail

    period = timedelta(minutes=settings.MODERATION_REVIEW_NOTIFY_MINUTES)
    now = timezone.now()
    subscriptions = ReviewSubscription.objects.select_related("user")
    if owed_only:
        subscriptions = subscriptions.filter(pending_since__isnull=False)
    eligible = [sub for sub in subscriptions if _may_review(sub.user)]
    if not eligible:
        return 0
    summary = ReviewItem.objects.pending().aggregate(count=Count("pk"), oldest=Min("created_at"))
    if not summary["count"]:  # decided meanwhile: nothing to tell anyone
        ReviewSubscription.objects.filter(pk__in=[s.pk for s in eligible]).update(
            pending_since=None
        )
        return 0
    subject, body = _review_digest(summary["count"], summary["oldest"], now)
    sent = 0
    for sub in eligible:
        due = Q(last_notified_at__isnull=True) | Q(last_notified_at__lte=now - period)
        claimed = (
            ReviewSubscription.objects.filter(pk=sub.pk)
            .filter(due)
            .update(last_notified_at=now, pending_since=None)
        )
        if not claimed:
            owed = ReviewSubscription.objects.filter(pk=sub.pk, pending_since__isnull=True).update(
                pending_since=now
            )
            if owed or owed_only:  # newly owed, or a digest that ran early: (re)schedule
                last = (
                    ReviewSubscription.objects.filter(pk=sub.pk)
                    .values_list("last_notified_at", flat=True)
                    .first()
                )
                _schedule_review_digest((last or now) + period)
            continue
        try:
            send_mail(subject, body, None, [sub.user.email])
        except Exception:  # noqa: BLE001 - a mail outage must not break the upload's recheck
            logger.exception("could not email review-queue subscriber %s", sub.user_id)
            ReviewSubscription.objects.filter(pk=sub.pk, last_notified_at=now).update(
                last_notified_at=sub.last_notified_at, pending_since=sub.pending_since or now
            )
        else:
            sent += 1
    return sent


def _schedule_review_digest(when) -> None:
    """Run the owed digest at ``when`` in the worker; the immediate backend cannot wait, so
    there the next queued upload after the period sends it."""
    from moderation.tasks import review_digest_task

    if not review_digest_task.get_backend().supports_defer:
        return
    transaction.on_commit(lambda: review_digest_task.using(run_after=when).enqueue())


def _decide(item: ReviewItem, status: str, actor: AbstractBaseUser | None) -> bool:
    updated = ReviewItem.objects.filter(pk=item.pk, status=ReviewItem.Status.PENDING).update(
        status=status, decided_by=actor, decided_at=timezone.now()
    )
    item.refresh_from_db()
    return bool(updated)


def review_ban(*, item: ReviewItem, actor: AbstractBaseUser | None, reason: str = "") -> bool:
    """Ban a queued image: flag it through ``flag_stored_image`` (take-down, sweep, audit).

    Returns False when the item was already decided, or the image has been replaced or
    removed since it was queued (the item is then closed as gone). A low-information image
    raises ``ValidationError`` as in ``flag_image``, and nothing changes.
    """
    if item.status != ReviewItem.Status.PENDING:
        return False
    target = registry.target_by_key(item.target_key)
    instance = target.model._default_manager.filter(pk=item.object_id).first()
    reason = reason or f"banned from the review queue (near {item.fingerprint.hex})"
    result = None
    if instance is not None:
        result = flag_stored_image(
            instance=instance, reason=reason, actor=actor, expected_name=item.file_name
        )
    if result is None:
        _decide(item, ReviewItem.Status.GONE, actor)
        return False
    return _decide(item, ReviewItem.Status.BANNED, actor)


def review_dismiss(*, item: ReviewItem, actor: AbstractBaseUser | None, reason: str = "") -> bool:
    """Dismiss a queued image: it is innocent. Records an allowlist exception
    (``AllowedMatch``) so the same image is not refused or queued again for that fingerprint,
    and suspends the fingerprint once it has more than ``MODERATION_MAX_DISMISSALS``
    dismissals (a flag that keeps catching innocent images). Returns False if already decided.
    """
    with transaction.atomic():
        if not _decide(item, ReviewItem.Status.DISMISSED, actor):
            return False
        AllowedMatch.objects.create(
            fingerprint_id=item.fingerprint_id, dhash=item.dhash, review_item=item, created_by=actor
        )
        AuditEvent.objects.create(
            action=AuditEvent.Action.DISMISS,
            actor=actor,
            fingerprint_id=item.fingerprint_id,
            target=item.target,
            distance=item.distance,
            reason=reason or "not a match: allowed for this fingerprint",
        )
        dismissals = (
            AllowedMatch.objects.in_force().filter(fingerprint_id=item.fingerprint_id).count()
        )
        limit = settings.MODERATION_MAX_DISMISSALS
        if limit and dismissals > limit:
            suspend_fingerprint(flagged=item.fingerprint, dismissals=dismissals)
    return True


def allowed_match_revoke(
    *, allowed: AllowedMatch, actor: AbstractBaseUser | None, reason: str = ""
) -> bool:
    """Revoke an allowlist exception: the image is refused or queued again for that
    fingerprint from the next lookup in every process (the allowlist is read from the
    database at each lookup, never cached). The row is kept, marked revoked, and audited.
    Returns False when it was already revoked. A suspended fingerprint stays suspended: that
    is for a moderator to undo by flagging again.
    """
    with transaction.atomic():
        revoked = AllowedMatch.objects.filter(pk=allowed.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now(), revoked_by=actor
        )
        if revoked:
            AuditEvent.objects.create(
                action=AuditEvent.Action.REVOKE,
                actor=actor,
                fingerprint_id=allowed.fingerprint_id,
                target=f"allowed image {Fingerprint.from_signed(allowed.dhash).hex}",
                reason=reason or "allowlist exception revoked",
            )
    allowed.refresh_from_db()
    return bool(revoked)


def suspend_fingerprint(*, flagged: FlaggedFingerprint, dismissals: int) -> bool:
    """Deactivate a fingerprint that moderators keep dismissing matches of, and say why."""
    reason = (
        f"suspended automatically: {dismissals} dismissed matches "
        f"(more than MODERATION_MAX_DISMISSALS={settings.MODERATION_MAX_DISMISSALS})"
    )
    if not unflag_fingerprint(flagged=flagged, actor=None, reason=reason):
        return False
    FlaggedFingerprint.objects.filter(pk=flagged.pk).update(suspended=True)
    AuditEvent.objects.create(action=AuditEvent.Action.SUSPEND, fingerprint=flagged, reason=reason)
    flagged.refresh_from_db()
    logger.warning("fingerprint #%s %s", flagged.pk, reason)
    return True


# --- reindex ----------------------------------------------------------------------------

ORIGINALS_KEY = "moderation.flaggedfingerprint.original"


@dataclass
class BatchResult:
    key: str
    processed: int = 0
    changed: int = 0
    missing: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    last_pk: int = 0
    done: bool = False


def reindex_keys() -> list[str]:
    """Every kind of stored image reindex walks through, originals first."""
    return [ORIGINALS_KEY] + [t.key for t in registry.targets()]


def reindex_open_run(*, restart: bool = False) -> ReindexRun:
    """The unfinished run to resume, or a new one (``restart`` abandons an unfinished run)."""
    with transaction.atomic():
        unfinished = (
            ReindexRun.objects.select_for_update()
            .filter(finished_at__isnull=True, pipeline_version=PIPELINE_VERSION)
            .first()
        )
        if unfinished and not restart:
            return unfinished
        if unfinished:
            unfinished.finished_at = timezone.now()
            unfinished.counts = {**unfinished.counts, "abandoned": True}
            unfinished.save(update_fields=["finished_at", "counts"])
        return ReindexRun.objects.create(pipeline_version=PIPELINE_VERSION)


def _read_fingerprint(fieldfile) -> tuple[list[Fingerprint], bytes | None]:
    """``([fingerprint], packed probes)`` of a stored file (``CheckFingerprints.probe_bytes``);
    for a flag's original, every variant and no probes."""
    with fieldfile.open("rb") as fh:
        if isinstance(fieldfile.instance, FlaggedFingerprint):
            return fingerprint_variants(fh), None
        checked = check_fingerprints(fh)
        return [checked.frames[0]], checked.probe_bytes()


def _stored_upright(flagged: FlaggedFingerprint) -> Fingerprint:
    phash = (
        FingerprintVariant.objects.filter(flagged=flagged, variant=0)
        .values_list("phash", flat=True)
        .first()
    )
    return Fingerprint.from_signed(flagged.dhash, flagged.pipeline_version, phash=phash)


def reindex_batch(
    *, run: ReindexRun | None, key: str, batch_size: int, after: int | None = None
) -> BatchResult:
    """Re-fingerprint the next ``batch_size`` images of one kind and commit them with the cursor.

    ``run=None`` is a dry run: nothing is written and ``after`` gives the cursor instead.
    An interrupted run loses at most the batch in flight, which the next run redoes.
    """
    cursor = run.cursors.get(key, 0) if run is not None else (after or 0)
    result = BatchResult(key=key)
    if key == ORIGINALS_KEY:
        queryset = FlaggedFingerprint.objects.exclude(original="")
        file_field = "original"
    else:
        target = next(t for t in registry.targets() if t.key == key)
        queryset = target.with_images()
        file_field = target.file_field
    batch = list(queryset.filter(pk__gt=cursor).order_by("pk")[:batch_size])
    if not batch:
        result.done = True
        return result

    updates: list[tuple[models.Model, list[Fingerprint], bytes | None]] = []
    missing: list[models.Model] = []
    for obj in batch:
        result.processed += 1
        fieldfile = getattr(obj, file_field)
        try:
            fps, probes = _read_fingerprint(fieldfile)
        except FileNotFoundError:
            result.missing.append(f"{obj._meta.label_lower} #{obj.pk}: {fieldfile.name}")
            missing.append(obj)
            continue
        except ValidationError as e:
            result.unreadable.append(f"{obj._meta.label_lower} #{obj.pk}: {e.messages[0]}")
            continue
        stored = _stored_upright(obj) if key == ORIGINALS_KEY else stored_fingerprint(target, obj)
        probes_changed = (
            key != ORIGINALS_KEY
            and target.probes_field is not None
            and bytes(getattr(obj, target.probes_field) or b"") != probes
        )
        if (
            stored is None
            or (stored.dhash, stored.phash) != (fps[0].dhash, fps[0].phash)
            or probes_changed
        ):
            result.changed += 1
        updates.append((obj, fps, probes))

    last_pk = result.last_pk = batch[-1].pk
    if run is None:
        return result
    with transaction.atomic():
        if key == ORIGINALS_KEY:
            _reindex_originals([(obj, fps) for obj, fps, _ in updates])
        else:
            _reindex_images(target, updates)
            _mark_missing(target, missing)
        run.cursors = {**run.cursors, key: last_pk}
        counts = dict(run.counts)
        for name, value in (
            ("processed", result.processed),
            ("changed", result.changed),
            ("missing", len(result.missing)),
            ("unreadable", len(result.unreadable)),
        ):
            counts[name] = counts.get(name, 0) + value
        run.counts = counts
        run.save(update_fields=["cursors", "counts"])
    return result


def _reindex_images(target: registry.ImageTarget, updates) -> None:
    now = timezone.now()
    for obj, (fp,), probes in updates:
        also = {target.missing_field: None} if target.missing_field else {}
        if target.probes_field:
            also[target.probes_field] = probes
        # Update by pk and old hash only: a photo replaced meanwhile keeps its fresh hash.
        target.model._default_manager.filter(
            pk=obj.pk, **{target.hash_field: getattr(obj, target.hash_field)}
        ).update(
            **{
                target.hash_field: fp.signed,
                target.confirm_field: fp.phash_signed,
                target.version_field: fp.pipeline_version,
                target.checked_field: now,
                **also,  # found again (not missing), packed probes
            }
        )


def _mark_missing(target: registry.ImageTarget, objs: list[models.Model]) -> None:
    """Hide stored images whose file is gone, and audit each the first time it is found gone.

    The row keeps its hash: a missing file is not evidence of anything, so sweeps go on
    comparing the stored hash with the banned set (and take it down if it matches). A later
    reindex that finds the file again (restored from a backup) shows it again.
    """
    if not target.missing_field:
        return
    now = timezone.now()
    for obj in objs:
        name = getattr(obj, target.file_field).name
        marked = target.model._default_manager.filter(
            pk=obj.pk, **{target.file_field: name, f"{target.missing_field}__isnull": True}
        ).update(**{target.missing_field: now})
        if marked:
            AuditEvent.objects.create(
                action=AuditEvent.Action.MISSING,
                target=target.label(obj),
                reason=f"{name} is missing from storage (found by reindex); hidden from pages",
            )


def _reindex_originals(updates) -> None:
    _lock_banned_set()
    for flagged, variants in updates:
        fp = variants[0]
        stored = set(
            FingerprintVariant.objects.filter(flagged=flagged).values_list(
                "variant", "dhash", "phash"
            )
        )
        fresh = {(v.variant, v.dhash, v.phash) for v in _variant_rows(flagged, variants)}
        if (
            flagged.dhash == fp.signed
            and flagged.pipeline_version == fp.pipeline_version
            and flagged.information == fp.information
            and stored == fresh
        ):
            continue
        flagged.refresh_from_db()
        flagged.dhash = fp.signed
        flagged.pipeline_version = fp.pipeline_version
        flagged.information = fp.information
        # Variants are derived rows: replaced whole, in the same transaction as their flag.
        old = list(FingerprintVariant.objects.filter(flagged=flagged))
        _log_change(flagged, old, active=False)
        FingerprintVariant.objects.filter(flagged=flagged).delete()
        FingerprintVariant.objects.bulk_create(_variant_rows(flagged, variants))
        keeper = flagged.active and (
            FlaggedFingerprint.objects.active().filter(dhash=fp.signed).exclude(pk=flagged.pk)
        ).first()
        if keeper:
            # Under the new pipeline two flags became one hash: keep the older one active.
            flagged.active = False
            flagged.unflagged_at = timezone.now()
            AuditEvent.objects.create(
                action=AuditEvent.Action.UNFLAG,
                fingerprint=flagged,
                reason=f"reindex: same fingerprint as #{keeper.pk} under the current pipeline",
            )
        flagged.save(
            update_fields=["dhash", "pipeline_version", "information", "active", "unflagged_at"]
        )
        _log_change(flagged)


def reindex_finish(*, run: ReindexRun, sweep: bool = True) -> SweepResult | None:
    """(Normally) sweep every stored image against the refreshed banned set, then close the run.

    The run is closed only after the sweep: if the sweep is interrupted, the next reindex
    resumes this run, finds every batch done and sweeps again (takedowns are idempotent).
    """
    result = sweep_banned_matches() if sweep else None
    run.finished_at = timezone.now()
    run.save(update_fields=["finished_at"])
    return result
