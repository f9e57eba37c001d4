"""Stored images near a new flag, found through the index of their hashes, not a pass.

The sweep after a flag (``sweeping.sweep_banned_matches(fingerprint_ids=...)``) used to screen
every stored image. Here each process that sweeps (the task worker) keeps the hashes of every
stored image (``models.StoredHash``, written by ``registry``) in memory, in
``fingerprint_index.FingerprintIndex`` (exact multi-index hashing, scanning when cheaper): the
images' own fingerprints and framed pictures in one index, each cut number in an index of its
own. A sweep syncs it with the rows committed since, looks each active variant of the new flags
up at the rule's radius, and hands the stored images found (``rows_to_screen``) to the same
screening as before, which decides from their real rows: exactly today's decisions, for the
images that could be decided on at all.

Why this finds every image the full pass would act on: the full pass screens an image against
an index of the new flags' variants alone, and ``BannedIndex.check`` only ever considers
variants within the rule's radius (``MatchRule.radius``) in dHash whose pHash is within the
larger of the rule's two pHash distances (or that lack one): the image's own fingerprint and
its framed picture against every variant, a cut against the same-numbered variant only. An
image with no such pair passes with nothing to act on. ``near`` returns every stored image
with such a pair, in the same shapes; stale rows (a photo replaced or removed since) only add
candidates, which the screening of the real row lets go.

Keeping in step without missing a row committed late (PostgreSQL): ids are allocated at insert
and become visible at commit, so a read of ``id > last`` can see id 11 before id 10 commits.
Each read also returns the snapshot it was made with (``pg_current_snapshot()``, one statement):
the transactions in progress then are remembered with the highest id read, and once a later
snapshot shows them ended, their rows up to that id are read again by transaction id
(``StoredHash.txid``). Writers take their transaction id before their rows' ids
(``stored_hashes``), so a transaction that can still commit a row below an id already read was
in progress in that snapshot. Nothing ages out on a clock: a long transaction is waited for,
however long (a clock could drop a row whose transaction committed after the recheck of that
upload ran, and no later flag's sweep would find it). SQLite has one writer at a time, so its
ids become visible in order. The first sync (the cold load) reads every row packed by the
server, a million at a time (``_packed_rows``).

Thread safety: one lock around sync and lookups.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator

import numpy as np
from django.db import connection

from moderation import registry
from moderation.banned_index import KEYS_PER_FLAG
from moderation.fingerprint_index import FingerprintIndex
from moderation.hashing import CheckFingerprints
from moderation.matching import MatchRule
from moderation.models import StoredHash, StoredHashTarget

logger = logging.getLogger(__name__)

_PAGE_BITS = 16  # the row table is kept in pages of 65,536 ids
_PAGE = 1 << _PAGE_BITS
# Above this many new rows at once (a backfill while the worker ran) a sync reloads instead of
# adding them one by one.
RELOAD_ABOVE = 500_000
_COLUMNS = "id, target_id, object_pk, probe, dhash, phash"
# SQL here is built from the model's own table name and these column names; values are always
# query parameters (or an int).
# One row as ``_packed_rows`` packs it: fixed-width, big-endian, never NULL.
_PACKED = np.dtype(
    [
        ("id", ">i8"), ("target", ">i4"), ("pk", ">i8"), ("probe", ">i2"),
        ("dhash", ">i8"), ("phash", ">i8"), ("has", "u1"),
    ]
)  # fmt: skip


class _Rows:
    """Columns of the rows a process holds, found by row id: kind of image (0: none), object
    pk, pHash and whether there is one. Paged by id, so appending never copies the table."""

    def __init__(self) -> None:
        self._pages: dict[int, np.ndarray] = {}

    _DTYPE = np.dtype([("target", "<i4"), ("pk", "<i8"), ("phash", "<u8"), ("has", "?")])

    def put(self, ids: np.ndarray, targets, pks, phashes, has) -> None:
        page_of = ids >> _PAGE_BITS
        for page in np.unique(page_of).tolist():
            rows = self._pages.get(page)
            if rows is None:
                rows = self._pages[page] = np.zeros(_PAGE, self._DTYPE)
            sel = page_of == page
            slot = ids[sel] & (_PAGE - 1)
            rows["target"][slot] = targets[sel]
            rows["pk"][slot] = pks[sel]
            rows["phash"][slot] = phashes[sel]
            rows["has"][slot] = has[sel]

    def get(self, ids: np.ndarray) -> np.ndarray:
        out = np.zeros(len(ids), self._DTYPE)
        page_of = ids >> _PAGE_BITS
        for page in np.unique(page_of).tolist():
            rows = self._pages.get(page)
            if rows is not None:
                sel = page_of == page
                out[sel] = rows[ids[sel] & (_PAGE - 1)]
        return out

    def nbytes(self) -> int:
        return sum(rows.nbytes for rows in self._pages.values())


class StoredIndex:
    """The hashes of every stored image, in memory, kept in step with ``StoredHash``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clear()

    def _clear(self) -> None:
        self._loaded = False
        self._last_id = 0
        # Transactions seen in progress -> the highest id read while they were.
        self._pending: dict[int, int] = {}
        self._whole = FingerprintIndex()  # the images themselves and their framed pictures
        self._cuts: dict[int, FingerprintIndex] = {}  # cut variant number -> that cut's index
        self._rows = _Rows()

    def __len__(self) -> int:
        with self._lock:
            return len(self._whole) + sum(len(index) for index in self._cuts.values())

    @property
    def pending(self) -> dict[int, int]:
        """Transactions still awaited (a copy; for tests and the benchmark)."""
        with self._lock:
            return dict(self._pending)

    def sync(self) -> int:
        """Read every row committed since the last sync (the first: every row); returns how
        many rows were read."""
        with self._lock:
            if not self._loaded:
                return self._cold_load()
            _, newest = _snapshot_and_newest()
            if newest is not None and newest - self._last_id > RELOAD_ABOVE:
                self._clear()  # a bulk write (a backfill): reading it all again is faster
                return self._cold_load()
            return self._read_after(self._last_id)

    def _cold_load(self) -> int:
        snapshot, newest = _snapshot_and_newest()
        newest = newest or 0
        postgres = connection.vendor == "postgresql"
        columns = _packed_rows(newest) if postgres else _fetch_rows(newest)
        by_index: dict[int | None, list[tuple[np.ndarray, np.ndarray]]] = {}
        count = 0
        for ids, targets, pks, probes, dhashes, phashes, has in columns:
            self._rows.put(ids, targets, pks, phashes, has)
            count += len(ids)
            for probe in np.unique(probes).tolist():
                sel = probes == probe
                key = None if probe < 0 else probe
                by_index.setdefault(key, []).append((ids[sel], dhashes[sel]))
        for key, parts in by_index.items():
            index = FingerprintIndex()
            ids, hashes = (np.concatenate([part[i] for part in parts]) for i in (0, 1))
            index.build(ids, hashes)
            if key is None:
                self._whole = index
            else:
                self._cuts[key] = index
        self._loaded = True
        self._last_id = newest
        self._remember(snapshot)
        return count

    def _read_after(self, last: int) -> int:
        """Rows with id > ``last`` and the snapshot they were read with (one statement), then
        the rows of transactions that ended since they were seen in progress."""
        table = StoredHash._meta.db_table
        if connection.vendor == "postgresql":
            sql = (
                f"SELECT s.snap, h.{', h.'.join(_COLUMNS.split(', '))} "  # noqa: S608
                "FROM (SELECT pg_current_snapshot()::text AS snap) s "
                f"LEFT JOIN {table} h ON h.id > %s ORDER BY h.id"
            )
        else:
            sql = f"SELECT NULL, {_COLUMNS} FROM {table} WHERE id > %s ORDER BY id"  # noqa: S608
        with connection.cursor() as cursor:
            cursor.execute(sql, [last])
            fetched = cursor.fetchall()
        snapshot = fetched[0][0] if fetched else None
        rows = [row[1:] for row in fetched if row[1] is not None]
        self._add(rows)
        if rows:
            self._last_id = max(self._last_id, rows[-1][0])
        count = len(rows) + self._catch_up(snapshot)
        self._remember(snapshot)
        return count

    def _catch_up(self, snapshot: str | None) -> int:
        """Read again the rows of awaited transactions that ``snapshot`` shows ended."""
        if snapshot is None or not self._pending:
            return 0
        xmin, xmax, running = _parse_snapshot(snapshot)
        ended = [x for x in self._pending if x < xmin or (x < xmax and x not in running)]
        if not ended:
            return 0
        bound = max(self._pending[x] for x in ended)
        table = StoredHash._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {_COLUMNS} FROM {table} "  # noqa: S608 - see the note at _COLUMNS
                "WHERE txid = ANY(%s) AND id <= %s ORDER BY id",
                [ended, bound],
            )
            rows = cursor.fetchall()
        self._add(rows)
        for x in ended:
            del self._pending[x]
        return len(rows)

    def _remember(self, snapshot: str | None) -> None:
        """Await the transactions in progress in ``snapshot``: they may still commit rows with
        ids up to the last one read."""
        if snapshot is None:
            return
        for x in _parse_snapshot(snapshot)[2]:
            self._pending[x] = max(self._pending.get(x, 0), self._last_id)

    def _add(self, rows: list[tuple]) -> None:
        if not rows:
            return
        ids, targets, pks, probes, dhashes, phashes = zip(*rows)
        has = np.array([p is not None for p in phashes])
        self._rows.put(
            np.array(ids, np.int64),
            np.array(targets, np.int32),
            np.array(pks, np.int64),
            np.array([p or 0 for p in phashes], np.int64).view(np.uint64),
            has,
        )
        for row_id, probe, dhash in zip(ids, probes, dhashes):
            self._index_for(probe).add(row_id, dhash & 0xFFFF_FFFF_FFFF_FFFF)

    def _index_for(self, probe: int) -> FingerprintIndex:
        if probe < 0:
            return self._whole
        if probe not in self._cuts:
            self._cuts[probe] = FingerprintIndex()
        return self._cuts[probe]

    def near(
        self, target_id: int, variants: Iterable[tuple[int, int, int | None]], rule: MatchRule
    ) -> list[int]:
        """Primary keys of the stored images of kind ``target_id`` that the screening of
        ``(variant number, unsigned dHash, unsigned pHash or None)`` flag variants could act on
        (see the module docstring), sorted."""
        cap = max(rule.max_confirm_distance, rule.review_confirm_distance)
        found: list[np.ndarray] = []
        with self._lock:
            for number, dhash, phash in variants:
                for index in (self._whole, self._cuts.get(number)):
                    if index is None:
                        continue
                    ids, _ = index.query_arrays(dhash, rule.radius, ordered=False)
                    rows = self._rows.get(ids)
                    keep = rows["target"] == target_id
                    if phash is not None:
                        bits = np.bitwise_count(rows["phash"] ^ np.uint64(phash))
                        keep &= ~rows["has"] | (bits <= cap)
                    found.append(rows["pk"][keep])
        if not found:
            return []
        return np.unique(np.concatenate(found)).tolist()

    def nbytes(self) -> int:
        with self._lock:
            indexes = self._whole.nbytes() + sum(i.nbytes() for i in self._cuts.values())
            return indexes + self._rows.nbytes()


