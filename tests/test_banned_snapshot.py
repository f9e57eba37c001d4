"""The banned set's snapshot: every process of a host maps one copy, and answers stay exact.

First without a database: an index written as a snapshot and mapped back answers exactly like
the brute-force scan and like the index it was written from, before and after changes, and the
changes never touch the mapped files. A damaged or foreign snapshot is refused. Then with the
database: a process starts from the snapshot and replays the change log after it, falls back
to the tables (and writes a fresh snapshot) when the snapshot cannot be used, and moves to a
newer snapshot when its private delta grows; ``manage.py banned_snapshot`` writes one.
Real processes sharing the mapping: ``tests/test_cross_process.py``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from moderation import banned_set, flagging
from moderation.banned_index import KEYS_PER_FLAG, ROWS, BannedIndex, entry_key, list_policy
from moderation.banned_snapshot import CURRENT, SnapshotStore, is_mapped
from moderation.fingerprint_index import FingerprintIndex
from moderation.hashing import Fingerprint
from moderation.linear_index import LinearIndex
from moderation.matching import MatchRule
from moderation.models import BannedSetChange, FlaggedFingerprint
from tests import helpers, images
from tests.helpers import fp_of
from tests.test_fingerprint_index import clustered, queries

COMPATIBLE = {"pipeline_version": 1, "keys_per_flag": KEYS_PER_FLAG, "database": "test"}
INDEXED = {"index_min": 0, "scan_fallback": False}


def store_in(tmp_path: Path, **compatible) -> SnapshotStore:
    return SnapshotStore(tmp_path / "snapshots", {**COMPATIBLE, **compatible})


def written(store: SnapshotStore, arrays: dict) -> dict:
    """``arrays`` written as the current snapshot and mapped back."""
    store.write(arrays, change_id=7, last_change=[], entries=0)
    [snapshot] = list(store.newest())
    assert all(is_mapped(a) for a in snapshot.arrays.values() if a.size > 1)
    return snapshot.arrays


def random_entries(rng: np.random.Generator, flags: int) -> tuple[np.ndarray, ...]:
    """(keys, dhashes, phashes, flags) of ``flags`` flags with every variant, clustered."""
    n = flags * KEYS_PER_FLAG
    keys = np.arange(n, dtype=np.int64) + KEYS_PER_FLAG  # flag ids from 1
    dhashes = np.array(clustered(rng, n), dtype=np.uint64)
    phashes = rng.integers(0, 2**64, size=n, dtype=np.uint64)
    policies = [0, list_policy(10, False), list_policy(None, True, 14)]
    entry_flags = np.array([1 | policies[i % 3] for i in range(n)], dtype=np.uint32)
    return keys, dhashes, phashes, entry_flags


def same_answers(a: BannedIndex, b: BannedIndex, probes: list[int], phash: int) -> None:
    rule = MatchRule.from_settings()
    for q in probes:
        fp = Fingerprint(dhash=q, phash=phash)
        assert a.candidates(fp, 16) == b.candidates(fp, 16)
        assert a.check(fp, rule) == b.check(fp, rule)


# --- the files and the index, no database --------------------------------------------------


@pytest.mark.parametrize("size", [3_000, 140_000], ids=["scanned", "chunk tables"])
def test_a_mapped_fingerprint_index_answers_like_a_brute_force_scan_before_and_after_changes(
    tmp_path, size
):
    rng = np.random.default_rng(size)
    hashes = clustered(rng, size)
    built = FingerprintIndex(**INDEXED) if size < 10_000 else FingerprintIndex()
    built.build(range(size), hashes)
    mapped = FingerprintIndex.from_state(written(store_in(tmp_path), built.state()))
    reference = LinearIndex()
    reference.build(range(size), hashes)
    probes = queries(rng, hashes, 30)
    for q in probes:
        for r in (0, 4, 10, 16):
            assert mapped.query(q, r) == reference.query(q, r)

    # More changes than any delta limit: the mapped index never merges, never writes.
    table_before = np.array(mapped._main.table)
    for i in range(3_000):
        if i % 3:
            mapped.add(size + i, hashes[i])
            reference.add(size + i, hashes[i])
        else:
            mapped.remove(i)
            reference.remove(i)
    mapped.add(5, hashes[7])  # a replaced hash
    reference.add(5, hashes[7])
    assert mapped.frozen and is_mapped(mapped._main.table)
    # Pending: 2 000 added, 1 000 tombstones, and a tombstone + delta entry for the replaced.
    assert mapped.pending() == 3_000 + 2 and len(mapped) == len(reference)
    np.testing.assert_array_equal(mapped._main.table, table_before)
    for q in probes:
        for r in (0, 6, 12):
            assert mapped.query(q, r) == reference.query(q, r)
    assert (5 in mapped, 3 in mapped, size + 1 in mapped) == (True, False, True)

    mapped.thaw()  # the last resort: merge privately
    assert not mapped.frozen and mapped.pending() == 0
    assert not is_mapped(mapped._main.table)
    for q in probes[:10]:
        assert mapped.query(q, 10) == reference.query(q, 10)


def test_a_mapped_fingerprint_index_refuses_to_be_written_into(tmp_path):
    built = FingerprintIndex(**INDEXED)
    built.build(range(100), range(100))
    mapped = FingerprintIndex.from_state(written(store_in(tmp_path), built.state()))
    with pytest.raises(ValueError, match="read-only"):
        mapped._main.table[0] = 1


def test_a_banned_index_mapped_from_a_snapshot_answers_as_the_one_it_was_written_from(
    tmp_path,
):
    rng = np.random.default_rng(3)
    arrays = random_entries(rng, 800)
    built = BannedIndex()
    built.build_arrays(*arrays)
    mapped = BannedIndex.from_state(written(store_in(tmp_path), built.state()))
    assert mapped.frozen and len(mapped) == len(built) == 800 * KEYS_PER_FLAG
    probes = queries(rng, arrays[1].tolist(), 40)
    same_answers(mapped, built, probes, phash=int(arrays[2][0]))

    # Changes made to both (the change log replayed): still the same answers; the mapped
    # one keeps them privately, and its arrays with the changes applied equal the other's.
    for flag in range(1, 60):
        for variant in range(KEYS_PER_FLAG):
            key = entry_key(flag, variant)
            if flag % 2:
                for index in (built, mapped):
                    index.remove(key)
            else:
                for index in (built, mapped):
                    index.add(key, int(arrays[1][-key]), int(arrays[2][key]), False, 0)
    assert mapped.pending() == 59 * KEYS_PER_FLAG
    probes += [int(arrays[1][-key]) for key in range(14, 840, 25)]  # changed entries' hashes
    probes += [int(arrays[1][key - KEYS_PER_FLAG]) for key in range(14, 840, 25)]
    added = Fingerprint(dhash=int(arrays[1][-28]), phash=int(arrays[2][28]))  # flag 2, variant 0
    found = mapped.candidates(added, 0)
    assert (2, 0, 0) in [(m.fingerprint_id, m.variant, m.distance) for m in found]
    removed = Fingerprint(dhash=int(arrays[1][0]), phash=int(arrays[2][0]))  # flag 1, variant 0
    assert 1 not in [m.fingerprint_id for m in mapped.candidates(removed, 0)]
    same_answers(mapped, built, probes, phash=int(arrays[2][0]))
    for ours, theirs in zip(mapped.arrays(), built.arrays()):
        np.testing.assert_array_equal(ours, theirs)
    rebuilt = BannedIndex()  # the same entries with no pending change, as a new snapshot holds
    rebuilt.build_arrays(*built.arrays())
    same_answers(mapped, rebuilt, probes, phash=int(arrays[2][0]))
    assert len(rebuilt) == len(mapped) == (800 - 30) * KEYS_PER_FLAG


def read_by_key_search(index: BannedIndex) -> BannedIndex:
    """The same index answering without its entry-data rows: every candidate's pHash and flags
    found by binary search among the keys, as before the rows existed."""
    plain = BannedIndex.from_state({k: v for k, v in index.state().items() if k != ROWS})
    assert plain._current_rows() is None
    return plain


@pytest.mark.parametrize("flags", [800, 10_000], ids=["scanned", "chunk tables"])
def test_candidates_read_through_the_entry_rows_are_those_found_by_key_search(tmp_path, flags):
    rng = np.random.default_rng(flags)
    arrays = random_entries(rng, flags)
    built = BannedIndex()
    built.build_arrays(*arrays)
    mapped = BannedIndex.from_state(written(store_in(tmp_path), built.state()))
    plain = read_by_key_search(built)
    assert built._current_rows() is not None and mapped._current_rows() is not None
    probes = queries(rng, arrays[1].tolist(), 20)
    for index in (built, mapped):
        same_answers(index, plain, probes, phash=int(arrays[2][3]))

    # Removed entries, new ones (in the delta) and changed ones (a new pHash and list policy
    # for a key the rows still point at): the changes win over the rows.
    n = len(arrays[0])
    for i in range(0, 400):
        key = int(arrays[0][i])
        for index in (built, mapped, plain):
            if i % 3 == 0:
                index.remove(key)
            elif i % 3 == 1:
                index.add(
                    key, int(arrays[1][i]), int(arrays[2][n - 1 - i]), True, list_policy(9, True)
                )
            else:
                index.add(key + n + KEYS_PER_FLAG, int(arrays[1][i]), int(arrays[2][i]), False, 0)
    probes += [int(h) for h in arrays[1][:400:20]]
    for index in (built, mapped):
        same_answers(index, plain, probes, phash=int(arrays[2][n - 2]))
    assert mapped._current_rows() is not None  # a frozen index never merges: its rows hold


def test_a_merge_retires_the_rows_and_answers_stay_those_of_the_key_search():
    rng = np.random.default_rng(5)
    arrays = random_entries(rng, 10_000)
    built = BannedIndex()
    built.build_arrays(*arrays)
    plain = read_by_key_search(built)
    n = len(arrays[0])
    for i in range(3_000):  # past both parts' merge limits (~1,100 and ~2,200 changes here)
        for index in (built, plain):
            index.add(n + KEYS_PER_FLAG + i, int(arrays[1][i]), int(arrays[2][i]), False, 0)
    assert built.pending() < 3_000 and built._current_rows() is None
    same_answers(built, plain, queries(rng, arrays[1].tolist(), 40), phash=int(arrays[2][1]))
    again = BannedIndex()  # the next build (a new snapshot) aligns them again
    again.build_arrays(*built.arrays())
    assert again._current_rows() is not None
    same_answers(again, plain, queries(rng, arrays[1].tolist(), 40), phash=int(arrays[2][1]))


def test_an_empty_snapshot_then_added_entries_are_found():
    empty = BannedIndex()
    empty.build_arrays(*(np.empty(0, t) for t in (np.int64, np.uint64, np.uint64, np.uint32)))
    mapped = BannedIndex.from_state(empty.state())
    mapped.add(entry_key(3, 0), 0xF0F0, 0x1234, False)
    [match] = mapped.candidates(Fingerprint(dhash=0xF0F1, phash=0x1234), 4)
    assert (match.fingerprint_id, match.distance, match.confirm_distance) == (3, 1, 0)


def test_entry_rows_that_do_not_fit_the_index_are_refused(tmp_path):
    rng = np.random.default_rng(8)
    built = BannedIndex()
    built.build_arrays(*random_entries(rng, 10_000))
    state = built.state()
    with pytest.raises(ValueError, match="do not match"):
        BannedIndex.from_state(state | {ROWS: np.roll(state[ROWS], 1)})
    with pytest.raises(ValueError, match="differ in size"):
        BannedIndex.from_state(state | {ROWS: state[ROWS][:-1]})


def damage_truncate(path: Path) -> None:
    table = path / "index.table.npy"
    table.write_bytes(table.read_bytes()[:-8])


def damage_flip_a_bit(path: Path) -> None:
    table = path / "index.table.npy"
    data = bytearray(table.read_bytes())
    data[-3] ^= 0x10  # in the data, past the header
    table.write_bytes(bytes(data))


def damage_remove_a_file(path: Path) -> None:
    (path / "data.flags.npy").unlink()


def damage_meta(path: Path) -> None:
    (path / "meta.json").write_text('{"format_version": 1, "pipeline_')


def damage_format_version(path: Path) -> None:
    meta = json.loads((path / "meta.json").read_text())
    (path / "meta.json").write_text(json.dumps({**meta, "format_version": 0}))


@pytest.mark.parametrize(
    "damage",
    [damage_truncate, damage_flip_a_bit, damage_remove_a_file, damage_meta, damage_format_version],
)
def test_a_damaged_snapshot_is_refused_with_a_warning(tmp_path, caplog, damage):
    built = BannedIndex()
    built.build_arrays(*random_entries(np.random.default_rng(4), 20))
    store = store_in(tmp_path)
    snapshot = store.write(built.state(), change_id=3, last_change=[], entries=len(built))
    damage(snapshot.path)
    with caplog.at_level(logging.WARNING, logger="moderation.banned_snapshot"):
        assert list(store.newest()) == []
    assert f"banned-set snapshot {snapshot.path} ignored" in caplog.text


def counting_checksums(monkeypatch) -> list[int]:
    """Spy on the CRC-32 of the snapshot's arrays: one entry per array checked."""
    from moderation import banned_snapshot

    calls = []
    real = banned_snapshot.checksum

    def counted(array):
        calls.append(array.size)
        return real(array)

    monkeypatch.setattr(banned_snapshot, "checksum", counted)
    return calls


