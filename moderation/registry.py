"""Which models hold fingerprinted images, and what the flows may do with them.

Dependencies point one way (profiles -> moderation). An app that stores user images registers
its field here from ``AppConfig.ready()``; screening, sweeps, takedowns, the review queue and
reindex then work on "any registered image" through the operations of ``ImageTarget`` (its
fingerprint, its probes, clear it, store it, the rows with a hash, the owner) instead of
naming ``profiles.Profile`` or its columns.

Every write of an image's fingerprint goes through ``set_image`` or ``refresh_fingerprints``,
and both add the image's hashes to the index of stored images (``stored_hashes.record``) in
the same transaction, so a flag's sweep finds the image through that index.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.db import models, transaction
from django.utils import timezone

from moderation import stored_hashes
from moderation.hashing import PIPELINE_VERSION, CheckFingerprints, Fingerprint, probes_from_bytes


@dataclass(frozen=True)
class ImageTarget:
    """A model's image field plus the columns that hold its fingerprint.

    ``hash_field`` holds the signed 64-bit dHash (NULL when there is no image),
    ``confirm_field`` its signed 64-bit pHash (NULL also for rows from before pipeline version
    3), ``version_field`` the pipeline version that computed them and ``checked_field`` when the
    image was last compared with the whole banned set. ``missing_field`` (optional) is a
    nullable datetime set when a reindex finds the stored file gone: the owning app hides the
    image while it is set, and the hash stays, so sweeps keep comparing it with the banned set.
    ``owner_field`` (optional) names the uploader, shown to moderators in the review queue.
    ``probes_field`` (optional) is a binary field holding the image's cuts and framed picture
    (``hashing.CheckFingerprints.probe_bytes``), so that sweeps and rechecks compare a stored
    image as the upload path compared it; without it, only the image's own fingerprint.
    ``store_as`` (optional) turns an upload into the file the app stores (a clean re-encoding);
    such an app checks uploads as stored, and ``evaluate_matching`` then hashes its edited
    files the same way.
    """

    model: type[models.Model]
    file_field: str
    hash_field: str
    version_field: str
    checked_field: str
    confirm_field: str
    describe: Callable[[models.Model], str] = str
    missing_field: str | None = None
    # The user who uploaded the image (a foreign key to the user model), for the review queue.
    owner_field: str | None = None
    store_as: Callable[[Any], Any] | None = None
    probes_field: str | None = None

    @property
    def key(self) -> str:
        return f"{self.model._meta.label_lower}.{self.file_field}"

    @property
    def objects(self) -> models.Manager:
        return self.model._default_manager

    def with_images(self) -> models.QuerySet:
        return self.objects.exclude(**{self.file_field: ""}).exclude(
            **{f"{self.file_field}__isnull": True}
        )

    def with_hashes(self) -> models.QuerySet:
        """Rows that hold a fingerprint (a hidden, missing file keeps its hash: still swept)."""
        return self.objects.exclude(**{f"{self.hash_field}__isnull": True})

    def label(self, instance: models.Model) -> str:
        return f"{self.model._meta.verbose_name} {self.describe(instance)} (#{instance.pk})"

    def image(self, instance: models.Model):
        """The instance's image (a ``FieldFile``; falsy when there is none)."""
        return getattr(instance, self.file_field)

    def hash_of(self, instance: models.Model) -> int | None:
        """The stored signed dHash: it changes whenever the image does."""
        return getattr(instance, self.hash_field)

    def owner_id(self, instance: models.Model) -> int | None:
        return getattr(instance, f"{self.owner_field}_id", None) if self.owner_field else None

    def fingerprint(self, instance: models.Model) -> Fingerprint | None:
        """The fingerprint stored for the instance's image (None when it has none)."""
        signed = getattr(instance, self.hash_field)
        if signed is None:
            return None
        return Fingerprint.from_signed(
            signed,
            getattr(instance, self.version_field) or PIPELINE_VERSION,
            phash=getattr(instance, self.confirm_field),
        )

    def probe_bytes(self, instance: models.Model) -> bytes:
        return bytes(getattr(instance, self.probes_field) or b"") if self.probes_field else b""

    def checked(self, instance: models.Model) -> CheckFingerprints | None:
        """What the stored image was checked with: its fingerprint, cuts and framed picture
        (only its fingerprint when the model stores no probes); None when it has no image."""
        fp = self.fingerprint(instance)
        if fp is None:
            return None
        cuts, inner = probes_from_bytes(self.probe_bytes(instance))
        return CheckFingerprints([fp], cuts, inner)

    def checked_rows(
        self,
        *,
        chunk_size: int = 5000,
        pks: list[int] | None = None,
        queryset: models.QuerySet | None = None,
    ):
        """``(pk, CheckFingerprints)`` of every stored image with a hash (or of ``queryset``,
        some of them: a range; with ``pks``: of those among them, in primary key order),
        streamed."""
        columns = ("pk", self.hash_field, self.confirm_field, self.probes_field or "pk")
        rows = self.with_hashes() if queryset is None else queryset
        if pks is not None:
            rows = rows.filter(pk__in=pks).order_by("pk")
        rows = rows.values_list(*columns).iterator(chunk_size=chunk_size)
        for pk, signed, phash, probes in rows:
            cuts, inner = probes_from_bytes(probes) if self.probes_field else ({}, None)
            yield pk, CheckFingerprints([Fingerprint.from_signed(signed, phash=phash)], cuts, inner)

    def hash_rows(self):
        """``(pk, dHash, pHash[, probes])`` of every stored image with a hash, for
        ``hash_columns.HashColumns.load``."""
        probes = (self.probes_field,) if self.probes_field else ()
        return self.with_hashes().values_list("pk", self.hash_field, self.confirm_field, *probes)

    def set_image(
        self,
        instance: models.Model,
        name: str,
        checked: CheckFingerprints | None,
        *,
        also: tuple[str, ...] = (),
        digests: stored_hashes.Digests | None = None,
    ) -> None:
        """Point the instance at a stored file and what it was checked with, or at none
        (``""``, None), and save those columns (plus ``also``); a fingerprint is added to the
        index of stored images in the same transaction (after the row is written: its lock
        and transaction id come first), with the image's PDQ and its file's ``digests`` (MD5,
        SHA-256 of the bytes the upload screened), for list sweeps."""
        fp = checked.frames[0] if checked is not None else None
        values = {
            self.file_field: name,
            self.hash_field: fp.signed if fp else None,
            self.confirm_field: fp.phash_signed if fp else None,
            self.version_field: fp.pipeline_version if fp else None,
        }
        if fp is not None:
            values[self.checked_field] = timezone.now()
        if self.probes_field:
            values[self.probes_field] = checked.probe_bytes() if checked is not None else b""
        if self.missing_field:
            values[self.missing_field] = None
        for field, value in values.items():
            setattr(instance, field, value)
        # No savepoint: nothing here is retried on its own, and inside an upload's
        # transaction each savepoint was two more round trips to the database.
        with transaction.atomic(savepoint=False):
            instance.save(update_fields=[*values, *also])
            if checked is not None:
                stored_hashes.record(self.key, instance.pk, checked)
                stored_hashes.record_signals(
                    self.key, [stored_hashes.signal_row(instance.pk, checked, digests)]
                )
            else:
                stored_hashes.forget_signals(self.key, instance.pk)

    def clear(self, instance: models.Model) -> None:
        """Take the image off the instance (its file is the caller's to move or delete)."""
        fields = [self.file_field, self.hash_field, self.confirm_field, self.version_field]
        for name in fields:
            setattr(instance, name, "" if name == self.file_field else None)
        if self.probes_field:
            setattr(instance, self.probes_field, b"")
            fields.append(self.probes_field)
        instance.save(update_fields=fields)

    def refresh_fingerprints(
        self,
        refreshed: Iterable[tuple[int, int | None, CheckFingerprints]],
        *,
        digests: dict[int, stored_hashes.Digests] | None = None,
    ) -> int:
        """Store fresh fingerprints (and probes) for images re-read from storage, given as
        ``(pk, old_hash, checked)``; each row counts as found again (not missing). Only rows
        still holding their ``old_hash`` are written: a photo replaced meanwhile keeps its own
        fresh hash. Returns how many were written. Each written image's signals row (PDQ, and
        the stored file's ``digests`` by pk where the row has none from its upload) is
        replaced too, whatever pipeline version the row had.

        A whole reindex batch in a few statements (rows locked, one ``bulk_update``, one insert
        into the stored-hash index), not several per row: per-row writes were half of a
        reindex worker's CPU and most of the database's.
        """
        refreshed = list(refreshed)
        if not refreshed:
            return 0
        now = timezone.now()
        with transaction.atomic():
            current = dict(
                self.objects.select_for_update()
                .filter(pk__in=[pk for pk, _, _ in refreshed])
                .values_list("pk", self.hash_field)
            )
            fresh = [
                (pk, checked)
                for pk, old_hash, checked in refreshed
                if pk in current and current[pk] == old_hash
            ]
            rows = []
            for pk, checked in fresh:
                fp = checked.frames[0]
                values = {
                    self.hash_field: fp.signed,
                    self.confirm_field: fp.phash_signed,
                    self.version_field: fp.pipeline_version,
                    self.checked_field: now,
                }
                if self.missing_field:
                    values[self.missing_field] = None
                if self.probes_field:
                    values[self.probes_field] = checked.probe_bytes()
                rows.append((pk, values))
            if rows:
                self._update_rows(rows)
                stored_hashes.record_rows(
                    self.key,
                    [
                        (pk, probe, dhash, phash)
                        for pk, checked in fresh
                        for probe, dhash, phash in stored_hashes.rows_of_checked(checked)
                    ],
                )
                stored_hashes.record_signals(
                    self.key,
                    [
                        stored_hashes.signal_row(pk, checked, (digests or {}).get(pk))
                        for pk, checked in fresh
                    ],
                    keep_digests=True,
                )
        return len(rows)

    def _update_rows(self, rows: list[tuple[int, dict[str, Any]]]) -> None:
        """One parameterised UPDATE per row, sent with ``executemany`` (pipelined on
        PostgreSQL). Every row sets the same columns. Written as SQL because the ORM's
        ``bulk_update`` builds a CASE per column and row, which cost more than the rows."""
        connection = transaction.get_connection(self.objects.db)
        quote = connection.ops.quote_name
        fields = [self.model._meta.get_field(name) for name in rows[0][1]]
        assignments = ", ".join(f"{quote(f.column)} = %s" for f in fields)
        pk_column = quote(self.model._meta.pk.column)
        sql = f"UPDATE {quote(self.model._meta.db_table)} SET {assignments} WHERE {pk_column} = %s"  # noqa: S608 - quoted model names
        params = [
            [f.get_db_prep_save(values[f.name], connection) for f in fields] + [pk]
            for pk, values in rows
        ]
        with connection.cursor() as cursor:
            cursor.executemany(sql, params)

    def refresh_fingerprint(
        self, pk: int, *, old_hash: int | None, checked: CheckFingerprints
    ) -> bool:
        """``refresh_fingerprints`` for one image: whether it was written."""
        return bool(self.refresh_fingerprints([(pk, old_hash, checked)]))

    def mark_missing(self, instance: models.Model) -> bool:
        """Hide an image whose file is gone (it keeps its hash: still swept). True the first
        time only."""
        if not self.missing_field:
            return False
        name = self.image(instance).name
        return bool(
            self.objects.filter(
                pk=instance.pk, **{self.file_field: name, f"{self.missing_field}__isnull": True}
            ).update(**{self.missing_field: timezone.now()})
        )

    def mark_checked(self, queryset: models.QuerySet) -> None:
        """Record that these images were just compared with the whole banned set."""
        queryset.update(**{self.checked_field: timezone.now()})


_targets: dict[str, ImageTarget] = {}


def register(target: ImageTarget) -> None:
    _targets[target.key] = target


def targets() -> list[ImageTarget]:
    return list(_targets.values())


def target_for(model: type[models.Model] | models.Model) -> ImageTarget:
    label = model._meta.label_lower
    for target in _targets.values():
        if target.model._meta.label_lower == label:
            return target
    raise LookupError(f"{label} has no registered image field")


def target_by_key(key: str) -> ImageTarget:
    return _targets[key]


def upload_store_as() -> Callable[[Any], Any] | None:
    """How uploads are turned into stored files before they are checked (the first registered
    target's ``store_as``), or None when they are checked as uploaded."""
    return next((t.store_as for t in _targets.values() if t.store_as is not None), None)