def _snapshot_and_newest() -> tuple[str | None, int | None]:
    table = StoredHash._meta.db_table
    snap = "pg_current_snapshot()::text" if connection.vendor == "postgresql" else "NULL"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {snap}, (SELECT max(id) FROM {table})")  # noqa: S608
        return cursor.fetchone()


def _parse_snapshot(text: str) -> tuple[int, int, set[int]]:
    """``xmin:xmax:xip,...`` (``pg_current_snapshot()``) as numbers."""
    xmin, xmax, running = text.split(":")
    return int(xmin), int(xmax), {int(x) for x in running.split(",") if x}


def _columns(ids, targets, pks, probes, dhashes, phashes, has):
    return (
        np.asarray(ids, np.int64),
        np.asarray(targets, np.int32),
        np.asarray(pks, np.int64),
        np.asarray(probes, np.int64),
        np.asarray(dhashes, np.int64).view(np.uint64),
        np.asarray(phashes, np.int64).view(np.uint64),
        np.asarray(has, bool),
    )


def _fetch_rows(newest: int, batch: int = 100_000) -> Iterator[tuple]:
    """Every row with id <= ``newest``, as column batches (any database)."""
    table = StoredHash._meta.db_table
    with connection.cursor() as cursor:
        sql = f"SELECT {_COLUMNS} FROM {table} WHERE id <= %s ORDER BY id"  # noqa: S608
        cursor.execute(sql, [newest])
        while rows := cursor.fetchmany(batch):
            ids, targets, pks, probes, dhashes, phashes = zip(*rows)
            has = [p is not None for p in phashes]
            yield _columns(ids, targets, pks, probes, dhashes, [p or 0 for p in phashes], has)


