"""Every process's banned set sees every committed flag and unflag at its very next lookup.

Each process (web worker, task worker, command) keeps its own in-memory index and replays the
``BannedSetChange`` rows committed since it last looked, before every lookup.
These tests use real separate processes on the test database (``tests/processes.py``; on
SQLite the test database is a file, see settings), with no sleep or retry between a commit in
one process and the lookup in another. Then the cost side: a lookup with nothing new is one
query, and a new change is applied incrementally, not by reloading the index.

A process starts from the host's snapshot of the banned set (``moderation/banned_snapshot.py``),
which every process maps, and replays the log after it: the same guarantee holds for it. So it
does for the hash lists' PDQ entries (``moderation/signal_set.py``, ``SignalChange``): an import
or a retraction committed here is matched or unmatched by the next lookup of processes mapping
the host's PDQ snapshot.

Last, the commit-order hazard of the change log: ids are taken when a row is inserted but become
visible when its transaction commits, so without serialisation a reader could see change 11,
move its cursor past it, and never look at change 10 committed a moment later. Writers take a
lock (``banned_set.lock_banned_set``: a PostgreSQL advisory lock; SQLite has one writer anyway);
the last two tests interleave two writers on two connections to show no change is skipped, and
that without the lock one would be.
"""

from __future__ import annotations

import io
import json
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from moderation import banned_set, flagging, hash_lists, signal_lists, signal_set
from moderation.banned_index import KEYS_PER_FLAG
from moderation.hashing import Fingerprint
from moderation.models import BannedSetChange, FlaggedFingerprint, HashList, SignalEntry
from tests import helpers, images
from tests.helpers import fp_of
from tests.processes import COMMAND_TIMEOUT, MANAGE, manage, subprocess_env

# Commands run by subprocesses use the immediate backend: their sweep runs in the command.
IMMEDIATE = {"MODERATION_TASKS_BACKEND": "immediate"}


def ban(img, reason="known bad") -> FlaggedFingerprint:
    return helpers.ban(img, reason, keep_original=False)


def save(img, path: Path, fmt: str = "PNG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(images.encode(img, fmt))
    return path


@pytest.fixture
def count_cold_loads(monkeypatch):
    """How many times this process's banned set loaded the whole table."""
    calls = []
    original = banned_set.BannedSet._cold_load

    def spy(self):
        calls.append(self)
        return original(self)

    monkeypatch.setattr(banned_set.BannedSet, "_cold_load", spy)
    return calls


# --- two real processes -----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_flag_and_unflag_committed_by_another_process_are_enforced_by_the_next_lookup(
    tmp_path, count_cold_loads, settings
):
    ban(images.photo(40))
    ban(images.photo(41))
    scene = images.photo(42)
    copy = fp_of(images.resized(scene, 0.5))
    assert banned_set.find(copy) == []  # warm: this process has loaded the banned set
    banned, index = banned_set.current(), banned_set.current()._index
    # Each flag is stored in its variants (variants.VARIANTS), each an index entry.
    assert len(banned) == 2 * KEYS_PER_FLAG and len(count_cold_loads) == 1

    path = save(scene, tmp_path / "in" / "scene.png")
    manage("flag_images", str(path), "--reason", "xp", **IMMEDIATE)
    flagged = FlaggedFingerprint.objects.get(reason="xp")
    hits = banned_set.find(copy)  # the very next lookup: no sleep, no retry
    assert [h.fingerprint_id for h in hits] == [flagged.pk]
    assert hits[0].distance <= settings.MODERATION_MAX_DISTANCE

    manage(
        "shell",
        "-c",
        "from moderation import flagging; from moderation.models import FlaggedFingerprint as F; "
        f"flagging.unflag_fingerprint(flagged=F.objects.get(pk={flagged.pk}), reason='mistake')",
        **IMMEDIATE,
    )
    assert banned_set.find(copy) == []
    assert banned_set.find(fp_of(images.photo(40)))  # the older flags are still enforced
    # All of it incremental: the same index object, loaded once.
    assert banned_set.current()._index is index and len(count_cold_loads) == 1
    assert len(banned) == 2 * KEYS_PER_FLAG


