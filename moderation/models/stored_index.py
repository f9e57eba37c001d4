"""The index of stored images' hashes: one row per hash a stored image was ever checked with.

A flag's sweep looks the new flag's variants up in these rows (``moderation.stored_index``)
instead of screening every stored image. Rows are append-only: ``registry.ImageTarget`` adds
the image's own fingerprint, each cut and the framed picture whenever a stored image gets a
fingerprint, and never updates or deletes one when the image is replaced or removed. A stale
row only costs the sweep one re-screen of the real row; a missing row would be a missed copy.
``manage.py index_stored_photos --prune`` deletes the stale ones.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class StoredHashTarget(models.Model):
    """One kind of stored image (``registry.ImageTarget.key``) and whether its index is whole.

    ``complete`` is True once every stored image of that kind has its rows: at once on a fresh
    install (no stored images, see ``stored_backfill.mark_fresh_targets_complete``), else when
    ``manage.py index_stored_photos`` has gone through every row. Until then a flag's sweep of
    that kind screens every stored image, as before the index existed. ``backfill_cursor`` is
    the last primary key the backfill committed, so an interrupted backfill resumes.
    """

    key = models.CharField(max_length=200, unique=True)
    complete = models.BooleanField(default=False)
    backfill_cursor = models.BigIntegerField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.key} ({'complete' if self.complete else 'incomplete'})"


class StoredHash(models.Model):
    """One hash of one stored image: its own fingerprint, a cut, or its framed picture.

    ``probe`` says which: ``IMAGE`` (-2) the image itself, ``FRAMED`` (-1, the stored probes'
    ``EVERY_VARIANT``) the picture inside its frame (both compared with every variant of a
    flag), or the variant number of a cut (compared with that variant only). Hashes are signed
    64-bit, as everywhere; ``object_pk`` is the image row's primary key (registered models
    have integer keys). ``txid`` is the PostgreSQL transaction that wrote the row (NULL on
    SQLite): a reader that saw the transaction in progress reads its rows again once it has
    ended, so a row committed after a higher id was read is not missed.
    """

    IMAGE = -2
    FRAMED = -1

    # No index of its own: rows are read by id, and a kind of image is never deleted.
    target = models.ForeignKey(
        StoredHashTarget, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    object_pk = models.BigIntegerField()
    probe = models.SmallIntegerField()
    dhash = models.BigIntegerField()
    phash = models.BigIntegerField(null=True, blank=True)
    txid = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["txid"], name="storedhash_txid"),
        ]

    def __str__(self) -> str:
        return f"{self.target_id}:{self.object_pk} probe {self.probe}"


class StoredSignal(models.Model):
    """The exchange signals of one stored image, so a hash list that gains entries reaches the
    photos already stored without re-reading their files: the PDQ of the picture as stored
    (hex, with its quality) and the MD5 / SHA-256 of the file's bytes as the upload screened
    them (a reindex fills them from the stored file for rows that have none).

    One row per stored image, replaced whenever the image gets a fingerprint
    (``registry.ImageTarget``). ``dhash`` is the image's own dHash when the row was written: a
    row whose image changed since (or was taken down) no longer matches the image row and is
    ignored by sweeps.
    """

    target = models.ForeignKey(
        StoredHashTarget, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    object_pk = models.BigIntegerField()
    dhash = models.BigIntegerField()
    pdq = models.CharField(max_length=64, blank=True)
    pdq_quality = models.PositiveSmallIntegerField(null=True, blank=True)
    md5 = models.CharField(max_length=32, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["target", "object_pk"], name="one_stored_signal_per_image"
            )
        ]

    def __str__(self) -> str:
        return f"{self.target_id}:{self.object_pk} signals"