def _packed_rows(newest: int, step: int = 1_000_000) -> Iterator[tuple]:
    """Every row with id <= ``newest``, packed by PostgreSQL into one fixed-width bytea per
    ``step`` ids (``string_agg`` of ``int8send``...) and parsed by numpy. Measured at 3M rows
    on a loaded 2-core machine: a binary ``COPY`` spent ~14 us per row in the client (psycopg
    handles one message per row), this ~6 us, mostly in the server."""
    table = StoredHash._meta.db_table
    sql = (
        "SELECT string_agg(int8send(id) || int4send(target_id::int4) || int8send(object_pk) "  # noqa: S608
        "|| int2send(probe) || int8send(dhash) || int8send(coalesce(phash, 0)) "
        f"|| boolsend(phash IS NOT NULL), ''::bytea) FROM {table} "
        "WHERE id > %s AND id <= %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT min(id) FROM {table}")  # noqa: S608 - see _COLUMNS
        first = cursor.fetchone()[0]
        if first is None:
            return
        for low in range(first - 1, newest, step):
            cursor.execute(sql, [low, min(low + step, newest)])
            packed = cursor.fetchone()[0]
            if packed:
                yield _records(bytes(packed))


def _records(buffer: bytes) -> tuple:
    r = np.frombuffer(buffer, _PACKED)
    return _columns(r["id"], r["target"], r["pk"], r["probe"], r["dhash"], r["phash"], r["has"])