def test_a_snapshot_checked_once_on_this_host_is_not_checksummed_again(tmp_path, monkeypatch):
    built = BannedIndex()
    built.build_arrays(*random_entries(np.random.default_rng(6), 20))
    store = store_in(tmp_path)
    snapshot = store.write(built.state(), change_id=3, last_change=[], entries=len(built))
    calls = counting_checksums(monkeypatch)
    again = store.open(snapshot.path)  # another process of the host, after the writer's check
    assert calls == []
    assert again.meta["change_id"] == 3


def test_after_a_reboot_a_snapshot_is_checked_again(tmp_path, monkeypatch):
    from moderation import banned_snapshot

    built = BannedIndex()
    built.build_arrays(*random_entries(np.random.default_rng(7), 20))
    store = store_in(tmp_path)
    snapshot = store.write(built.state(), change_id=3, last_change=[], entries=len(built))
    calls = counting_checksums(monkeypatch)
    monkeypatch.setattr(banned_snapshot, "_boot_id", lambda: "another-boot")
    store.open(snapshot.path)
    assert len(calls) == len(snapshot.meta["arrays"])
    calls.clear()
    store.open(snapshot.path)  # checked since this boot: trusted
    assert calls == []


def test_a_snapshot_made_for_other_code_is_refused_with_a_warning(tmp_path, caplog):
    built = BannedIndex()
    built.build_arrays(*random_entries(np.random.default_rng(5), 20))
    store_in(tmp_path).write(built.state(), change_id=3, last_change=[], entries=len(built))
    with caplog.at_level(logging.WARNING, logger="moderation.banned_snapshot"):
        assert list(store_in(tmp_path, pipeline_version=2).newest()) == []
    assert "made for pipeline_version 1, this is 2" in caplog.text
    assert len(list(store_in(tmp_path).newest())) == 1  # the code it was made for uses it


