"""Hash lists' entries (PDQ, MD5, SHA-256): added one by one, imported from exchange files,
retracted, exported; and the banned set exported as PDQ.

An import runs in two phases, each resumable:

1. **read**: the file (kept in private storage, so any worker can read it) is parsed a step of
   ``STEP_LINES`` lines at a time into staging rows (``SignalImportRow``); each step commits its
   rows with the byte offset it reached, so an import whose worker died goes on from there.
   Malformed lines are counted and the first ``MAX_ERRORS`` kept with their line numbers.
2. **apply**: one transaction, under the banned-set writers' lock: every hash the list does
   not hold yet (for this source) becomes an entry, every active entry of the same list and
   source that the file no longer carries is retracted (``retract_missing``: never deleted,
   with when and by which import), the change is logged for every process's PDQ index, the
   import is audited, and the staging rows go. Before that commit the list is unchanged.

A large import runs in the task worker (``signal_import_task``); ``manage.py import_hashes``
reports its progress from the import's row.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterable, Iterator
from typing import IO, Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.files.base import File
from django.db import connection, transaction
from django.tasks import task
from django.utils import timezone

from moderation import hash_formats, signals
from moderation.background import enqueue_on_commit
from moderation.banned_set import lock_banned_set
from moderation.list_sweep import sweep_list_after_commit
from moderation.models import (
    AuditEvent,
    FingerprintVariant,
    HashList,
    SignalEntry,
    SignalImport,
    SignalImportRow,
)
from moderation.signal_set import log_entry, log_import

logger = logging.getLogger(__name__)

# Lines read per committed step (a worker that dies loses at most one step's work).
STEP_LINES = 200_000
# Staging rows per INSERT.
INSERT_BATCH = 10_000
# Malformed lines kept (with their numbers) on the import; the count includes them all.
MAX_ERRORS = 100


# --- one entry at a time --------------------------------------------------------------------


def entry_add(
    *,
    hash_list: HashList,
    signal_type: str,
    value: str,
    source: str = "",
    tags: str = "",
    external_id: str = "",
    quality: int | None = None,
    actor: AbstractBaseUser | None = None,
) -> SignalEntry:
    """Add one hash to a list (or return the active entry that already holds it for this
    source). ``signals.SignalError`` for a bad type or hash. Matched from the next lookup in
    every process."""
    kind, text = signals.normalize(signal_type, value)
    if kind == signals.DHASH:
        raise signals.SignalError("a dHash is added by flagging an image, not as a list entry")
    with transaction.atomic():
        lock_banned_set()
        existing = (
            SignalEntry.objects.active()
            .filter(hash_list=hash_list, source=source, signal_type=kind, value=text)
            .first()
        )
        if existing is not None:
            return existing
        entry = SignalEntry.objects.create(
            hash_list=hash_list,
            signal_type=kind,
            value=text,
            source=source,
            tags=hash_formats.tags_of(tags),
            external_id=external_id,
            quality=quality,
        )
        log_entry(entry)
        AuditEvent.objects.create(
            action=AuditEvent.Action.IMPORT,
            actor=actor,
            target=f"hash list {hash_list.name}"[:200],
            reason=f"added {kind} {text}" + (f" from {source}" if source else ""),
        )
        # The photos already stored meet it too (after commit, in the task worker).
        sweep_list_after_commit(hash_list=hash_list, entry_ids=[entry.pk])
    return entry


def entry_retract(
    *, entry: SignalEntry, actor: AbstractBaseUser | None = None, reason: str = ""
) -> bool:
    """Retract one entry (kept, inactive, audited); False when it was not active."""
    with transaction.atomic():
        lock_banned_set()
        done = SignalEntry.objects.filter(pk=entry.pk, active=True).update(
            active=False, retracted_at=timezone.now()
        )
        if done:
            entry.refresh_from_db()
            log_entry(entry)
            AuditEvent.objects.create(
                action=AuditEvent.Action.RETRACT,
                actor=actor,
                target=f"hash list {entry.hash_list.name}"[:200],
                reason=f"retracted {entry.signal_type} {entry.value}"
                + (f": {reason}" if reason else ""),
            )
    entry.refresh_from_db()
    return bool(done)


# --- imports --------------------------------------------------------------------------------


def import_start(
    *,
    hash_list: HashList,
    file: IO[bytes] | Any,
    file_name: str,
    fmt: str,
    source: str = "",
    bare_type: str = "pdq",
    retract_missing: bool = True,
    actor: AbstractBaseUser | None = None,
) -> SignalImport:
    """Keep the file privately and create its import (state "reading"); nothing is read yet.
    ``fmt`` is one of ``hash_formats.FORMATS``; ``bare_type``: what a bare 64-digit hash is."""
    if fmt not in hash_formats.FORMATS:
        raise ValueError(f"format must be one of {', '.join(hash_formats.FORMATS)}, got {fmt!r}")
    if bare_type not in ("pdq", "sha256"):
        raise ValueError(f"a bare 64-digit hash is pdq or sha256, not {bare_type!r}")
    signal_import = SignalImport(
        hash_list=hash_list,
        source=source,
        file_name=os.path.basename(file_name)[:300],
        format=fmt,
        default_signal_type=bare_type,
        retract_missing=retract_missing,
        created_by=actor,
    )
    signal_import.file.save(os.path.basename(file_name) or "hashes.txt", File(file), save=False)
    signal_import.total_bytes = signal_import.file.size
    signal_import.save()
    return signal_import


def _lines_from(fh, offset: int, limit: int) -> Iterator[tuple[int, bytes]]:
    """(offset after the line, line) for up to ``limit`` lines from byte ``offset``."""
    fh.seek(offset)
    for _ in range(limit):
        line = fh.readline()
        if not line:
            return
        offset += len(line)
        yield offset, line


def import_read_step(signal_import: SignalImport, *, lines: int = STEP_LINES) -> bool:
    """Read the next ``lines`` lines of the file into staging rows, committed with the cursor.
    Returns True when the whole file has been read."""
    imp = signal_import
    rows: list[tuple] = []
    errors: list[str] = []
    malformed = 0
    number = imp.lines_done
    offset = imp.bytes_done
    with imp.file.open("rb") as fh:
        csv_header = None
        if imp.format == "te-csv":
            first = fh.readline()
            csv_header = next(csv.reader([first.decode("utf-8-sig")]), [])
            if offset == 0:
                offset, number = len(first), 1
            missing = {"signal_type", "signal_str"} - set(csv_header)
            if missing:
                _fail(imp, f"line 1: te-csv header lacks {', '.join(sorted(missing))}")
                return True
        for reached, raw in _lines_from(fh, offset, lines):
            offset = reached
            number += 1
            try:
                text = raw.decode("utf-8")
                if csv_header is not None:
                    values = next(csv.reader([text]), [])
                    if not values:
                        continue
                    row = hash_formats.parse_csv_row(dict(zip(csv_header, values, strict=False)))
                    if row.source:
                        collab = row.source.replace(" ", "_")
                        tags = hash_formats.tags_of(f"{row.tags} collab={collab}")
                        row = hash_formats.Row(row.signal_type, row.value, tags)
                else:
                    row = hash_formats.parse_line(
                        imp.format, text, bare_type=imp.default_signal_type
                    )
            except (UnicodeDecodeError, ValueError) as e:
                malformed += 1
                if len(errors) + _error_count(imp) < MAX_ERRORS:
                    errors.append(f"line {number}: {e}")
                continue
            if row is None:
                continue
            rows.append((imp.pk, number, row.signal_type, row.value, row.tags, ""))
        done = offset >= imp.total_bytes
    with transaction.atomic():
        locked = SignalImport.objects.select_for_update().get(pk=imp.pk)
        if locked.bytes_done != imp.bytes_done or locked.state != SignalImport.State.READING:
            imp.refresh_from_db()  # another worker took this step: nothing written
            return imp.state != SignalImport.State.READING or imp.bytes_done >= imp.total_bytes
        _insert_staged(rows)
        locked.bytes_done, locked.lines_done = offset, number
        locked.malformed += malformed
        if errors:
            locked.errors = "\n".join(filter(None, [locked.errors, *errors]))
        if done:
            locked.state = SignalImport.State.APPLYING
        locked.save(update_fields=["bytes_done", "lines_done", "malformed", "errors", "state"])
    imp.refresh_from_db()
    return done


_STAGED_COLUMNS = ("signal_import_id", "line", "signal_type", "value", "tags", "external_id")


def _insert_staged(rows: list[tuple]) -> None:
    """Insert staging rows (tuples in ``_STAGED_COLUMNS`` order): PostgreSQL's COPY, else
    batched parameterised INSERTs. A million Django objects would cost most of the import."""
    if not rows:
        return
    table = _table(SignalImportRow)
    columns = ", ".join(_STAGED_COLUMNS)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        marks = ", ".join(["%s"] * len(_STAGED_COLUMNS))
        sql = f"INSERT INTO {table} ({columns}) VALUES ({marks})"  # noqa: S608
        for start in range(0, len(rows), INSERT_BATCH):
            cursor.executemany(sql, rows[start : start + INSERT_BATCH])


def _error_count(imp: SignalImport) -> int:
    return imp.errors.count("\n") + 1 if imp.errors else 0


def _fail(imp: SignalImport, message: str) -> None:
    SignalImport.objects.filter(pk=imp.pk).update(
        state=SignalImport.State.FAILED, last_error=message, finished_at=timezone.now()
    )
    imp.refresh_from_db()


def _table(model) -> str:
    """A model's table name, quoted: the only text formatted into the import's SQL (every
    value is a parameter)."""
    return connection.ops.quote_name(model._meta.db_table)


def import_apply(signal_import: SignalImport) -> SignalImport:
    """Apply a fully read import in one transaction (see the module docstring). Applying an
    import that is already done changes nothing."""
    entries, staged = _table(SignalEntry), _table(SignalImportRow)
    with transaction.atomic():
        lock_banned_set()
        imp = SignalImport.objects.select_for_update().get(pk=signal_import.pk)
        if imp.state != SignalImport.State.APPLYING:
            signal_import.refresh_from_db()
            return signal_import
        now = timezone.now()
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                # Fresh statistics after a bulk load: planned on stale ones (a table of "one
                # row" that holds a million), the anti-joins below run as nested loops for hours.
                cursor.execute(f"ANALYZE {staged}")
                cursor.execute(f"ANALYZE {entries}")
                # Group and anti-join a million rows in memory rather than in 4 MB spills.
                cursor.execute("SET LOCAL work_mem = '256MB'")
            retracted = 0
            if imp.retract_missing:
                cursor.execute(
                    f"UPDATE {entries} SET active = %s, retracted_at = %s, retracted_by_id = %s "  # noqa: S608
                    f"WHERE hash_list_id = %s AND source = %s AND active = %s AND NOT EXISTS ("
                    f"SELECT 1 FROM {staged} r WHERE r.signal_import_id = %s "
                    f"AND r.signal_type = {entries}.signal_type AND r.value = {entries}.value)",
                    [False, now, imp.pk, imp.hash_list_id, imp.source, True, imp.pk],
                )
                retracted = cursor.rowcount
            cursor.execute(
                f"INSERT INTO {entries} (hash_list_id, signal_type, value, quality, tags, source, "  # noqa: S608
                f"external_id, added_at, imported_by_id, active, times_matched, times_dismissed) "
                f"SELECT %s, r.signal_type, r.value, NULL, MIN(r.tags), %s, MIN(r.external_id), "
                f"%s, %s, %s, 0, 0 FROM {staged} r WHERE r.signal_import_id = %s AND NOT EXISTS ("
                f"SELECT 1 FROM {entries} e WHERE e.hash_list_id = %s AND e.source = %s "
                f"AND e.active = %s AND e.signal_type = r.signal_type AND e.value = r.value) "
                f"GROUP BY r.signal_type, r.value",
                [
                    imp.hash_list_id,
                    imp.source,
                    now,
                    imp.pk,
                    True,
                    imp.pk,
                    imp.hash_list_id,
                    imp.source,
                    True,
                ],
            )
            added = cursor.rowcount
            cursor.execute(
                f"SELECT COUNT(*) FROM (SELECT 1 FROM {staged} WHERE signal_import_id = %s "  # noqa: S608
                f"GROUP BY signal_type, value) d",
                [imp.pk],
            )
            distinct = cursor.fetchone()[0]
            cursor.execute(f"DELETE FROM {staged} WHERE signal_import_id = %s", [imp.pk])  # noqa: S608
        imp.added, imp.retracted, imp.unchanged = added, retracted, distinct - added
        imp.state, imp.finished_at = SignalImport.State.DONE, now
        imp.save(update_fields=["added", "retracted", "unchanged", "state", "finished_at"])
        log_import(imp)
        AuditEvent.objects.create(
            action=AuditEvent.Action.IMPORT,
            actor=imp.created_by,
            target=f"hash list {imp.hash_list.name}"[:200],
            reason=(
                f"import #{imp.pk} of {imp.file_name}"
                + (f" from {imp.source}" if imp.source else "")
                + f": {added} added, {distinct - added} already there, {retracted} retracted, "
                f"{imp.malformed} malformed lines skipped"
            ),
        )
        if added:
            # The photos already stored meet the new entries too (after commit, in ranges).
            sweep_list_after_commit(hash_list=imp.hash_list, signal_import=imp)
        if retracted:
            AuditEvent.objects.create(
                action=AuditEvent.Action.RETRACT,
                actor=imp.created_by,
                target=f"hash list {imp.hash_list.name}"[:200],
                reason=f"import #{imp.pk} retracted {retracted} entries its file no longer carries",
            )
    signal_import.refresh_from_db()
    return signal_import


def run_import(signal_import: SignalImport, *, progress=None) -> SignalImport:
    """Read what is left of the file, then apply it: from wherever the import stands, so
    running it again after a crash goes on where the last committed step ended.
    ``progress(signal_import)`` is called after each step."""
    imp = signal_import
    while imp.state == SignalImport.State.READING:
        import_read_step(imp)
        if progress is not None:
            progress(imp)
    if imp.state == SignalImport.State.APPLYING:
        import_apply(imp)
        if progress is not None:
            progress(imp)
    return imp


@task
def signal_import_task(import_id: int) -> dict:
    """Run import ``import_id`` in the task worker (resumes where a previous run stopped)."""
    imp = SignalImport.objects.filter(pk=import_id).first()
    if imp is None:
        return {"import": import_id, "note": "import missing"}
    try:
        run_import(imp)
    except Exception as e:
        SignalImport.objects.filter(pk=import_id).update(last_error=f"{type(e).__name__}: {e}")
        raise
    imp.refresh_from_db()
    return {"import": imp.pk, "state": imp.state, "added": imp.added, "retracted": imp.retracted}


def import_in_background(signal_import: SignalImport) -> None:
    """Hand the import to the task worker (with the caller's commit)."""
    enqueue_on_commit(signal_import_task, signal_import.pk)


# --- export ---------------------------------------------------------------------------------


def export_entries(
    out: IO[str],
    fmt: str,
    *,
    hash_lists: Iterable[HashList] | None = None,
    signal_types: Iterable[str] | None = None,
) -> int:
    """Write the active entries (of ``hash_lists``, default all; of ``signal_types``) in
    ``fmt``; returns how many."""
    rows = SignalEntry.objects.active().order_by("pk")
    if hash_lists is not None:
        rows = rows.filter(hash_list__in=list(hash_lists))
    if signal_types is not None:
        rows = rows.filter(signal_type__in=list(signal_types))
    if header := hash_formats.header(fmt):
        out.write(header)
    count = 0
    for kind, value, tags, source in rows.values_list(
        "signal_type", "value", "tags", "source"
    ).iterator(chunk_size=10_000):
        out.write(hash_formats.format_entry(fmt, kind, value, tags, source))
        count += 1
    return count


def export_banned_set_pdq(
    out: IO[str],
    fmt: str,
    *,
    hash_lists: Iterable[HashList] | None = None,
    every_orientation: bool = False,
    source: str = "",
) -> int:
    """Write the banned set as PDQ (never images): each active flag's upright PDQ, or with
    ``every_orientation`` the PDQ of each of its 8 orientations (for a partner whose matcher
    does not turn hashes itself). Tagged with the flag's list. Flags without a PDQ (imported
    as bare dHashes, or not reindexed since PDQ was added) are left out. Returns how many."""
    rows = FingerprintVariant.objects.filter(flagged__active=True).exclude(pdq="")
    rows = rows.filter(variant__lt=8) if every_orientation else rows.filter(variant=0)
    if hash_lists is not None:
        rows = rows.filter(flagged__hash_list__in=list(hash_lists))
    if header := hash_formats.header(fmt):
        out.write(header)
    count, seen = 0, set()
    for value, list_name in (
        rows.order_by("flagged_id", "variant")
        .values_list("pdq", "flagged__hash_list__name")
        .iterator(chunk_size=10_000)
    ):
        if value in seen:
            continue
        seen.add(value)
        out.write(hash_formats.format_entry(fmt, "pdq", value, list_name.replace(" ", "_"), source))
        count += 1
    return count