# --- the process's index, and the sweep's use of it ------------------------------------------

_current: StoredIndex | None = None
_current_lock = threading.Lock()


def current() -> StoredIndex:
    """This process's index (loaded at its first sync)."""
    global _current
    with _current_lock:
        if _current is None:
            _current = StoredIndex()
        return _current


def reset() -> None:
    """Forget this process's index (tests: each test's rows are rolled back)."""
    global _current
    with _current_lock:
        _current = None


def warm_in_background() -> threading.Thread:
    """Load this process's index now, on a helper thread with its own database connection, so
    the first sweep after a worker starts costs one lookup per variant rather than the cold
    load (about two minutes at 10M stored photos, docs/performance.md). A sweep that comes
    meanwhile waits for the load on the index's lock, as it would have loaded it itself."""

    def load() -> None:
        try:
            started = time.monotonic()
            rows = current().sync()
            logger.info(
                "stored-photo index loaded ahead of the first sweep: %s rows in %.1f s",
                rows,
                time.monotonic() - started,
            )
        except Exception:  # noqa: BLE001 - the first sweep loads it instead (and reports)
            logger.exception("could not load the stored-photo index ahead of the first sweep")
        finally:
            connection.close()

    thread = threading.Thread(target=load, name="stored-index-warm-up", daemon=True)
    thread.start()
    return thread


def variants_of(entries: Iterable[tuple]) -> list[tuple[int, int, int | None]]:
    """``(variant number, dHash, pHash)`` of ``banned_index.variant_entries`` entries."""
    return [(key % KEYS_PER_FLAG, dhash, phash) for key, dhash, phash, *_ in entries]


def rows_to_screen(
    target: registry.ImageTarget, entries: list[tuple], rule: MatchRule
) -> Iterable[tuple[int, CheckFingerprints]]:
    """``(pk, CheckFingerprints)`` of the stored images of ``target`` that the sweep of these
    flag entries (``banned_index.variant_entries``) must screen: those found near them in the
    index when the kind's index is complete; every stored image otherwise (and a warning)."""
    marker = StoredHashTarget.objects.filter(key=target.key).first()
    if marker is None or not marker.complete:
        logger.warning(
            "The index of stored %s is incomplete: this sweep screens every stored image. "
            "Run `manage.py index_stored_photos`.",
            target.key,
        )
        return target.checked_rows()
    index = current()
    index.sync()
    pks = index.near(marker.pk, variants_of(entries), rule)
    return _checked_rows_of(target, pks)


def _checked_rows_of(target: registry.ImageTarget, pks: list[int], batch: int = 2000):
    for start in range(0, len(pks), batch):
        yield from target.checked_rows(pks=pks[start : start + batch])