def test_a_new_snapshot_replaces_the_current_one_and_the_old_one_is_removed(tmp_path):
    built = BannedIndex()
    built.build_arrays(*random_entries(np.random.default_rng(6), 20))
    store = store_in(tmp_path)
    first = store.write(built.state(), change_id=3, last_change=[], entries=len(built))
    kept_open = first.arrays["index.table"]
    second = store.write(built.state(), change_id=4, last_change=[], entries=len(built))
    assert os.readlink(store.root / CURRENT) == second.name
    assert [p.name for p in store.root.iterdir() if p.name != CURRENT] == [second.name]
    # A process still mapping the removed one keeps reading it.
    np.testing.assert_array_equal(kept_open, second.arrays["index.table"])


def test_one_builder_at_a_time_others_are_told_the_lock_is_busy(tmp_path):
    store = store_in(tmp_path)
    with store.lock(blocking=True) as first:
        with store_in(tmp_path).lock(blocking=False) as second:
            assert (first, second) == (True, False)
    with store.lock(blocking=False) as again:
        assert again


# --- with the database ---------------------------------------------------------------------


def ban(img, reason="known bad") -> FlaggedFingerprint:
    return helpers.ban(img, reason, keep_original=False)


def hits(banned: banned_set.BannedSet, img) -> list[int]:
    return [m.fingerprint_id for m in banned.find(fp_of(img))]


