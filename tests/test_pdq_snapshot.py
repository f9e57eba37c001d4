"""The hash lists' PDQ entries held once per host: every process maps one snapshot of the PDQ
index, and answers stay exact.

First without a database: a ``PdqIndex`` written as a snapshot and mapped back answers exactly
like a full scan, before and after changes, and the changes never touch the mapped files. Then
with the database: a process starts from the PDQ snapshot and replays ``SignalChange`` after
it (an import, a retraction, a list switched off), refuses a damaged or foreign snapshot and
loads the table instead, moves to a newer snapshot when its delta grows, and
``manage.py banned_snapshot`` writes the PDQ snapshot with the banned set's. Real processes
sharing the mapping: ``tests/test_cross_process.py``.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command

from moderation import hash_lists, pdq_index, signal_lists, signal_set, signals
from moderation.banned_snapshot import SnapshotStore, is_mapped
from moderation.models import HashList, SignalChange, SignalEntry
from moderation.pdq_index import LinearPdqIndex, PdqIndex
from tests.test_pdq_index import clustered, near


def random_hex(rng: np.random.Generator, n: int) -> list[str]:
    return [bytes(row).hex() for row in rng.integers(0, 256, (n, 32), dtype=np.uint8)]


def flipped(value: str, bits: int) -> str:
    """``value`` with its first ``bits`` bits inverted (exactly ``bits`` bits away)."""
    return f"{int(value, 16) ^ (((1 << bits) - 1) << (256 - bits)):064x}"


def damage_flip_a_bit(path: Path) -> None:
    hashes = path / "hashes.npy"
    data = bytearray(hashes.read_bytes())
    data[-3] ^= 0x10  # in the data, past the header
    hashes.write_bytes(bytes(data))


def damage_truncate(path: Path) -> None:
    starts = path / "starts.npy"
    starts.write_bytes(starts.read_bytes()[:-8])


def damage_remove_a_file(path: Path) -> None:
    (path / "order.npy").unlink()


# --- the files and the index, no database --------------------------------------------------


def test_a_mapped_pdq_index_answers_like_a_scan_before_and_after_changes_and_never_writes(
    tmp_path, monkeypatch
):
    rng = np.random.default_rng(5)
    n = 3_000
    hashes = clustered(rng, n)
    keys = rng.permutation(10 * n)[:n].astype(np.int64)
    built = PdqIndex()
    built.build(keys, hashes)
    store = SnapshotStore(tmp_path / "pdq", {"database": "test"}, label="PDQ")
    store.write(built.state(), change_id=3, last_change=[], entries=n)
    [snapshot] = list(store.newest())
    assert all(is_mapped(a) for a in snapshot.arrays.values())
    mapped = PdqIndex.from_state(snapshot.arrays)
    reference = LinearPdqIndex()
    reference.build(keys, hashes)
    probes = [near(rng, hashes[rng.integers(n)], int(rng.integers(0, 40))) for _ in range(30)]

    def same() -> None:
        for q in probes:
            for r in (0, 12, 31, 47):
                got, want = mapped.query(q, r), reference.query(q, r)
                assert got[0].tolist() == want[0].tolist()
                assert got[1].tolist() == want[1].tolist()

    same()
    # More changes than the delta would hold before compacting: a mapped index never does.
    monkeypatch.setattr(pdq_index, "COMPACT_AT", 10)
    before = {name: np.array(a) for name, a in snapshot.arrays.items()}
    for i in range(0, 300, 3):
        mapped.remove(int(keys[i]))
        reference.remove(int(keys[i]))
        mapped.add(int(keys[i + 1]), hashes[i])  # a replaced hash
        reference.add(int(keys[i + 1]), hashes[i])
    many_keys = np.arange(10 * n, 10 * n + 500, dtype=np.int64)
    many = np.array([near(rng, hashes[i], 3) for i in range(500)], dtype=np.uint8)
    mapped.add_many(many_keys, many)
    reference.add_many(many_keys, many)
    assert mapped.frozen and len(mapped) == len(reference) == n - 100 + 500
    # Out of the tables: 100 removed, 100 replaced; in the delta: 100 replaced, 500 added.
    assert mapped.pending() == 200 + 600
    same()
    for name, array in snapshot.arrays.items():
        np.testing.assert_array_equal(array, before[name])

    mapped.thaw()  # the last resort: everything in private memory
    assert not mapped.frozen and mapped.pending() == 0
    assert not any(is_mapped(getattr(mapped, f"_{k}")) for k in PdqIndex.STATE)
    same()


def test_pdq_index_arrays_that_do_not_fit_together_are_refused():
    built = PdqIndex()
    built.build(np.arange(10), np.zeros((10, 32), np.uint8))
    arrays = built.state()
    with pytest.raises(ValueError, match="do not fit"):
        PdqIndex.from_state({**arrays, "order": arrays["order"][:, :5]})
    with pytest.raises(KeyError):
        PdqIndex.from_state({k: v for k, v in arrays.items() if k != "starts"})


# --- with the database -----------------------------------------------------------------------


@pytest.fixture
def partner():
    return HashList.objects.create(name="partner")


def run(hash_list, values: list[str], *, source="exchange") -> None:
    imp = signal_lists.import_start(
        hash_list=hash_list,
        file=io.BytesIO("".join(f"{v}\n" for v in values).encode()),
        file_name="list.txt",
        fmt="text",
        source=source,
    )
    signal_lists.run_import(imp)


def matched(found: signal_set.SignalSet, value: str) -> list[str]:
    """The entries ``value`` matches, looked up the way an upload is, through ``found`` (made
    this process's PDQ set; the autouse ``fresh_signal_set`` forgets it after the test)."""
    signal_set._signal_set = found
    return [m.value for m in signals.lookup("pdq", value)]


def snapshot_now():
    return signal_set.rebuild_snapshot(signal_set.snapshot_store(), blocking=True)[0]


@pytest.mark.django_db
def test_an_import_committed_after_the_snapshot_is_matched_by_a_process_started_from_it(partner):
    rng = np.random.default_rng(1)
    old, new = random_hex(rng, 2), random_hex(rng, 3)
    run(partner, old)
    snapshot = snapshot_now()
    run(partner, new, source="later")

    found = signal_set.SignalSet()
    assert matched(found, flipped(new[1], 9)) == [new[1]]
    assert matched(found, old[0]) == [old[0]]
    assert found.snapshot == snapshot.name and found._index.frozen
    assert snapshot.entries == 2 and len(found) == 5 and found._index.pending() == 3


@pytest.mark.django_db
def test_a_retraction_committed_after_the_snapshot_is_not_matched(partner):
    rng = np.random.default_rng(2)
    kept, dropped = random_hex(rng, 2)
    run(partner, [kept, dropped])
    snapshot = snapshot_now()
    run(partner, [kept])  # the same source without it: retracted
    assert not SignalEntry.objects.get(value=dropped).active

    found = signal_set.SignalSet()
    assert matched(found, dropped) == []
    assert matched(found, kept) == [kept]
    assert found.snapshot == snapshot.name and len(found) == 1


@pytest.mark.django_db
def test_a_list_switched_off_after_the_snapshot_is_not_matched(partner):
    rng = np.random.default_rng(3)
    [value] = random_hex(rng, 1)
    run(partner, [value])
    found = signal_set.SignalSet()
    assert matched(found, value) == [value]
    assert found.snapshot is not None  # the first process wrote it
    hash_lists.hash_list_update(
        hash_list=partner, max_distance=partner.max_distance, enabled=False, mode=partner.mode
    )
    assert matched(found, value) == []
    assert matched(signal_set.SignalSet(), value) == []  # nor by a process started now


@pytest.mark.django_db
@pytest.mark.parametrize("damage", [damage_flip_a_bit, damage_truncate, damage_remove_a_file])
def test_a_corrupt_pdq_snapshot_is_refused_and_the_process_loads_the_table(partner, caplog, damage):
    rng = np.random.default_rng(4)
    values = random_hex(rng, 3)
    run(partner, values)
    snapshot = snapshot_now()
    damage(snapshot.path)
    with caplog.at_level(logging.WARNING):
        found = signal_set.SignalSet()
        assert matched(found, values[2]) == [values[2]]
    assert f"PDQ snapshot {snapshot.path} ignored" in caplog.text
    # Loaded from the table and written again, for the next process.
    assert found.snapshot not in (None, snapshot.name) and len(found) == 3
    assert [s.name for s in signal_set.snapshot_store().newest()] == [found.snapshot]


@pytest.mark.django_db
def test_a_pdq_snapshot_from_another_database_or_a_restore_is_ignored(partner, caplog):
    rng = np.random.default_rng(5)
    [value] = random_hex(rng, 1)
    run(partner, [value])
    snapshot = snapshot_now()
    # What a restore looks like from here: the log no longer holds the snapshot's last change.
    SignalChange.objects.filter(id=snapshot.change_id).update(signal_import=None)
    with caplog.at_level(logging.WARNING):
        found = signal_set.SignalSet()
        assert matched(found, value) == [value]
    assert f"change {snapshot.change_id} is not in this database's log" in caplog.text
    assert found.snapshot != snapshot.name


@pytest.mark.django_db
def test_a_large_import_waits_in_the_delta_then_the_process_moves_to_a_newer_snapshot(
    partner, settings, monkeypatch
):
    monkeypatch.setattr(signal_set, "REBUILD_AT", 2)
    settings.MODERATION_SNAPSHOT_DELTA_LIMIT = 5
    rng = np.random.default_rng(6)
    first, second = random_hex(rng, 3), random_hex(rng, 4)
    run(partner, first)
    found = signal_set.SignalSet(background=False)
    assert matched(found, first[0]) == [first[0]]
    start = found.snapshot

    run(partner, second, source="bulk")  # more than REBUILD_AT: added at once, not rebuilt
    assert matched(found, second[3]) == [second[3]]
    assert found.snapshot == start and found._index.pending() == 4
    run(partner, first[:1])  # retracts two: six entries changed, past the limit
    assert matched(found, first[1]) == []
    assert found.snapshot not in (None, start) and found._index.pending() == 0
    assert matched(found, second[0]) == [second[0]] and len(found) == 5
    assert signal_set.snapshot_store().current_name() == found.snapshot


@pytest.mark.django_db
def test_when_no_newer_pdq_snapshot_can_be_written_a_process_merges_privately(
    partner, settings, caplog
):
    settings.MODERATION_SNAPSHOT_DELTA_LIMIT = 1
    rng = np.random.default_rng(7)
    first, later = random_hex(rng, 2)
    run(partner, [first])
    found = signal_set.SignalSet(background=False)
    assert matched(found, first) == [first] and found._index.frozen
    settings.MODERATION_SNAPSHOT_DIR = ""  # as if the folder had gone
    run(partner, [later], source="later")
    with caplog.at_level(logging.WARNING):
        assert matched(found, later) == [later]
    assert "PDQ: no newer snapshot can be written; merging in memory" in caplog.text
    assert not found._index.frozen and found.snapshot is None and len(found) == 2


@pytest.mark.django_db
def test_the_command_writes_the_pdq_snapshot_with_the_banned_sets_then_updates_it(
    partner, tmp_path
):
    rng = np.random.default_rng(8)
    run(partner, random_hex(rng, 4))
    out = call()
    assert "banned set: wrote" in out
    assert "PDQ entries: wrote" in out and "from the database (4 entries)" in out
    assert "PDQ entries: snap-" in call() and "is up to date" in call()
    run(partner, random_hex(rng, 2), source="later")
    out = call()
    assert "banned set: snap-" in out  # nothing new for it
    assert "and the changes after it (2 entries changed, 6 entries)" in out
    [snapshot] = signal_set.snapshot_store().newest()
    assert Path(snapshot.path).parent == tmp_path / "banned-set" / "pdq"


def call(*args) -> str:
    out = io.StringIO()
    call_command("banned_snapshot", *args, stdout=out)
    return out.getvalue()
