"""``manage.py reindex``: re-fingerprint every stored image, in resumable batches, then sweep.

A stored hash is made stale with a plain ``.update()`` (what an older pipeline, a restored
backup or a bug would leave behind); the stale value used is the bitwise inverse of the real
one, 64 bits away, so it can never match anything by accident. Reads are counted by wrapping
``refingerprint._read_fingerprints``, the one place reindex opens a stored file.
"""

from __future__ import annotations

import re
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from moderation import banned_set, flagging, full_sweep, refingerprint, sweeping
from moderation.hashing import Fingerprint, fingerprint
from moderation.models import (
    AuditEvent,
    BannedSetChange,
    FingerprintVariant,
    FlaggedFingerprint,
    ReindexRun,
)
from profiles.models import Profile
from profiles.photos import profile_set_photo
from profiles.services import profile_for
from tests import images

pytestmark = pytest.mark.django_db


# --- helpers ----------------------------------------------------------------------------


def writes_in(queries: CaptureQueriesContext) -> list[str]:
    """The statements that changed data (reads, savepoints and cursors are fine)."""
    return [
        q["sql"]
        for q in queries
        if q["sql"].split(None, 1)[0].upper() in {"INSERT", "UPDATE", "DELETE"}
    ]


class TTYStringIO(StringIO):
    def isatty(self) -> bool:
        return True


