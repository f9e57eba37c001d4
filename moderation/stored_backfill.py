"""Making the index of stored images' hashes whole, and keeping it small.

A deployment that had stored images before the index existed has none of their rows: until
``backfill`` (``manage.py index_stored_photos``) has gone through them, that kind of image is
marked incomplete (``StoredHashTarget.complete``) and a flag's sweep screens every stored image
of it, as before (``stored_index.rows_to_screen``). The backfill reads the stored hash and probe
columns (no image is decoded), in batches, each committed with its cursor, so an interrupted
run resumes. Rows for images stored meanwhile are written by ``registry`` itself, so the
backfill only has to reach the images that existed when it started.

A fresh install (no stored images yet) is complete at once: ``mark_fresh_targets_complete``
runs after ``migrate``. An incomplete kind is reported by a database system check (shown by
``migrate`` and ``check --database default``) and logged by each sweep that falls back.

``prune`` deletes the rows of images replaced or removed since (harmless, but they cost memory
in every worker and a re-screen when a flag is near them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.core.checks import Tags, Warning, register
from django.db import DEFAULT_DB_ALIAS, connections, transaction

from moderation import registry, stored_hashes
from moderation.models import StoredHash, StoredHashTarget
from moderation.probes import unpack_probes

logger = logging.getLogger(__name__)


def _columns(target: registry.ImageTarget) -> tuple[str, ...]:
    return ("pk", target.hash_field, target.confirm_field, target.probes_field or "pk")


def _rows_of(target: registry.ImageTarget, pk, signed, phash, probes) -> list[tuple]:
    """``(pk, probe, dHash, pHash)`` rows of one stored image from its columns."""
    packed = unpack_probes(probes).tolist() if target.probes_field else []
    return [(pk, *row) for row in stored_hashes.probe_rows(signed, phash, packed)]


def backfill(
    target: registry.ImageTarget,
    *,
    batch_size: int = 5000,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Add the rows of every stored image of ``target`` after the saved cursor, one committed
    batch at a time, then mark the kind complete. Returns how many images were read.
    ``progress(images so far, last pk)`` is called after each batch."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    marker = StoredHashTarget.objects.get_or_create(key=target.key)[0]
    if marker.complete:
        return 0
    cursor, done = marker.backfill_cursor, 0
    while True:
        rows = target.with_hashes().order_by("pk")
        if cursor is not None:
            rows = rows.filter(pk__gt=cursor)
        batch = list(rows.values_list(*_columns(target))[:batch_size])
        with transaction.atomic():
            if batch:
                stored_hashes.record_rows(
                    target.key, [row for image in batch for row in _rows_of(target, *image)]
                )
                cursor = batch[-1][0]
            finished = len(batch) < batch_size
            StoredHashTarget.objects.filter(pk=marker.pk).update(
                backfill_cursor=cursor, complete=finished
            )
        done += len(batch)
        if progress is not None:
            progress(done, cursor)
        if finished:
            return done


def prune(target: registry.ImageTarget, *, batch_size: int = 20_000) -> int:
    """Delete the rows of ``target`` that no stored image holds any more (replaced, removed,
    or a repeat of a newer row). Safe at any time: every write appends its own rows, so a row
    found stale here is never the only row of a current image. Returns how many were deleted."""
    marker = StoredHashTarget.objects.filter(key=target.key).first()
    if marker is None:
        return 0
    deleted, after = 0, 0
    while True:
        rows = list(
            StoredHash.objects.filter(target_id=marker.pk, id__gt=after)
            .order_by("id")
            .values_list("id", "object_pk", "probe", "dhash")[:batch_size]
        )
        if not rows:
            return deleted
        after = rows[-1][0]
        pks = {pk for _, pk, _, _ in rows}
        current = {
            (pk, probe, dhash)
            for image in target.with_hashes().filter(pk__in=pks).values_list(*_columns(target))
            for pk, probe, dhash, _ in _rows_of(target, *image)
        }
        kept: set[tuple[int, int, int]] = set()
        stale = []
        for row_id, pk, probe, dhash in reversed(rows):  # newest first: repeats go
            key = (pk, probe, dhash)
            if key in current and key not in kept:
                kept.add(key)
            else:
                stale.append(row_id)
        if stale:
            deleted += StoredHash.objects.filter(id__in=stale).delete()[0]


def incomplete_targets() -> list[str]:
    """Keys of the registered kinds of image whose index is not complete."""
    complete = set(StoredHashTarget.objects.filter(complete=True).values_list("key", flat=True))
    return [target.key for target in registry.targets() if target.key not in complete]


def mark_fresh_targets_complete(*, using: str = DEFAULT_DB_ALIAS, **kwargs) -> None:
    """After ``migrate``: a kind of image with no stored image yet needs no backfill, so it is
    complete at once (a fresh install, every test database); others are reported."""
    tables = set(connections[using].introspection.table_names())
    if StoredHashTarget._meta.db_table not in tables:
        return
    for target in registry.targets():
        if target.model._meta.db_table not in tables:
            continue
        marker = StoredHashTarget.objects.using(using).get_or_create(key=target.key)[0]
        if marker.complete:
            continue
        if not target.with_hashes().using(using).exists():
            StoredHashTarget.objects.using(using).filter(pk=marker.pk).update(complete=True)
        else:
            logger.warning(INCOMPLETE, target.key)


INCOMPLETE = (
    "The index of stored %s is incomplete: each flag's sweep screens every stored image until "
    "`manage.py index_stored_photos` has run."
)


@register(Tags.database)
def check_stored_index_complete(app_configs=None, databases=None, **kwargs):
    """Warn while a kind of stored image has no complete index (``migrate`` and
    ``check --database default`` run database checks)."""
    if not databases:
        return []
    try:
        missing = incomplete_targets()
    except Exception:  # noqa: BLE001 - tables not migrated yet: migrate itself will say so
        return []
    return [
        Warning(
            INCOMPLETE % key,
            hint="Run `python manage.py index_stored_photos` (resumable; no image is decoded).",
            obj=key,
            id="moderation.W012",
        )
        for key in missing
    ]