# A process that stays up with a warm banned set (like a web worker) and answers lookups:
# one hex dHash per line in, one JSON line out.
_WARM_LOOKUPS = """
import json, sys
from moderation import banned_set, flagging, hash_lists, signal_lists, signal_set
from moderation.hashing import Fingerprint
banned = banned_set.current()
banned.sync()
print("LOOKUP " + json.dumps({"ready": len(banned), "snapshot": banned.snapshot}), flush=True)
for line in sys.stdin:
    hits = banned_set.find(Fingerprint.from_hex(line.strip()))
    print("LOOKUP " + json.dumps({
        "hits": [[m.fingerprint_id, m.distance] for m in hits],
        "index": id(banned._index),
        "size": len(banned),
        "snapshot": banned.snapshot,
    }), flush=True)
"""


# The same for the hash lists' PDQ entries: one hex PDQ in, the entries it matches out.
_WARM_PDQ_LOOKUPS = """
import json, sys
from moderation import signal_set, signals
found = signal_set.current()
found.sync()
print("LOOKUP " + json.dumps({"ready": len(found), "snapshot": found.snapshot}), flush=True)
for line in sys.stdin:
    hits = signals.lookup("pdq", line.strip())
    print("LOOKUP " + json.dumps({
        "hits": [m.entry_id for m in hits],
        "index": id(found._index),
        "size": len(found),
        "snapshot": found.snapshot,
    }), flush=True)
"""


