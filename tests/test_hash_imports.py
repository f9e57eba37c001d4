"""Importing and exporting hash files: plain text and python-threatexchange's formats, bad
lines reported with their numbers and skipped, retraction by a later file of the same source,
resumable steps, nothing half-imported, and the banned set exported as PDQ."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from moderation import hash_formats, signal_lists, signals
from moderation.models import AuditEvent, HashList, SignalEntry, SignalImport, SignalImportRow
from tests import images
from tests.helpers import flag_file

pytestmark = pytest.mark.django_db

P1, P2, P3 = ("1" * 64, "2" * 64, "3" * 64)
M1 = "a" * 32


@pytest.fixture
def partner():
    return HashList.objects.create(name="partner")


def run(hash_list, text: str, *, fmt="text", source="exchange", **options) -> SignalImport:
    imp = signal_lists.import_start(
        hash_list=hash_list,
        file=io.BytesIO(text.encode()),
        file_name=f"list.{fmt}",
        fmt=fmt,
        source=source,
        **options,
    )
    return signal_lists.run_import(imp)


def active(hash_list) -> set[tuple[str, str]]:
    return set(
        SignalEntry.objects.active().filter(hash_list=hash_list).values_list("signal_type", "value")
    )


def test_a_text_file_imports_pdq_and_md5_lines_with_their_tags(partner):
    imp = run(partner, f"# shared list\n{P1} csam,verified\n{M1}\n\n{P2}\n")
    assert (imp.state, imp.added, imp.malformed) == (SignalImport.State.DONE, 3, 0)
    assert active(partner) == {("pdq", P1), ("md5", M1), ("pdq", P2)}
    assert SignalEntry.objects.get(value=P1).tags == "csam verified"
    assert SignalEntry.objects.get(value=P1).imported_by == imp


def test_malformed_lines_are_reported_with_their_numbers_and_skipped(partner):
    imp = run(partner, f"{P1}\n{'1' * 63}\nnot-hex-{'z' * 56}\n{P2}\n")
    assert (imp.added, imp.malformed) == (2, 2)
    assert imp.errors.splitlines() == [
        "line 2: a pdq hash is 64 hex digits, got 63",
        "line 3: a pdq hash is hex digits (0-9, a-f)",
    ]
    assert active(partner) == {("pdq", P1), ("pdq", P2)}


def test_a_later_file_of_the_same_source_retracts_what_it_dropped(partner):
    first = run(partner, f"{P1}\n{P2}\n")
    other = run(partner, f"{P3}\n", source="another partner")
    second = run(partner, f"{P2}\n{M1}\n")
    assert (second.added, second.unchanged, second.retracted) == (1, 1, 1)
    dropped = SignalEntry.objects.get(value=P1)
    assert (dropped.active, dropped.retracted_by, dropped.imported_by) == (False, second, first)
    assert dropped.retracted_at is not None
    assert ("pdq", P3) in active(partner), "another source's entries are not touched"
    assert other.state == SignalImport.State.DONE
    assert AuditEvent.objects.filter(action=AuditEvent.Action.RETRACT).count() == 1


def test_a_retracted_entry_no_longer_matches_and_is_kept(partner):
    run(partner, f"{P1}\n")
    assert signals.lookup("pdq", P1)
    run(partner, f"{P2}\n")
    assert signals.lookup("pdq", P1) == []
    assert SignalEntry.objects.filter(value=P1).count() == 1


def test_importing_the_same_file_twice_changes_nothing(partner):
    run(partner, f"{P1}\n{M1}\n")
    again = run(partner, f"{P1}\n{M1}\n")
    assert (again.added, again.unchanged, again.retracted) == (0, 2, 0)
    assert SignalEntry.objects.count() == 2


def test_a_threatexchange_signal_file_is_read_and_written(partner, tmp_path):
    text = f"pdq {P1}\nvideo_md5 {M1}\nphotodna {P2}\n"
    imp = run(partner, text, fmt="te")
    assert (imp.added, imp.malformed) == (2, 1)
    assert "line 3: unknown signal type 'photodna'" in imp.errors
    out = io.StringIO()
    assert signal_lists.export_entries(out, "te", hash_lists=[partner]) == 2
    assert sorted(out.getvalue().splitlines()) == [f"pdq {P1}", f"video_md5 {M1}"]


def test_threatexchanges_dataset_csv_imports_positive_rows_only(partner):
    text = (
        "signal_type,signal_str,collab,category,tags\n"
        f"pdq,{P1},Sample Data,POSITIVE_CLASS,nsfw violence\n"
        f"pdq,{P2},Sample Data,NEGATIVE_CLASS,\n"
        f"video_md5,{M1},Sample Data,POSITIVE_CLASS,\n"
    )
    imp = run(partner, text, fmt="te-csv")
    assert (imp.added, imp.malformed) == (2, 1)
    assert imp.errors.startswith("line 3: category NEGATIVE_CLASS is not a ban")
    assert SignalEntry.objects.get(value=P1).tags == "nsfw violence collab=Sample_Data"


def test_an_export_imports_into_an_empty_list_as_the_same_entries(partner):
    run(partner, f"{P1} a\n{M1} b\n{P2}\n")
    for fmt in hash_formats.FORMATS:
        out = io.StringIO()
        signal_lists.export_entries(out, fmt, hash_lists=[partner])
        copy = HashList.objects.create(name=f"copy {fmt}")
        run(copy, out.getvalue(), fmt=fmt)
        assert active(copy) == active(partner), fmt


def test_an_interrupted_import_resumes_where_its_last_step_committed(partner):
    lines = [f"{i:064x}" for i in range(1, 11)]
    imp = signal_lists.import_start(
        hash_list=partner,
        file=io.BytesIO(("\n".join(lines) + "\n").encode()),
        file_name="big.txt",
        fmt="text",
    )
    signal_lists.import_read_step(imp, lines=4)
    # the worker dies here; another one takes the import up from its row
    resumed = SignalImport.objects.get(pk=imp.pk)
    assert (resumed.lines_done, resumed.state) == (4, SignalImport.State.READING)
    assert SignalImportRow.objects.filter(signal_import=imp).count() == 4
    assert active(partner) == set(), "nothing is in the list before the import is applied"
    signal_lists.run_import(resumed)
    assert (resumed.state, resumed.added) == (SignalImport.State.DONE, 10)
    assert active(partner) == {("pdq", v) for v in lines}
    assert not SignalImportRow.objects.exists()


def test_an_applied_import_is_matched_by_the_next_lookup(partner, monkeypatch):
    """Both ways a process takes an import in: entry by entry, and a rebuild for a big one."""
    from moderation import signal_set

    assert signals.lookup("pdq", P1) == []  # the index is loaded now
    run(partner, f"{P1}\n")
    assert [m.value for m in signals.lookup("pdq", P1)] == [P1]
    monkeypatch.setattr(signal_set, "REBUILD_AT", 1)
    run(partner, f"{P2}\n{P3}\n", source="bulk")
    assert [m.value for m in signals.lookup("pdq", P3)] == [P3]
    assert [m.value for m in signals.lookup("pdq", P1)] == [P1]


def test_the_banned_set_exports_as_pdq_and_never_as_images():
    flagged = flag_file(images.photo(401)).fingerprint
    upright = flagged.variants.get(variant=0).pdq
    out = io.StringIO()
    assert signal_lists.export_banned_set_pdq(out, "text") == 1
    assert out.getvalue() == f"{upright} default\n"
    every = io.StringIO()
    assert signal_lists.export_banned_set_pdq(every, "te", every_orientation=True) == 8
    assert every.getvalue().splitlines()[0] == f"pdq {upright}"


def test_the_commands_import_and_export(partner, tmp_path, capsys):
    path = Path(tmp_path) / "list.txt"
    path.write_text(f"{P1}\nbad line\n{M1}\n")
    out, err = io.StringIO(), io.StringIO()
    call_command("import_hashes", str(path), list="partner", source="x", stdout=out, stderr=err)
    assert "2 added" in out.getvalue()
    assert "line 2: " in err.getvalue() and "skipped" in err.getvalue()
    exported = io.StringIO()
    call_command("export_hashes", list_names=["partner"], format="te", stdout=exported)
    assert sorted(exported.getvalue().splitlines()) == [f"pdq {P1}", f"video_md5 {M1}"]
    with pytest.raises(CommandError):
        call_command("import_hashes", str(path))


def test_the_command_hands_an_import_to_the_task_worker(
    partner, tmp_path, django_capture_on_commit_callbacks
):
    path = Path(tmp_path) / "list.txt"
    path.write_text(f"{P1}\n")
    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("import_hashes", str(path), list="partner", background=True, stdout=out)
    imp = SignalImport.objects.get()
    assert f"Import #{imp.pk} queued" in out.getvalue()
    assert imp.state == SignalImport.State.DONE  # the local backend runs tasks at once
