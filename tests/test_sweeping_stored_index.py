"""A flag's sweep finds stored photos through the index of their hashes, not a pass.

The index sweep must act exactly as the full pass over every stored photo does (the same data,
both paths, compared), screen only the few photos near the flag, never act on a stale row (a
photo replaced or removed since), miss no row committed out of id order (two real
transactions on PostgreSQL), and fall back to the full pass while a kind of image has not been
backfilled."""

from __future__ import annotations

import io
import logging
import threading

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from PIL import ImageOps

from moderation import (
    flagging,
    registry,
    stored_backfill,
    stored_hashes,
    stored_index,
    sweeping,
)
from moderation.hashing import check_fingerprints
from moderation.models import (
    AllowedMatch,
    FlaggedFingerprint,
    ReviewItem,
    StoredHash,
    StoredHashTarget,
)
from profiles.models import Profile
from profiles.photos import profile_remove_photo, profile_set_photo
from tests import images
from tests.processes import COMMAND_TIMEOUT

pytestmark = pytest.mark.django_db

KEY = "profiles.profile.photo"


def flag_without_sweep(img) -> FlaggedFingerprint:
    """A flag whose own sweep does not run (no on-commit callbacks in a test transaction):
    tests run it. (In a ``transaction=True`` test it does run, at commit.)"""
    return flagging.flag_image(
        file=images.upload(img, "b.png", "PNG"),
        reason="bad",
        source=FlaggedFingerprint.Source.COMMAND,
        keep_original=False,
    ).fingerprint


def framed(img):
    return ImageOps.expand(img.convert("RGB"), border=(96, 72), fill="white")


class _Undo(Exception):
    pass


def sweep_and_undo(flags: list[FlaggedFingerprint], *, full_pass: bool):
    """The sweep's result and what it did (photos left, review items), then rolled back so the
    other path sweeps the same data. ``full_pass``: as if the index were incomplete."""
    seen = {}
    try:
        with transaction.atomic():
            if full_pass:
                StoredHashTarget.objects.filter(key=KEY).update(complete=False)
            result = sweeping.sweep_banned_matches(fingerprint_ids=[f.pk for f in flags])
            seen["result"] = result
            seen["photos"] = set(
                Profile.objects.exclude(photo="").values_list("user__username", flat=True)
            )
            seen["queued"] = set(ReviewItem.objects.values_list("object_id", flat=True))
            raise _Undo
    except _Undo:
        pass
    return seen


def test_the_index_sweep_acts_exactly_as_the_full_pass_on_a_mixed_set(
    make_profile, narrow_distances
):
    scene = images.photo(830, (800, 600))
    make_profile("copy", images.recompressed(scene, 80))
    make_profile("copy_half", images.resized(scene, 0.5))
    make_profile("captioned", images.captioned(scene))
    make_profile("framed", framed(scene))
    make_profile("mirrored", ImageOps.mirror(scene))
    make_profile("near", images.near_miss(scene))
    # The allowlist works by dHash, so the allowed copy is of another flagged picture (in the
    # same sweep): allowed for that flag, it would not leave copies of the scene up.
    other_scene = images.photo(838, (800, 600))
    allowed_img = images.recompressed(other_scene, 70)
    make_profile("allowed", allowed_img)
    replaced = make_profile("replaced", images.resized(scene, 0.8))
    profile_set_photo(profile=replaced, upload=images.upload(images.photo(837), "r.jpg"))
    removed = make_profile("removed", images.resized(scene, 0.9))
    profile_remove_photo(profile=removed)
    for seed in range(831, 837):
        make_profile(f"stranger{seed}", images.photo(seed))
    flags = [flag_without_sweep(scene), flag_without_sweep(other_scene)]
    allowed_fp = check_fingerprints(images.upload(allowed_img, "a.jpg")).frames[0]
    AllowedMatch.objects.create(fingerprint=flags[1], dhash=allowed_fp.signed)

    by_index = sweep_and_undo(flags, full_pass=False)
    by_pass = sweep_and_undo(flags, full_pass=True)

    assert sorted(by_index["result"].taken_down) == sorted(by_pass["result"].taken_down)
    assert sorted(by_index["result"].queued) == sorted(by_pass["result"].queued)
    assert by_index["photos"] == by_pass["photos"]
    assert by_index["queued"] == by_pass["queued"]
    # The comparison means something: the pass took copies down (whole, mirrored, through a
    # cut, through the picture inside a frame), queued the near miss, and left the strangers,
    # the allowed copy and the replaced photo alone.
    left = by_pass["photos"]
    assert {"copy", "copy_half", "mirrored", "captioned", "framed"}.isdisjoint(left)
    assert {"allowed", "replaced", *(f"stranger{s}" for s in range(831, 837))} <= left
    assert Profile.objects.get(user__username="near").pk in by_pass["queued"]
    # ...and the index screened the photos near the flags (the 5 copies, the near miss, the
    # allowed copy, the replaced photo's old row), not all 14 stored ones.
    assert by_pass["result"].checked == 14
    assert by_index["result"].checked == 8