class WarmLookupProcess:
    """``manage.py shell -c`` running ``script`` (``_WARM_LOOKUPS``: the banned set's); every
    answer is awaited (bounded)."""

    def __init__(self, script: str = _WARM_LOOKUPS, **env: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(MANAGE), "shell", "-c", script],
            env=subprocess_env(**IMMEDIATE, **env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.transcript: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        ready = self._answer()
        self.ready, self.snapshot = ready["ready"], ready["snapshot"]

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _answer(self) -> dict:
        deadline = time.monotonic() + COMMAND_TIMEOUT
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail("no answer from the lookup process:\n" + "".join(self.transcript))
            if line is None:
                pytest.fail("the lookup process exited:\n" + "".join(self.transcript))
            self.transcript.append(line)
            if line.startswith("LOOKUP "):
                return json.loads(line.removeprefix("LOOKUP "))

    def find(self, fp: Fingerprint) -> dict:
        return self.ask(fp.hex)

    def ask(self, line: str) -> dict:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self._answer()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def warm_lookups(transactional_db, isolated_storage):
    proc = WarmLookupProcess()
    try:
        yield proc
    finally:
        proc.stop()


def check_image(path: Path) -> dict:
    out = manage("check_image", "--json", str(path), **IMMEDIATE).stdout
    [line] = [ln for ln in out.splitlines() if ln.startswith("{")]
    return json.loads(line)


@pytest.mark.django_db(transaction=True)
def test_flag_and_unflag_committed_here_are_enforced_by_other_processes_next_lookup(
    tmp_path, warm_lookups
):
    ban(images.photo(43))
    scene = images.photo(44)
    copy_img = images.resized(scene, 0.5)
    copy, copy_path = fp_of(copy_img), save(copy_img, tmp_path / "copy.jpg", "JPEG")
    # The warm process loaded the set before the ban above or after it; either way it answers.
    before = warm_lookups.find(copy)
    assert before["hits"] == [] and before["size"] == KEYS_PER_FLAG
    assert check_image(copy_path)["decision"] == "pass"

    flagged = ban(scene, reason="here")  # committed by this process
    assert check_image(copy_path)["decision"] == "block"  # a new process
    after = warm_lookups.find(copy)  # a process that was already warm: its next lookup
    assert [fid for fid, _ in after["hits"]] == [flagged.pk]
    assert after["index"] == before["index"]  # applied incrementally, not reloaded

    assert flagging.unflag_fingerprint(flagged=flagged, reason="mistake")
    assert warm_lookups.find(copy)["hits"] == []
    assert check_image(copy_path)["decision"] == "pass"


# --- processes that start from the host's snapshot ---------------------------------------


def mapped_files(pid: int) -> set[str]:
    """The files a process has mapped into memory (``/proc/<pid>/maps``)."""
    lines = Path(f"/proc/{pid}/maps").read_text().splitlines()
    return {line.split(maxsplit=5)[5] for line in lines if len(line.split(maxsplit=5)) == 6}


@pytest.mark.django_db(transaction=True)
def test_processes_started_from_the_snapshot_share_its_files_and_enforce_later_changes_at_once(
    settings,
):
    old = ban(images.photo(56))
    manage("banned_snapshot")
    snapshot = banned_set.snapshot_store().current_name()
    first, second = WarmLookupProcess(), WarmLookupProcess()
    try:
        assert first.snapshot == second.snapshot == snapshot
        assert first.ready == second.ready == KEYS_PER_FLAG
        # Both map the same files: the host holds the set once.
        table = str(Path(settings.MODERATION_SNAPSHOT_DIR) / snapshot / "index.table.npy")
        assert table in mapped_files(first.proc.pid) and table in mapped_files(second.proc.pid)

        scene = images.photo(57)
        copy = fp_of(images.resized(scene, 0.5))
        assert first.find(copy)["hits"] == []
        flagged = ban(scene, reason="after the snapshot")  # committed after it, here
        assert flagging.unflag_fingerprint(flagged=old, reason="mistake")
        for proc in (first, second):  # the very next lookup of each
            assert [fid for fid, _ in proc.find(copy)["hits"]] == [flagged.pk]
            assert proc.find(fp_of(images.photo(56)))["hits"] == []
        assert banned_set.snapshot_store().current_name() == snapshot  # nothing rewrote it
    finally:
        first.stop()
        second.stop()


@pytest.mark.django_db(transaction=True)
def test_a_process_past_its_delta_limit_writes_a_newer_snapshot_in_the_background_and_moves_to_it(
    settings,
):
    ban(images.photo(58))
    manage("banned_snapshot")
    store = banned_set.snapshot_store()
    start = store.current_name()
    # One flag's entries are enough to pass the limit.
    proc = WarmLookupProcess(MODERATION_SNAPSHOT_DELTA_LIMIT=str(KEYS_PER_FLAG))
    try:
        assert proc.snapshot == start
        scene = images.photo(59)
        copy = fp_of(images.resized(scene, 0.5))
        flagged = ban(scene, reason="past the limit")
        deadline = time.monotonic() + COMMAND_TIMEOUT
        while True:  # every answer is right, while the new snapshot is written and after
            answer = proc.find(copy)
            assert [fid for fid, _ in answer["hits"]] == [flagged.pk]
            assert answer["size"] == 2 * KEYS_PER_FLAG
            if answer["snapshot"] != start or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert answer["snapshot"] not in (None, start)
        assert store.current_name() == answer["snapshot"]
        assert not (Path(settings.MODERATION_SNAPSHOT_DIR) / start).exists()  # removed
    finally:
        proc.stop()


def import_pdq(hash_list: HashList, values: list[str], *, source: str = "partner") -> None:
    """An import of ``values`` committed by this process (a later one of the same ``source``
    retracts what it no longer carries)."""
    imp = signal_lists.import_start(
        hash_list=hash_list,
        file=io.BytesIO("".join(f"{v}\n" for v in values).encode()),
        file_name="partner.txt",
        fmt="text",
        source=source,
    )
    signal_lists.run_import(imp)


@pytest.mark.django_db(transaction=True)
def test_processes_sharing_the_pdq_snapshot_match_an_import_and_a_retraction_at_once(
    settings,
):
    rng = np.random.default_rng(11)
    old, new = ([bytes(r).hex() for r in rng.integers(0, 256, (2, 32), np.uint8)] for _ in "ab")
    partner = HashList.objects.create(name="partner")
    import_pdq(partner, old)
    manage("banned_snapshot")
    snapshot = signal_set.snapshot_store().current_name()
    first, second = (WarmLookupProcess(_WARM_PDQ_LOOKUPS) for _ in "ab")
    try:
        assert first.snapshot == second.snapshot == snapshot
        assert first.ready == second.ready == 2
        # Both map the same files: the host holds the PDQ entries once.
        order = str(Path(settings.MODERATION_SNAPSHOT_DIR) / "pdq" / snapshot / "order.npy")
        assert order in mapped_files(first.proc.pid) and order in mapped_files(second.proc.pid)
        assert first.ask(new[0])["hits"] == []

        import_pdq(partner, [old[0], *new])  # committed here, after the snapshot
        added = SignalEntry.objects.get(value=new[0]).pk
        assert not SignalEntry.objects.get(value=old[1]).active  # retracted by the import
        for proc in (first, second):  # the very next lookup of each
            answer = proc.ask(new[0])
            assert answer["hits"] == [added] and answer["size"] == 3
            assert proc.ask(old[1])["hits"] == []

        entry = SignalEntry.objects.get(value=new[1])
        assert signal_lists.entry_retract(entry=entry, reason="mistake")  # one entry
        assert first.ask(new[1])["hits"] == []
        hash_lists.hash_list_update(
            hash_list=partner, max_distance=partner.max_distance, enabled=False, mode=partner.mode
        )
        assert second.ask(new[0])["hits"] == []  # a list switched off
        assert signal_set.snapshot_store().current_name() == snapshot  # nothing rewrote it
    finally:
        first.stop()
        second.stop()


@pytest.mark.django_db(transaction=True)
def test_a_process_past_its_pdq_delta_limit_writes_a_newer_pdq_snapshot_in_the_background(settings):
    rng = np.random.default_rng(12)
    old, new = ([bytes(r).hex() for r in rng.integers(0, 256, (3, 32), np.uint8)] for _ in "ab")
    partner = HashList.objects.create(name="partner")
    import_pdq(partner, old)
    manage("banned_snapshot")
    store = signal_set.snapshot_store()
    start = store.current_name()
    proc = WarmLookupProcess(_WARM_PDQ_LOOKUPS, MODERATION_SNAPSHOT_DELTA_LIMIT="3")
    try:
        assert proc.snapshot == start
        import_pdq(partner, new, source="later")  # three entries: the limit
        added = SignalEntry.objects.get(value=new[2]).pk
        deadline = time.monotonic() + COMMAND_TIMEOUT
        while True:  # every answer is right, while the new snapshot is written and after
            answer = proc.ask(new[2])
            assert answer["hits"] == [added] and answer["size"] == 6
            if answer["snapshot"] != start or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert answer["snapshot"] not in (None, start)
        assert store.current_name() == answer["snapshot"]
        assert not (Path(settings.MODERATION_SNAPSHOT_DIR) / "pdq" / start).exists()
    finally:
        proc.stop()


# --- the cost of staying consistent -----------------------------------------------------


@pytest.mark.django_db
def test_a_lookup_with_nothing_new_costs_at_most_one_query(django_assert_max_num_queries):
    for seed in (45, 46, 47):
        ban(images.photo(seed))
    fp = fp_of(images.photo(46))
    assert banned_set.find(fp)  # warm-up (the cold load)
    for _ in range(3):
        with django_assert_max_num_queries(1):
            assert banned_set.find(fp)
        with django_assert_max_num_queries(1):
            assert not banned_set.find(fp_of(images.photo(48)))


@pytest.mark.django_db
def test_a_new_change_is_applied_incrementally_without_reloading(count_cold_loads):
    for seed in (49, 50, 51):
        ban(images.photo(seed))
    banned = banned_set.current()
    fp_new = fp_of(images.photo(52))
    assert banned_set.find(fp_new) == []
    index, last = banned._index, banned._last_change_id
    assert len(banned) == 3 * KEYS_PER_FLAG and len(count_cold_loads) == 1

    flagged = ban(images.photo(52))
    changes = list(BannedSetChange.objects.filter(id__gt=last).order_by("id"))
    assert len(changes) == KEYS_PER_FLAG  # one row per stored variant
    with CaptureQueriesContext(connection) as queries:
        hits = banned_set.find(fp_new)
    assert [h.fingerprint_id for h in hits] == [flagged.pk]
    # One query, on the change log only, for the rows after the last one seen.
    [query] = queries.captured_queries
    assert BannedSetChange._meta.db_table in query["sql"]
    assert FlaggedFingerprint._meta.db_table not in query["sql"]
    assert banned._index is index and len(count_cold_loads) == 1
    assert banned._last_change_id == changes[-1].pk and len(banned) == 4 * KEYS_PER_FLAG


# --- commit order ----------------------------------------------------------------------


def _interleave_two_writers(scene_a, scene_b):
    """Writer A flags ``scene_a`` and holds its transaction open; B flags ``scene_b`` meanwhile.

    Returns ``(seen_before, run_rest)``: what this process's lookup of B returned while A was
    still open, and a function that lets A commit and waits for both writers.
    """
    a_wrote, release_a, b_done = threading.Event(), threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def writer_a():
        try:
            with transaction.atomic():
                ban(scene_a, reason="A")
                a_wrote.set()
                if not release_a.wait(COMMAND_TIMEOUT):
                    raise TimeoutError("A was never released")
        except BaseException as e:  # reported by the test
            errors.append(e)
            a_wrote.set()
        finally:
            connection.close()

    def writer_b():
        try:
            ban(scene_b, reason="B")
        except BaseException as e:
            errors.append(e)
        finally:
            b_done.set()
            connection.close()

    threads = [threading.Thread(target=writer_a), threading.Thread(target=writer_b)]
    threads[0].start()
    assert a_wrote.wait(COMMAND_TIMEOUT) and not errors, errors
    threads[1].start()
    # Until B either committed (nothing stops it) or is seen waiting for A: on PostgreSQL for
    # the advisory lock; on SQLite there is no way to see the wait, so B gets a second.
    deadline = time.monotonic() + (COMMAND_TIMEOUT if connection.vendor == "postgresql" else 1)
    while not b_done.is_set() and time.monotonic() < deadline:
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                )
                if cursor.fetchone()[0]:
                    break
        time.sleep(0.02)
    seen_before = banned_set.find(fp_of(scene_b))

    def run_rest():
        release_a.set()
        for t in threads:
            t.join(COMMAND_TIMEOUT)
        assert not any(t.is_alive() for t in threads), "a writer is stuck"
        assert not errors, errors

    return seen_before, run_rest