def run(*args, stdout=None, **options) -> tuple[str, str]:
    """Run ``reindex``; return what it wrote to stdout and stderr."""
    out, err = stdout or StringIO(), StringIO()
    call_command("reindex", *args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def true_fingerprint(fieldfile) -> Fingerprint:
    with fieldfile.open("rb") as fh:
        return fingerprint(fh)


def stale(fp: Fingerprint) -> int:
    """A signed hash 64 bits away from ``fp``: stands for an out-of-date stored value."""
    return Fingerprint(fp.dhash ^ ((1 << 64) - 1)).signed


def make_flag_stale(flagged: FlaggedFingerprint) -> None:
    """Make a flag's upright hash and every stored variant stale (what the index loads)."""
    FlaggedFingerprint.objects.filter(pk=flagged.pk).update(dhash=stale(flagged.fingerprint))
    for variant in FingerprintVariant.objects.filter(flagged=flagged):
        variant.dhash = stale(variant.fingerprint)
        variant.save(update_fields=["dhash"])


@pytest.fixture
def make_profile(django_user_model):
    """A profile whose photo (scene ``seed``) went through the normal upload service."""

    def make(username: str, seed: int) -> Profile:
        user = django_user_model.objects.create_user(username=username)
        upload = images.upload(images.photo(seed))
        return profile_set_photo(profile=profile_for(user=user), upload=upload)

    return make


@pytest.fixture
def five_profiles(make_profile) -> list[Profile]:
    return [make_profile(f"user{i}", seed=100 + i) for i in range(5)]


def make_stale(profile: Profile) -> int:
    """Overwrite the profile's stored hash with a stale one, with no probes (as stored
    before pipeline 5); return the true signed hash."""
    real = true_fingerprint(profile.photo)
    Profile.objects.filter(pk=profile.pk).update(photo_dhash=stale(real), photo_probes=b"")
    return real.signed


def flag_with_original(seed: int, reason: str = "known bad") -> FlaggedFingerprint:
    return flagging.flag_image(
        file=images.upload(images.photo(seed), "bad.png", "PNG"),
        reason=reason,
        source=FlaggedFingerprint.Source.ADMIN_UPLOAD,
    ).fingerprint


@pytest.fixture
def reads(monkeypatch):
    """The names of the files reindex reads, in order; set ``fail_at = n`` to make read n fail."""

    class Reads(list):
        fail_at: int | None = None

    log = Reads()
    real = refingerprint._read_fingerprints

    def counting(fieldfile):
        log.append(fieldfile.name)
        if log.fail_at == len(log):
            raise ConnectionError("storage went away")
        return real(fieldfile)

    monkeypatch.setattr(refingerprint, "_read_fingerprints", counting)
    return log


# --- what it reads and fixes ------------------------------------------------------------


def test_reindex_reads_every_stored_photo_and_every_kept_original(make_profile, reads):
    alice, bob = make_profile("alice", 1), make_profile("bob", 2)
    kept = flag_with_original(3)
    flagging.flag_image(
        file=images.upload(images.photo(4)),
        reason="hash only",
        source=FlaggedFingerprint.Source.COMMAND,
        keep_original=False,
    )

    run()

    assert sorted(reads) == sorted([alice.photo.name, bob.photo.name, kept.original.name])


def test_reindex_skips_profiles_without_a_photo(make_profile, django_user_model, reads):
    with_photo = make_profile("alice", 1)
    profile_for(user=django_user_model.objects.create_user(username="nophoto"))

    run()

    assert reads == [with_photo.photo.name]


def test_reindex_corrects_a_stale_photo_hash_and_reports_it_changed(make_profile):
    profile = make_profile("alice", 5)
    real = make_stale(profile)

    out, _ = run()

    profile.refresh_from_db()
    assert profile.photo_dhash == real
    assert "1 changed" in out


def test_reindex_leaves_correct_hashes_alone_and_reports_nothing_changed(make_profile):
    profile = make_profile("alice", 6)
    before = profile.photo_dhash

    out, _ = run()

    profile.refresh_from_db()
    assert profile.photo_dhash == before
    assert "0 changed" in out


def test_reindex_corrects_a_stale_flagged_original_hash(make_profile):
    flagged = flag_with_original(7)
    real = true_fingerprint(flagged.original)
    FlaggedFingerprint.objects.filter(pk=flagged.pk).update(dhash=stale(real))

    out, _ = run()

    flagged.refresh_from_db()
    assert flagged.dhash == real.signed
    assert flagged.active
    assert "1 changed" in out


def test_reindex_gives_a_flag_from_before_verification_its_signal_and_counts_it_changed():
    kept = flag_with_original(3)
    signal = bytes(FlaggedFingerprint.objects.get(pk=kept.pk).verification)
    assert signal  # a flag made now stores one
    FlaggedFingerprint.objects.filter(pk=kept.pk).update(verification=b"")

    out, _ = run()

    assert bytes(FlaggedFingerprint.objects.get(pk=kept.pk).verification) == signal
    assert "1 changed" in out


def test_reindexed_original_is_enforced_by_an_already_loaded_banned_set():
    flagged = flag_with_original(8)
    real = true_fingerprint(flagged.original)
    make_flag_stale(flagged)
    banned_set.reset()
    assert banned_set.find(real) == []  # this process has loaded the stale hashes

    run()

    assert [m.fingerprint_id for m in banned_set.find(real)] == [flagged.pk]


def test_reindex_that_gives_two_flags_one_hash_keeps_one_active_and_audits_the_other():
    older = flag_with_original(40)
    newer = flag_with_original(41)
    # As if the current pipeline hashed the newer original like the older one.
    Path(newer.original.path).write_bytes(Path(older.original.path).read_bytes())

    run()

    older.refresh_from_db()
    newer.refresh_from_db()
    assert older.active and not newer.active
    assert newer.dhash == older.dhash
    assert newer.unflagged_at is not None
    unflag = AuditEvent.objects.get(action=AuditEvent.Action.UNFLAG)
    assert unflag.fingerprint == newer
    assert f"#{older.pk}" in unflag.reason


# --- dry run ----------------------------------------------------------------------------


def test_dry_run_reports_what_would_change(make_profile):
    make_stale(make_profile("alice", 9))
    make_profile("bob", 10)

    out, _ = run(dry_run=True)

    assert "Dry run: Re-fingerprinted 2 of 2 image(s): 1 changed" in out
    assert "Nothing was written." in out


def test_dry_run_writes_nothing(make_profile, django_capture_on_commit_callbacks):
    profile = make_profile("alice", 11)
    make_stale(profile)
    flagged = flag_with_original(12)
    FlaggedFingerprint.objects.filter(pk=flagged.pk).update(
        dhash=stale(true_fingerprint(flagged.original))
    )
    # A banned image the stale photo hash hides: a real run would take the photo down.
    with django_capture_on_commit_callbacks(execute=True):
        flag_with_original(11)
    before = list(Profile.objects.values_list("pk", "photo", "photo_dhash", "photo_checked_at"))
    changes = BannedSetChange.objects.count()

    with CaptureQueriesContext(connection) as queries:
        run(dry_run=True)

    assert writes_in(queries) == []
    assert (
        list(Profile.objects.values_list("pk", "photo", "photo_dhash", "photo_checked_at"))
        == before
    )
    assert BannedSetChange.objects.count() == changes
    assert not ReindexRun.objects.exists()


# --- files that are not there or not images ---------------------------------------------


def test_missing_photo_file_is_reported_and_the_rest_is_reindexed(make_profile):
    gone = make_profile("alice", 13)
    kept = make_profile("bob", 14)
    real = make_stale(kept)
    gone.photo.storage.delete(gone.photo.name)

    out, err = run()

    assert f"missing file: profiles.profile #{gone.pk}: {gone.photo.name}" in err
    assert "1 missing" in out
    kept.refresh_from_db()
    assert kept.photo_dhash == real


def test_missing_flagged_original_is_reported(make_profile):
    flagged = flag_with_original(15)
    flagged.original.storage.delete(flagged.original.name)

    out, err = run()

    assert f"missing file: moderation.flaggedfingerprint #{flagged.pk}" in err
    assert "1 missing" in out


def test_unreadable_photo_file_is_reported_and_the_rest_is_reindexed(make_profile):
    broken = make_profile("alice", 16)
    kept = make_profile("bob", 17)
    real = make_stale(kept)
    Path(broken.photo.path).write_bytes(b"this was overwritten by something else")

    out, err = run()

    assert f"unreadable: profiles.profile #{broken.pk}: Upload a JPEG" in err
    assert "1 unreadable" in out
    kept.refresh_from_db()
    assert kept.photo_dhash == real


def test_summary_counts_read_changed_missing_and_unreadable(make_profile):
    make_stale(make_profile("alice", 18))
    make_profile("bob", 19)
    gone = make_profile("carol", 20)
    gone.photo.storage.delete(gone.photo.name)
    broken = make_profile("dave", 21)
    Path(broken.photo.path).write_bytes(b"garbage")
    flag_with_original(22)

    out, _ = run()

    assert (
        "Re-fingerprinted 3 of 5 image(s): 1 changed, 1 missing, 1 unreadable. "
        "Sweep checked 4 photo(s), took down 0."
    ) in out


# --- batches, interruption, resume ------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_interrupted_reindex_keeps_the_batches_it_committed(five_profiles, reads):
    real = [make_stale(p) for p in five_profiles]
    reads.fail_at = 3  # the first read of the second batch

    with pytest.raises(CommandError, match="run the command again to resume"):
        run(batch_size=2)

    hashes = list(Profile.objects.order_by("pk").values_list("photo_dhash", flat=True))
    assert hashes[:2] == real[:2]
    assert hashes[2:] == [stale(Fingerprint.from_signed(h)) for h in real[2:]]


def test_ctrl_c_stops_with_a_resume_hint_and_exit_status_130(five_profiles, monkeypatch):
    def interrupt(fieldfile):
        raise KeyboardInterrupt

    monkeypatch.setattr(refingerprint, "_read_fingerprints", interrupt)

    with pytest.raises(CommandError, match="interrupted.*run the command again") as e:
        run(batch_size=2)

    assert e.value.returncode == 130


@pytest.mark.django_db(transaction=True)
def test_rerun_after_interruption_resumes_from_the_cursor_and_loses_nothing(five_profiles, reads):
    real = [make_stale(p) for p in five_profiles]
    reads.fail_at = 3
    with pytest.raises(CommandError):
        run(batch_size=2)
    reads.clear()
    reads.fail_at = None

    out, _ = run(batch_size=2)

    assert reads == [p.photo.name for p in five_profiles[2:]]  # finished batches not redone
    assert list(Profile.objects.order_by("pk").values_list("photo_dhash", flat=True)) == real
    assert "Resuming the reindex started" in out
    assert "Re-fingerprinted 5 of 5 image(s): 5 changed" in out  # the whole run, not this part
    assert ReindexRun.objects.get().finished_at is not None


@pytest.mark.django_db(transaction=True)
def test_restart_starts_over_instead_of_resuming(five_profiles, reads):
    reads.fail_at = 3
    with pytest.raises(CommandError):
        run(batch_size=2)
    reads.clear()
    reads.fail_at = None

    out, _ = run(batch_size=2, restart=True)

    assert reads == [p.photo.name for p in five_profiles]
    assert "Resuming" not in out
    abandoned, finished = ReindexRun.objects.order_by("pk")
    assert abandoned.counts.get("abandoned") is True
    assert finished.finished_at is not None


def test_a_finished_reindex_is_not_resumed_the_next_run_reads_everything(five_profiles, reads):
    run(batch_size=2)
    reads.clear()

    run(batch_size=2)

    assert len(reads) == 5
    assert ReindexRun.objects.filter(finished_at__isnull=True).count() == 0


@pytest.mark.django_db(transaction=True)
def test_reindex_interrupted_during_the_sweep_sweeps_again_without_rereading(
    five_profiles, reads, monkeypatch
):
    real_sweep = sweeping.sweep_stored_range
    calls = []

    def failing_once(target, **kwargs):
        calls.append(kwargs)
        if len(calls) == 1:
            raise ConnectionError("database went away")
        return real_sweep(target, **kwargs)

    monkeypatch.setattr(full_sweep, "sweep_stored_range", failing_once)
    with pytest.raises(CommandError):
        run(batch_size=2)
    reads.clear()

    out, _ = run(batch_size=2)

    assert reads == []
    # The failed batch, then the range again from its cursor: 2 batches of 2, then the empty end.
    assert [c["after"] for c in calls][:2] == [calls[0]["after"]] * 2
    assert "Sweep checked 5 photo(s)" in out
    assert ReindexRun.objects.get().finished_at is not None


def test_batch_size_must_be_at_least_one():
    with pytest.raises(CommandError, match="--batch-size"):
        run(batch_size=0)


# --- the final sweep --------------------------------------------------------------------


def test_final_sweep_takes_down_a_photo_whose_stale_hash_hid_a_banned_match(
    make_profile, django_capture_on_commit_callbacks
):
    profile = make_profile("alice", 30)
    make_stale(profile)
    with django_capture_on_commit_callbacks(execute=True):
        flagged = flag_with_original(30, reason="reported")
    profile.refresh_from_db()
    assert profile.photo  # the flag's own sweep compared the stale hash and missed it

    out, _ = run()

    profile.refresh_from_db()
    assert not profile.photo and profile.photo_dhash is None
    takedown = AuditEvent.objects.get(action=AuditEvent.Action.TAKEDOWN)
    assert takedown.fingerprint == flagged
    assert "alice" in takedown.target
    assert "took down 1" in out


def test_no_sweep_leaves_matching_photos_up(make_profile, django_capture_on_commit_callbacks):
    profile = make_profile("alice", 31)
    make_stale(profile)
    with django_capture_on_commit_callbacks(execute=True):
        flag_with_original(31)

    out, _ = run(no_sweep=True)

    profile.refresh_from_db()
    assert profile.photo
    assert "Sweep skipped." in out


# --- output -----------------------------------------------------------------------------


def test_progress_on_a_terminal_is_a_bar_on_stderr_with_rows_ranges_rate_and_eta(
    five_profiles, settings
):
    settings.MODERATION_REINDEX_RANGE_SIZE = 3  # 5 photos: ranges of 3 and 2
    err = TTYStringIO()

    out = StringIO()
    call_command("reindex", batch_size=2, stdout=out, stderr=err)

    bars = err.getvalue()
    reindex_states = re.findall(r"reindex: [^\r\n]*", bars)
    assert any("3/5" in state and "1/2 ranges" in state for state in reindex_states)
    assert re.search(r"reindex: 100%\|[^|]*\| 5/5 \[[\d:]+<00:00, [^\]]+row/s, 2/2 ranges\]", bars)
    assert re.search(r"sweep: 100%\|[^|]*\| 5/5 ", bars)
    assert len(out.getvalue().splitlines()) == 1  # stdout: the summary only


def test_progress_when_asked_even_off_a_terminal(five_profiles):
    _, err = run(batch_size=2, progress=True)

    assert re.search(r"reindex: 100%\|[^|]*\| 5/5 ", err)


def test_no_progress_when_output_is_not_a_terminal(five_profiles):
    out, _ = run(batch_size=2)

    assert "ranges" not in out
    assert len(out.splitlines()) == 1  # the summary


def test_verbosity_2_prints_a_line_per_batch_when_not_on_a_terminal(five_profiles):
    out, _ = run(batch_size=2, verbosity=2)

    lines = [line.split(", ", 2)[:2] for line in out.splitlines() if line.startswith("reindex:")]
    # Batches of 2, 2 and 1 photos, then the range finished.
    assert lines == [
        ["reindex: 0/1 ranges", "2/5 rows"],
        ["reindex: 0/1 ranges", "4/5 rows"],
        ["reindex: 0/1 ranges", "5/5 rows"],
        ["reindex: 1/1 ranges", "5/5 rows"],
    ]


def test_verbosity_0_prints_nothing_on_success(five_profiles):
    out, err = run(verbosity=0, stdout=TTYStringIO())

    assert out == "" and err == ""