def test_a_stale_row_of_a_replaced_photo_is_screened_from_the_real_row_and_left_alone(
    make_profile,
):
    scene = images.photo(840)
    profile = make_profile("bob", images.resized(scene, 0.5))
    profile_set_photo(profile=profile, upload=images.upload(images.photo(841), "new.jpg"))
    stale = StoredHash.objects.filter(object_pk=profile.pk).count()
    flagged = flag_without_sweep(scene)

    result = sweeping.sweep_banned_matches(fingerprint_ids=[flagged.pk])

    assert stale > 3  # the old photo's rows are still there (append-only)
    assert result.checked == 1  # found through the old photo's row...
    assert result.taken_down == []  # ...and let go: the photo it stands for is gone
    assert Profile.objects.get(pk=profile.pk).photo


def test_a_removed_photo_is_not_screened_at_all(make_profile):
    scene = images.photo(842)
    profile = make_profile("bob", images.resized(scene, 0.5))
    profile_remove_photo(profile=profile)
    flagged = flag_without_sweep(scene)

    result = sweeping.sweep_banned_matches(fingerprint_ids=[flagged.pk])

    assert (result.checked, result.taken_down) == (0, [])


def test_a_flag_screens_the_photos_near_it_not_every_stored_photo(make_profile):
    scene = images.photo(845)
    make_profile("copy", images.resized(scene, 0.5))
    for i in range(40):
        make_profile(f"other{i}", images.photo(900 + i))
    flagged = flag_without_sweep(scene)

    result = sweeping.sweep_banned_matches(fingerprint_ids=[flagged.pk])

    assert len(result.taken_down) == 1 and "copy" in result.taken_down[0]
    assert result.checked <= 3  # the copy, and at most a chance neighbour or two


def test_every_fingerprint_write_adds_the_image_its_cuts_and_framed_picture(make_profile):
    profile = make_profile("bob", framed(images.photo(846, (800, 600))))
    checked = registry.target_for(Profile).checked(profile)
    rows = set(
        StoredHash.objects.filter(object_pk=profile.pk).values_list("probe", "dhash", "phash")
    )
    expected = {(StoredHash.IMAGE, checked.frames[0].signed, checked.frames[0].phash_signed)}
    expected |= {(n, fp.signed, fp.phash_signed) for n, fp in checked.cuts.items()}
    assert checked.inner is not None
    expected.add((StoredHash.FRAMED, checked.inner.signed, checked.inner.phash_signed))
    assert rows == expected


def test_a_reindexed_photo_gets_rows_for_its_fresh_fingerprint(make_profile):
    profile = make_profile("bob", images.photo(847))
    # As stored by an older pipeline: another hash, and rows for that hash only.
    Profile.objects.filter(pk=profile.pk).update(photo_dhash=profile.photo_dhash ^ 0xFF)
    StoredHash.objects.filter(probe=StoredHash.IMAGE).update(dhash=profile.photo_dhash ^ 0xFF)

    call_command("reindex", stdout=io.StringIO())

    assert StoredHash.objects.filter(
        object_pk=profile.pk, probe=StoredHash.IMAGE, dhash=profile.photo_dhash
    ).exists()


def test_a_fresh_install_needs_no_backfill():
    assert stored_backfill.incomplete_targets() == []
    assert StoredHashTarget.objects.get(key=KEY).complete


