"""Reindex: every stored image re-fingerprinted with the current pipeline, then a full sweep.

Run after the fingerprint pipeline changes (``hashing.PIPELINE_VERSION``), after restoring media
from a backup, or whenever stored fingerprints may not match the stored files. The kept
originals of flags come first (their variants are the banned set), then every registered kind
of stored image. Work is committed one batch at a time together with the run's cursor, so an
interrupted run (Ctrl-C, a deploy, a crash) loses at most the batch in flight and resumes where
it stopped. ``ReindexBatches`` is the one loop; ``manage.py reindex`` drives it in the
foreground and ``reindex_task`` in the worker, in parts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.tasks import task
from django.utils import timezone

from moderation import registry
from moderation.background import enqueue_on_commit
from moderation.banned_set import lock_banned_set, log_change
from moderation.flagging import variant_rows
from moderation.hashing import (
    PIPELINE_VERSION,
    CheckFingerprints,
    Fingerprint,
    check_fingerprints,
    fingerprint_variants,
)
from moderation.models import AuditEvent, FingerprintVariant, FlaggedFingerprint, ReindexRun
from moderation.screening import signal_of_file
from moderation.sweeping import SweepResult, sweep_banned_matches

ORIGINALS_KEY = "moderation.flaggedfingerprint.original"

# A reindex task works through batches for about this long, then enqueues its continuation, so
# a deploy that stops the worker (which waits for the running task) never waits long, and other
# tasks (sweeps after new flags) get their turn between the parts.
REINDEX_TASK_SECONDS = 30.0


@dataclass
class BatchResult:
    key: str
    processed: int = 0
    changed: int = 0
    missing: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    last_pk: int = 0
    done: bool = False  # nothing was left of this kind: the batch is empty


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


class ReindexBatches:
    """Every batch of every kind of stored image, in order, each committed before it is
    yielded (``run=None``: a dry run, nothing written). After a kind's last batch comes one
    result with ``done`` set. Stop iterating at any point: the run resumes from there.
    ``key`` is the kind being worked on (for a caller that reports where a failure happened)."""

    def __init__(self, *, run: ReindexRun | None, batch_size: int) -> None:
        self.run = run
        self.batch_size = batch_size
        self.key = ""

    def __iter__(self) -> Iterator[BatchResult]:
        for key in reindex_keys():
            self.key = key
            after = 0
            while True:
                result = reindex_batch(
                    run=self.run, key=key, batch_size=self.batch_size, after=after
                )
                yield result
                if result.done:
                    break
                if self.run is None:
                    after = result.last_pk


class Original(NamedTuple):
    """What a flag's kept original gives now: every variant's fingerprint, and the signal that
    verifies its candidates."""

    variants: list[Fingerprint]
    signal: bytes


def _read_fingerprints(fieldfile) -> Original | CheckFingerprints:
    """What a stored file is fingerprinted with now: a flag's original, every variant and its
    verification signal; any other stored image, as it was checked (its own picture, cuts,
    framed picture). The one place reindex opens a stored file."""
    with fieldfile.open("rb") as fh:
        if isinstance(fieldfile.instance, FlaggedFingerprint):
            return Original(fingerprint_variants(fh), signal_of_file(fh))
        checked = check_fingerprints(fh)
        return CheckFingerprints(checked.frames[:1], checked.cuts, checked.inner)


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
    originals = key == ORIGINALS_KEY
    if originals:
        queryset = FlaggedFingerprint.objects.exclude(original="")
    else:
        target = registry.target_by_key(key)
        queryset = target.with_images()
    batch = list(queryset.filter(pk__gt=cursor).order_by("pk")[:batch_size])
    if not batch:
        result.done = True
        return result

    updates: list[tuple[models.Model, list[Fingerprint] | CheckFingerprints]] = []
    missing: list[models.Model] = []
    for obj in batch:
        result.processed += 1
        fieldfile = obj.original if originals else target.image(obj)
        try:
            fresh = _read_fingerprints(fieldfile)
        except FileNotFoundError:
            result.missing.append(f"{obj._meta.label_lower} #{obj.pk}: {fieldfile.name}")
            missing.append(obj)
            continue
        except ValidationError as e:
            result.unreadable.append(f"{obj._meta.label_lower} #{obj.pk}: {e.messages[0]}")
            continue
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
        updates.append((obj, fresh))

    last_pk = result.last_pk = batch[-1].pk
    if run is None:
        return result
    with transaction.atomic():
        if originals:
            _reindex_originals(updates)
        else:
            for obj, checked in updates:
                target.refresh_fingerprint(obj.pk, old_hash=target.hash_of(obj), checked=checked)
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
                "variant", "dhash", "phash"
            )
        )
        fresh = {(v.variant, v.dhash, v.phash) for v in variant_rows(flagged, variants)}
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


def reindex_finish(*, run: ReindexRun, sweep: bool = True) -> SweepResult | None:
    """(Normally) sweep every stored image against the refreshed banned set, then close the run.

    The run is closed only after the sweep: if the sweep is interrupted, the next reindex
    resumes this run, finds every batch done and sweeps again (takedowns are idempotent).
    """
    result = sweep_banned_matches() if sweep else None
    run.finished_at = timezone.now()
    run.save(update_fields=["finished_at"])
    return result


@task
def reindex_task(
    run_id: int,
    batch_size: int = 200,
    sweep: bool = True,
    max_seconds: float = REINDEX_TASK_SECONDS,
) -> dict:
    """Continue reindex run ``run_id`` in committed batches; re-enqueue itself until done.

    Each part runs batches for about ``max_seconds`` (at least one batch), then enqueues the
    next part; the run's cursors live in the database, so a part that dies with its worker is
    redone by running ``manage.py reindex --background`` again. The last part closes the run
    and, unless ``sweep`` is false, sweeps every stored image against the refreshed banned set.
    """
    run = ReindexRun.objects.filter(pk=run_id).first()
    if run is None or run.finished_at is not None:
        return {"run": run_id, "done": True, "processed": 0, "note": "run missing or finished"}
    deadline = time.monotonic() + max_seconds
    processed = changed = 0
    for result in ReindexBatches(run=run, batch_size=batch_size):
        if result.done:
            continue
        processed += result.processed
        changed += result.changed
        if time.monotonic() >= deadline:
            enqueue_on_commit(
                reindex_task, run_id, batch_size=batch_size, sweep=sweep, max_seconds=max_seconds
            )
            return {"run": run_id, "done": False, "processed": processed, "changed": changed}
    swept = reindex_finish(run=run, sweep=sweep)
    return {
        "run": run_id,
        "done": True,
        "processed": processed,
        "changed": changed,
        "swept": swept.checked if swept else None,
        "taken_down": len(swept.taken_down) if swept else None,
    }