@pytest.mark.django_db
def test_a_process_starts_from_the_snapshot_and_replays_the_changes_committed_after_it():
    kept, dropped = ban(images.photo(60)), ban(images.photo(61))
    snapshot, _ = banned_set.rebuild_snapshot(banned_set.snapshot_store(), blocking=True)
    added = ban(images.photo(62))
    assert flagging.unflag_fingerprint(flagged=dropped, reason="mistake")

    banned = banned_set.BannedSet()
    assert hits(banned, images.photo(62)) == [added.pk]
    assert hits(banned, images.photo(61)) == []
    assert hits(banned, images.photo(60)) == [kept.pk]
    assert banned.snapshot == snapshot.name and banned._index.frozen
    assert len(banned) == 2 * KEYS_PER_FLAG


@pytest.mark.django_db
def test_without_a_snapshot_the_first_process_loads_the_tables_and_writes_one(caplog):
    flagged = ban(images.photo(63))
    with caplog.at_level(logging.WARNING):
        banned = banned_set.BannedSet()
        assert hits(banned, images.photo(63)) == [flagged.pk]
    assert "no banned-set snapshot" in caplog.text
    store = banned_set.snapshot_store()
    assert banned.snapshot == store.current_name() is not None
    assert banned_set.BannedSet().find(fp_of(images.photo(63)))  # the next one maps it