def test_until_backfilled_a_sweep_screens_every_photo_and_the_operator_is_told(
    make_profile, caplog
):
    scene = images.photo(850)
    make_profile("copy", images.resized(scene, 0.5))
    for i in range(5):
        make_profile(f"other{i}", images.photo(950 + i))
    # A deployment from before the index: stored photos, no rows, marked incomplete at migrate.
    StoredHash.objects.all().delete()
    StoredHashTarget.objects.all().delete()
    stored_backfill.mark_fresh_targets_complete()
    assert stored_backfill.incomplete_targets() == [KEY]
    warnings = stored_backfill.check_stored_index_complete(databases=["default"])
    assert [w.id for w in warnings] == ["moderation.W012"]
    flagged = flag_without_sweep(scene)

    with caplog.at_level(logging.WARNING, logger="moderation.stored_index"):
        result = sweeping.sweep_banned_matches(fingerprint_ids=[flagged.pk])

    assert result.checked == 6 and len(result.taken_down) == 1
    assert "index_stored_photos" in caplog.text


def test_the_backfill_resumes_after_an_interruption_and_then_sweeps_use_the_index(
    make_profile, monkeypatch
):
    monkeypatch.setattr(stored_hashes, "COPY_ABOVE", 0)  # PostgreSQL: batches written by COPY
    scene = images.photo(851)
    copy = make_profile("copy", images.resized(scene, 0.5))
    for i in range(4):
        make_profile(f"other{i}", images.photo(960 + i))
    expected = set(StoredHash.objects.values_list("object_pk", "probe", "dhash", "phash"))
    StoredHash.objects.all().delete()
    StoredHashTarget.objects.update(complete=False, backfill_cursor=None)
    target = registry.target_for(Profile)

    class Killed(Exception):
        pass

    def killed_after_first_batch(done, last_pk):
        raise Killed

    with pytest.raises(Killed):
        stored_backfill.backfill(target, batch_size=2, progress=killed_after_first_batch)
    marker = StoredHashTarget.objects.get(key=KEY)
    assert not marker.complete and marker.backfill_cursor is not None
    assert StoredHash.objects.values("object_pk").distinct().count() == 2  # one batch kept

    assert stored_backfill.backfill(target, batch_size=2) == 3  # the other three
    rows = list(StoredHash.objects.values_list("object_pk", "probe", "dhash", "phash"))
    assert len(rows) == len(expected) and set(rows) == expected  # each once, as at upload
    assert StoredHashTarget.objects.get(key=KEY).complete

    result = sweeping.sweep_banned_matches(fingerprint_ids=[flag_without_sweep(scene).pk])
    assert result.checked == 1 and not Profile.objects.get(pk=copy.pk).photo


def test_prune_deletes_the_rows_of_replaced_and_removed_photos_only(make_profile):
    kept = make_profile("kept", images.photo(852))
    replaced = make_profile("replaced", images.photo(853))
    removed = make_profile("removed", images.photo(854))

    def ids_of(profile):
        return set(StoredHash.objects.filter(object_pk=profile.pk).values_list("id", flat=True))

    current, old = ids_of(kept), ids_of(replaced)
    profile_set_photo(profile=replaced, upload=images.upload(images.photo(855), "n.jpg"))
    newest = ids_of(replaced) - old
    profile_remove_photo(profile=removed)

    deleted = stored_backfill.prune(registry.target_for(Profile), batch_size=3)

    assert deleted > 0
    assert set(StoredHash.objects.values_list("id", flat=True)) == current | newest
    assert not StoredHash.objects.filter(object_pk=removed.pk).exists()


def test_a_sync_with_nothing_new_reads_no_rows(make_profile):
    make_profile("bob", images.photo(856))
    index = stored_index.current()
    assert index.sync() >= 4  # the cold load
    assert index.sync() == 0
    make_profile("carol", images.photo(857))
    assert index.sync() >= 3  # carol's photo, its cuts (and no more)


# --- rows committed out of id order (PostgreSQL) ---------------------------------------------


def _store_in_open_transaction(
    profile, img, wrote: threading.Event, release: threading.Event, errors: list
):
    """Store a photo in a transaction held open until ``release`` (another connection)."""
    try:
        with transaction.atomic():
            profile_set_photo(profile=profile, upload=images.upload(img, "slow.jpg"))
            wrote.set()
            assert release.wait(COMMAND_TIMEOUT)
    except BaseException as e:  # reported by the test
        errors.append(e)
        wrote.set()
    finally:
        connection.close()