@pytest.mark.django_db(transaction=True)
def test_a_change_committed_late_is_never_skipped_by_a_reader():
    ban(images.photo(53))
    scene_a, scene_b = images.photo(54), images.photo(55)
    assert banned_set.find(fp_of(scene_a)) == []  # warm

    seen_b_while_a_open, run_rest = _interleave_two_writers(scene_a, scene_b)
    run_rest()

    a = FlaggedFingerprint.objects.get(reason="A")
    b = FlaggedFingerprint.objects.get(reason="B")
    # B could not commit before A: A's change (the lower id) became visible first.
    assert seen_b_while_a_open == []
    assert [h.fingerprint_id for h in banned_set.find(fp_of(scene_a))] == [a.pk]
    assert [h.fingerprint_id for h in banned_set.find(fp_of(scene_b))] == [b.pk]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_without_the_advisory_lock_a_reader_would_skip_a_change_committed_late(monkeypatch):
    """Shows the test above can fail: with the lock removed, the reader misses A for good."""
    if connection.vendor != "postgresql":
        pytest.skip(
            "NOT RUN: needs PostgreSQL (DATABASE_URL=postgres://...). On SQLite one writer at a "
            "time is the database's own rule, so there is no lock to remove."
        )
    monkeypatch.setattr(flagging, "lock_banned_set", lambda: None)
    ban(images.photo(53))
    scene_a, scene_b = images.photo(54), images.photo(55)
    assert banned_set.find(fp_of(scene_a)) == []

    seen_b_while_a_open, run_rest = _interleave_two_writers(scene_a, scene_b)
    run_rest()

    a = FlaggedFingerprint.objects.get(reason="A")
    b = FlaggedFingerprint.objects.get(reason="B")
    # One change row per stored variant of each flag.
    ids_a = list(BannedSetChange.objects.filter(fingerprint=a).values_list("pk", flat=True))
    ids_b = list(BannedSetChange.objects.filter(fingerprint=b).values_list("pk", flat=True))
    assert len(ids_a) == len(ids_b) == KEYS_PER_FLAG
    assert max(ids_a) < min(ids_b)  # A took its ids first ...
    assert [h.fingerprint_id for h in seen_b_while_a_open] == [b.pk]  # ... B committed first
    assert banned_set.find(fp_of(scene_a)) == []  # A is committed, active, and missed for good
    banned_set.reset()
    assert [h.fingerprint_id for h in banned_set.find(fp_of(scene_a))] == [a.pk]


@pytest.mark.django_db(transaction=True)
def test_the_writers_lock_refuses_to_be_taken_outside_a_transaction():
    # In autocommit pg_advisory_xact_lock would be released at once, ordering nothing.
    with pytest.raises(RuntimeError, match="atomic"):
        banned_set.lock_banned_set()
    with transaction.atomic():
        banned_set.lock_banned_set()
