"""Writing the index of stored images' hashes (``models.StoredHash``): the one way rows are added;
and each stored image's exchange signals (``models.StoredSignal``: PDQ, MD5, SHA-256).

``registry.ImageTarget`` calls ``record`` whenever a stored image gets a fingerprint (a new
photo, a reindexed one), in the transaction that stores it, and the backfill calls
``record_rows`` for images stored before the index existed. Rows are only ever appended.

Why every writer takes its transaction id first (PostgreSQL): ids come from a sequence when a
row is inserted but become visible when its transaction commits, so a reader can see id 11
while id 10 is still uncommitted. The reader (``stored_index.StoredIndex``) remembers the
transactions in progress in the snapshot it read with, and once they have ended reads again
the rows they wrote (``txid``). That is only complete if a transaction holding an uncommitted
row was already in progress, with its id, when the higher id was allocated: so the id is
taken (``pg_current_xact_id()`` assigns it) before the rows' ids are. No lock is taken: an
upload never waits for a sweep or another upload.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import IO, NamedTuple

from django.db import connection, transaction
from django.utils import timezone

from moderation.hashing import CheckFingerprints
from moderation.models import StoredHash, StoredHashTarget, StoredSignal
from moderation.probes import EVERY_VARIANT

assert StoredHash.FRAMED == EVERY_VARIANT  # the stored probes' own number for the framed picture

# Marker ids by target key, per process (a marker row is never deleted or renumbered).
_marker_ids: dict[str, int] = {}


def marker_id(key: str) -> int:
    """The ``StoredHashTarget`` id of a kind of stored image, created (incomplete) if needed."""
    found = _marker_ids.get(key)
    if found is None:
        found = _marker_ids[key] = StoredHashTarget.objects.get_or_create(key=key)[0].pk
    return found


def forget_marker_ids() -> None:
    """Drop the cached marker ids (tests: a flushed database renumbers them)."""
    _marker_ids.clear()


def probe_rows(
    signed: int, phash: int | None, cuts_and_framed: Iterable[tuple[int, int, int | None]]
) -> list[tuple[int, int, int | None]]:
    """``(probe, signed dHash, signed pHash)`` rows of one stored image: its own fingerprint
    (``StoredHash.IMAGE``), then each stored probe (a cut's variant number, or ``FRAMED``)."""
    return [(StoredHash.IMAGE, signed, phash), *cuts_and_framed]


def rows_of_checked(checked: CheckFingerprints) -> list[tuple[int, int, int | None]]:
    """The rows of an image stored with ``checked`` (its first frame, cuts, framed picture)."""
    fp = checked.frames[0]
    probes = [(number, cut.signed, cut.phash_signed) for number, cut in checked.cuts.items()]
    if checked.inner is not None:
        probes.append((StoredHash.FRAMED, checked.inner.signed, checked.inner.phash_signed))
    return probe_rows(fp.signed, fp.phash_signed, probes)


def record(key: str, pk: int, checked: CheckFingerprints) -> None:
    """Add the rows of one stored image (call inside the transaction that stores it)."""
    rows = rows_of_checked(checked)
    record_rows(key, [(pk, probe, dhash, phash) for probe, dhash, phash in rows])


def record_rows(key: str, rows: Iterable[tuple[int, int, int, int | None]]) -> int:
    """Append ``(object pk, probe, signed dHash, signed pHash)`` rows for one kind of image, in
    one transaction whose id is taken first (see the module docstring). Returns the count."""
    target_id = marker_id(key)
    rows = list(rows)
    with transaction.atomic(savepoint=False):  # a caller's transaction, or one of its own
        txid = current_txid()
        if txid is not None and len(rows) > COPY_ABOVE:
            _copy_in(target_id, txid, rows)
        else:
            StoredHash.objects.bulk_create(
                [
                    StoredHash(
                        target_id=target_id,
                        object_pk=pk,
                        probe=probe,
                        dhash=dhash,
                        phash=phash,
                        txid=txid,
                    )
                    for pk, probe, dhash, phash in rows
                ],
                batch_size=2000,
            )
    return len(rows)


# A backfill batch is written with COPY (PostgreSQL): ~10x the rows per second of INSERTs.
COPY_ABOVE = 500


def _copy_in(target_id: int, txid: int, rows: list[tuple[int, int, int, int | None]]) -> None:
    table = StoredHash._meta.db_table
    now = timezone.now()
    sql = f"COPY {table} (target_id, object_pk, probe, dhash, phash, txid, created_at) FROM STDIN"
    connection.ensure_connection()
    with connection.connection.cursor() as cursor, cursor.copy(sql) as copy:
        for pk, probe, dhash, phash in rows:
            copy.write_row((target_id, pk, probe, dhash, phash, txid, now))


def current_txid() -> int | None:
    """This transaction's id, assigned now if it has none yet (PostgreSQL); None elsewhere,
    where writers commit one at a time and ids become visible in order."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_xact_id()::text::bigint")
        return cursor.fetchone()[0]


# --- exchange signals -------------------------------------------------------------------------


class Digests(NamedTuple):
    """The MD5 and SHA-256 (hex) of a file's bytes."""

    md5: str
    sha256: str


def file_digests(fh: IO[bytes]) -> Digests:
    """The digests of a file's bytes from where it stands, read in chunks."""
    md5, sha256 = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    while chunk := fh.read(1 << 20):
        md5.update(chunk)
        sha256.update(chunk)
    return Digests(md5.hexdigest(), sha256.hexdigest())


def signal_row(pk: int, checked: CheckFingerprints, digests: Digests | None) -> StoredSignal:
    """The signals row of an image stored with ``checked`` (its first frame's PDQ, when it has
    one) and the file's ``digests`` (None: unknown)."""
    fp = checked.frames[0]
    return StoredSignal(
        object_pk=pk,
        dhash=fp.signed,
        pdq=fp.pdq.hex if fp.pdq is not None else "",
        pdq_quality=fp.pdq.quality if fp.pdq is not None else None,
        md5=digests.md5 if digests else "",
        sha256=digests.sha256 if digests else "",
    )


def record_signals(key: str, rows: list[StoredSignal], *, keep_digests: bool = False) -> None:
    """Write (replace) the signals rows of these stored images of one kind. ``keep_digests``
    (a reindex, which hashes the stored file, not the upload): a row's MD5 and SHA-256 already
    known are kept. Call inside the transaction that stores the images."""
    if not rows:
        return
    target_id = marker_id(key)
    if keep_digests:
        known = {
            pk: (md5, sha256)
            for pk, md5, sha256 in StoredSignal.objects.filter(
                target_id=target_id, object_pk__in=[r.object_pk for r in rows]
            )
            .exclude(md5="")
            .values_list("object_pk", "md5", "sha256")
        }
        for row in rows:
            if row.object_pk in known:
                row.md5, row.sha256 = known[row.object_pk]
    now = timezone.now()
    for row in rows:
        row.target_id, row.updated_at = target_id, now
    StoredSignal.objects.bulk_create(
        rows,
        batch_size=2000,
        update_conflicts=True,
        unique_fields=["target", "object_pk"],
        update_fields=["dhash", "pdq", "pdq_quality", "md5", "sha256", "updated_at"],
    )


def forget_signals(key: str, pk: int) -> None:
    """The image is gone from its row: its signals row goes too."""
    StoredSignal.objects.filter(target_id=marker_id(key), object_pk=pk).delete()