@pytest.mark.django_db
def test_a_damaged_snapshot_is_ignored_and_replaced_from_the_tables(caplog):
    flagged = ban(images.photo(64))
    store = banned_set.snapshot_store()
    snapshot, _ = banned_set.rebuild_snapshot(store, blocking=True)
    damage_flip_a_bit(snapshot.path)
    with caplog.at_level(logging.WARNING):
        banned = banned_set.BannedSet()
        assert hits(banned, images.photo(64)) == [flagged.pk]
    assert "checksum mismatch" in caplog.text
    assert banned.snapshot not in (None, snapshot.name)
    assert [s.name for s in store.newest()] == [banned.snapshot]


@pytest.mark.django_db
def test_a_snapshot_from_another_database_or_a_restore_is_ignored(caplog):
    flagged = ban(images.photo(65))
    store = banned_set.snapshot_store()
    snapshot, _ = banned_set.rebuild_snapshot(store, blocking=True)
    # What a restore looks like from here: the log no longer holds the snapshot's last change.
    BannedSetChange.objects.filter(id=snapshot.change_id).update(active=False)
    with caplog.at_level(logging.WARNING):
        banned = banned_set.BannedSet()
        assert hits(banned, images.photo(65)) == [flagged.pk]
    assert f"change {snapshot.change_id} is not in this database's log" in caplog.text
    assert banned.snapshot != snapshot.name


