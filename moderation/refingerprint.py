"""Re-fingerprinting one batch of stored images: read each file, compare, commit the changes.

The core of a reindex (``moderation/reindex.py`` cuts the work into ranges and runs them): a
batch of one kind of stored image (the kept originals of flags, or a registered image field) is
read from storage and fingerprinted with the current pipeline (``read_batch``, no writes), then
its changes are written (``write_batch``), by the caller in the transaction that also commits
its range's cursor. A flag's new variants go through the banned set's change log, so every
process enforces them at its next lookup.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from moderation import registry
from moderation.banned_set import lock_banned_set, log_change
from moderation.flagging import variant_rows
from moderation.hashing import (
    CheckFingerprints,
    Fingerprint,
    check_fingerprints,
    fingerprint_variants,
)
from moderation.models import AuditEvent, FingerprintVariant, FlaggedFingerprint
from moderation.screening import signal_of_file
from moderation.stored_hashes import Digests, file_digests

ORIGINALS_KEY = "moderation.flaggedfingerprint.original"


@dataclass
class BatchResult:
    key: str
    processed: int = 0
    changed: int = 0
    missing: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    last_pk: int = 0
    done: bool = False  # nothing was left of this kind (in this range): the batch is empty


@dataclass
class Batch:
    """What ``read_batch`` found, to be written by ``write_batch``."""

    result: BatchResult
    updates: list = field(default_factory=list)  # (row, Original | CheckFingerprints)
    missing: list[models.Model] = field(default_factory=list)
    # A stored image's file digests (MD5, SHA-256) by pk, for its signals row.
    digests: dict[int, Digests] = field(default_factory=dict)


def reindex_keys() -> list[str]:
    """Every kind of stored image reindex walks through, originals first."""
    return [ORIGINALS_KEY] + [t.key for t in registry.targets()]


def stored_rows(key: str) -> models.QuerySet:
    """The rows of one kind that have a stored file to re-read."""
    if key == ORIGINALS_KEY:
        return FlaggedFingerprint.objects.exclude(original="")
    return registry.target_by_key(key).with_images()


class Original(NamedTuple):
    """What a flag's kept original gives now: every variant's fingerprint, and the signal that
    verifies its candidates."""

    variants: list[Fingerprint]
    signal: bytes


def _read_fingerprints(fieldfile) -> Original | tuple[CheckFingerprints, Digests]:
    """What a stored file is fingerprinted with now: a flag's original, every variant and its
    verification signal; any other stored image, as it was checked (its own picture, cuts,
    framed picture), with its bytes' digests. The one place reindex opens a stored file."""
    with fieldfile.open("rb") as fh:
        if isinstance(fieldfile.instance, FlaggedFingerprint):
            return Original(fingerprint_variants(fh), signal_of_file(fh))
        checked = check_fingerprints(fh)
        fh.seek(0)
        return CheckFingerprints(checked.frames[:1], checked.cuts, checked.inner), file_digests(fh)


def _stored_upright(flagged: FlaggedFingerprint) -> Fingerprint:
    phash = (
        FingerprintVariant.objects.filter(flagged=flagged, variant=0)
        .values_list("phash", flat=True)
        .first()
    )
    return Fingerprint.from_signed(flagged.dhash, flagged.pipeline_version, phash=phash)


def read_batch(key: str, *, after: int, batch_size: int, upto: int | None = None) -> Batch:
    """Read and re-fingerprint the next ``batch_size`` stored images of one kind with
    ``after < pk <= upto``; writes nothing. An empty batch has ``result.done`` set."""
    result = BatchResult(key=key)
    originals = key == ORIGINALS_KEY
    target = None if originals else registry.target_by_key(key)
    queryset = stored_rows(key).filter(pk__gt=after)
    if upto is not None:
        queryset = queryset.filter(pk__lte=upto)
    rows = list(queryset.order_by("pk")[:batch_size])
    batch = Batch(result)
    if not rows:
        result.done = True
        return batch
    for obj in rows:
        result.processed += 1
        fieldfile = obj.original if originals else target.image(obj)
        try:
            fresh = _read_fingerprints(fieldfile)
        except FileNotFoundError:
            result.missing.append(f"{obj._meta.label_lower} #{obj.pk}: {fieldfile.name}")
            batch.missing.append(obj)
            continue
        except ValidationError as e:
            result.unreadable.append(f"{obj._meta.label_lower} #{obj.pk}: {e.messages[0]}")
            continue
        if not originals:
            fresh, batch.digests[obj.pk] = fresh
        if originals:
            stored, fp = _stored_upright(obj), fresh.variants[0]
            probes_changed = bytes(obj.verification or b"") != fresh.signal
        else:
            stored, fp = target.fingerprint(obj), fresh.frames[0]
            probes_changed = bool(target.probes_field) and (
                target.probe_bytes(obj) != fresh.probe_bytes()
            )
        if stored is None or (stored.dhash, stored.phash) != (fp.dhash, fp.phash) or probes_changed:
            result.changed += 1
        batch.updates.append((obj, fresh))
    result.last_pk = rows[-1].pk
    return batch


def write_batch(batch: Batch) -> None:
    """Store what ``read_batch`` found; call inside the transaction that commits the cursor."""
    key = batch.result.key
    if key == ORIGINALS_KEY:
        _reindex_originals(batch.updates)
        return
    target = registry.target_by_key(key)
    target.refresh_fingerprints(
        ((obj.pk, target.hash_of(obj), checked) for obj, checked in batch.updates),
        digests=batch.digests,
    )
    _mark_missing(target, batch.missing)


def _mark_missing(target: registry.ImageTarget, objs: list[models.Model]) -> None:
    """Hide stored images whose file is gone, and audit each the first time it is found gone.

    The row keeps its hash: a missing file is not evidence of anything, so sweeps go on
    comparing the stored hash with the banned set (and take it down if it matches). A later
    reindex that finds the file again (restored from a backup) shows it again.
    """
    for obj in objs:
        if target.mark_missing(obj):
            AuditEvent.objects.create(
                action=AuditEvent.Action.MISSING,
                target=target.label(obj),
                reason=(
                    f"{target.image(obj).name} is missing from storage (found by reindex); "
                    "hidden from pages"
                ),
            )


def _reindex_originals(updates) -> None:
    lock_banned_set()
    for flagged, original in updates:
        variants = original.variants
        fp = variants[0]
        if bytes(flagged.verification or b"") != original.signal:
            # The signal is read only for candidates, from the row: no change log entry.
            FlaggedFingerprint.objects.filter(pk=flagged.pk).update(verification=original.signal)
        stored = set(
            FingerprintVariant.objects.filter(flagged=flagged).values_list(
                "variant", "dhash", "phash", "pdq"
            )
        )
        fresh = {(v.variant, v.dhash, v.phash, v.pdq) for v in variant_rows(flagged, variants)}
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
        log_change(flagged, old, active=False)
        FingerprintVariant.objects.filter(flagged=flagged).delete()
        FingerprintVariant.objects.bulk_create(variant_rows(flagged, variants))
        keeper = (
            flagged.active
            and (
                FlaggedFingerprint.objects.active().filter(dhash=fp.signed).exclude(pk=flagged.pk)
            ).first()
        )
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
        log_change(flagged)