def _late_commit_scene(make_profile, catch_up: bool, monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip(
            "NOT RUN: needs PostgreSQL (DATABASE_URL=postgres://...). On SQLite one writer at a "
            "time commits, so ids become visible in order."
        )
    if not catch_up:
        monkeypatch.setattr(stored_index.StoredIndex, "_catch_up", lambda self, snapshot: 0)
    scene = images.photo(860)
    slow = make_profile("slow", None)
    fast = make_profile("fast", None)
    index = stored_index.current()
    index.sync()  # warm: the cold load is done before the writers start
    wrote, release, errors = threading.Event(), threading.Event(), []
    writer = threading.Thread(
        target=_store_in_open_transaction,
        args=(slow, images.resized(scene, 0.5), wrote, release, errors),
    )
    writer.start()
    assert wrote.wait(COMMAND_TIMEOUT) and not errors, errors
    profile_set_photo(profile=fast, upload=images.upload(images.resized(scene, 0.7), "f.jpg"))
    index.sync()  # sees the fast photo's rows; the slow one's lower ids are not committed yet
    release.set()
    writer.join(COMMAND_TIMEOUT)
    assert not writer.is_alive() and not errors, errors
    slow_ids = StoredHash.objects.filter(object_pk=slow.pk).values_list("id", flat=True)
    fast_ids = StoredHash.objects.filter(object_pk=fast.pk).values_list("id", flat=True)
    assert max(slow_ids) < min(fast_ids)  # the premise: committed out of id order
    # Flagged after both commits, so their rechecks saw no flag: only the flag's own sweep
    # (run at its commit, as in production) can take them down.
    flag_without_sweep(scene)
    return slow, fast


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_photo_whose_rows_commit_after_higher_ids_were_read_is_still_swept(
    make_profile, monkeypatch
):
    slow, fast = _late_commit_scene(make_profile, True, monkeypatch)

    assert not Profile.objects.get(pk=slow.pk).photo
    assert not Profile.objects.get(pk=fast.pk).photo


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_without_reading_ended_transactions_again_the_late_photo_would_be_missed(
    make_profile, monkeypatch
):
    """Shows the test above can fail: without the catch-up, the slow photo stays up."""
    slow, fast = _late_commit_scene(make_profile, False, monkeypatch)

    assert Profile.objects.get(pk=slow.pk).photo  # missed
    assert not Profile.objects.get(pk=fast.pk).photo


@pytest.mark.postgres
def test_the_cold_load_of_packed_rows_reads_what_a_plain_query_reads(make_profile):
    if connection.vendor != "postgresql":
        pytest.skip("NOT RUN: needs PostgreSQL (DATABASE_URL=postgres://...): its packing.")
    make_profile("bob", framed(images.photo(870, (800, 600))))
    make_profile("carol", images.photo(871))
    Profile.objects.filter(user__username="carol").update(photo_phash=None)
    StoredHash.objects.filter(
        probe=StoredHash.IMAGE, object_pk=Profile.objects.get(user__username="carol").pk
    ).update(phash=None)  # a photo from before pHash existed
    newest = StoredHash.objects.order_by("-id").values_list("id", flat=True)[0]

    def rows(batches):
        return sorted(
            tuple(map(int, row))
            for columns in batches
            for row in zip(*(column.tolist() for column in columns))
        )

    # Two ids per batch: every batch boundary crossed.
    by_copy = rows(stored_index._packed_rows(newest, step=2))
    assert by_copy == rows(stored_index._fetch_rows(newest))
    assert len(by_copy) == StoredHash.objects.count() >= 7
    assert any(not has for *_, has in by_copy)


def test_index_stored_photos_backfills_then_prunes(make_profile):
    profile = make_profile("bob", images.photo(872))
    StoredHash.objects.all().delete()
    StoredHashTarget.objects.update(complete=False, backfill_cursor=None)
    out = io.StringIO()

    call_command("index_stored_photos", "--batch-size", "10", stdout=out)

    assert f"{KEY}: complete (1 images indexed by this run)" in out.getvalue()
    assert StoredHash.objects.filter(object_pk=profile.pk).count() >= 3
    profile_remove_photo(profile=profile)
    out = io.StringIO()
    call_command("index_stored_photos", "--prune", stdout=out)
    assert f"{KEY}: " in out.getvalue() and not StoredHash.objects.exists()


def test_index_stored_photos_refuses_a_batch_size_below_one():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="batch-size"):
        call_command("index_stored_photos", "--batch-size", "0")