@pytest.mark.django_db
def test_past_the_delta_limit_a_process_moves_to_a_newer_snapshot_and_answers_stay_right(
    settings,
):
    settings.MODERATION_SNAPSHOT_DELTA_LIMIT = 2 * KEYS_PER_FLAG
    first = ban(images.photo(66))
    banned = banned_set.BannedSet(background=False)
    assert hits(banned, images.photo(66)) == [first.pk]
    start = banned.snapshot

    second = ban(images.photo(67))
    assert hits(banned, images.photo(67)) == [second.pk]
    assert banned.snapshot == start and banned._index.pending() == KEYS_PER_FLAG
    assert flagging.unflag_fingerprint(flagged=first, reason="mistake")
    # Two flags' entries changed: past the limit, so this lookup moved to a new snapshot.
    assert hits(banned, images.photo(66)) == []
    assert banned.snapshot != start and banned._index.pending() == 0
    assert hits(banned, images.photo(67)) == [second.pk]
    assert len(banned) == KEYS_PER_FLAG
    assert banned_set.snapshot_store().current_name() == banned.snapshot


@pytest.mark.django_db
def test_the_command_writes_a_snapshot_then_updates_it_from_the_change_log(tmp_path):
    ban(images.photo(68))
    out = call(None)
    assert "from the database" in out and f"{KEYS_PER_FLAG} entries" in out
    assert "is up to date" in call(None)
    ban(images.photo(69))
    out = call(None)
    assert "and the changes after it" in out and f"{2 * KEYS_PER_FLAG} entries" in out
    assert "wrote" in call("--force")
    [snapshot] = banned_set.snapshot_store().newest()
    assert Path(snapshot.path).parent == tmp_path / "banned-set"


def call(*args) -> str:
    from io import StringIO

    out = StringIO()
    call_command("banned_snapshot", *[a for a in args if a], stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_the_command_says_so_when_snapshots_are_turned_off(settings):
    settings.MODERATION_SNAPSHOT_DIR = ""
    with pytest.raises(CommandError, match="MODERATION_SNAPSHOT_DIR is empty"):
        call(None)
    flagged = ban(images.photo(70))  # and every process loads from the tables
    assert hits(banned_set.BannedSet(), images.photo(70)) == [flagged.pk]


@pytest.mark.django_db
def test_a_snapshot_folder_that_cannot_be_written_leaves_each_process_its_own_copy(
    settings, tmp_path, caplog
):
    (tmp_path / "a-file").write_text("not a folder")
    settings.MODERATION_SNAPSHOT_DIR = str(tmp_path / "a-file" / "banned-set")
    flagged = ban(images.photo(71))
    with caplog.at_level(logging.WARNING):
        banned = banned_set.BannedSet()
        assert hits(banned, images.photo(71)) == [flagged.pk]
    assert "banned-set snapshot not written" in caplog.text
    assert banned.snapshot is None and not banned._index.frozen


@pytest.mark.django_db
def test_when_no_newer_snapshot_can_be_written_a_process_merges_its_changes_privately(
    settings, caplog
):
    settings.MODERATION_SNAPSHOT_DELTA_LIMIT = KEYS_PER_FLAG
    ban(images.photo(72))
    banned = banned_set.BannedSet(background=False)
    banned.sync()
    assert banned._index.frozen
    settings.MODERATION_SNAPSHOT_DIR = ""  # as if the folder had gone
    flagged = ban(images.photo(73))
    with caplog.at_level(logging.WARNING):
        assert hits(banned, images.photo(73)) == [flagged.pk]
    assert "merging in memory" in caplog.text
    assert not banned._index.frozen and banned.snapshot is None
    assert hits(banned, images.photo(73)) == [flagged.pk] and len(banned) == 2 * KEYS_PER_FLAG
