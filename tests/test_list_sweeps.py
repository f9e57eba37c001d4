"""A hash list that gains entries reaches the photos already stored: stored photos keep their
PDQ and file digests, and an import, an entry added, or a list switched on or to enforce
sweeps them (enforce takes down with a notice, shadow records, low quality queues), in ranges,
with the list's flood guard; retracted entries and dismissed matches do not act."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from moderation import appeals, hash_lists, list_sweep, signal_lists, signals, stored_hashes
from moderation.models import (
    AuditEvent,
    HashList,
    Notice,
    ReviewItem,
    ShadowHit,
    SignalImport,
    StoredSignal,
    Sweep,
    WorkRange,
)
from moderation.sweeping import recheck_image_task
from profiles.models import Profile
from tests import images
from tests.test_worker import (  # noqa: F401 - fixtures
    database_tasks,
    tasks_of,
    wait_until_tasks_done,
    worker,
)

pytestmark = pytest.mark.django_db


def pdq_of(img) -> str:
    """The PDQ a partner computes from its own copy of the picture (the original pixels)."""
    return signals.file_hashes(io.BytesIO(images.upload(img, "x.png", "PNG").read())).pdq


def import_lines(hash_list: HashList, lines: list[str], *, source="exchange") -> SignalImport:
    imp = signal_lists.import_start(
        hash_list=hash_list,
        file=io.BytesIO("\n".join(lines).encode()),
        file_name="list.txt",
        fmt="text",
        source=source,
    )
    return signal_lists.run_import(imp)


def signal_of(profile: Profile) -> StoredSignal:
    return StoredSignal.objects.get(
        target_id=stored_hashes.marker_id("profiles.profile.photo"), object_pk=profile.pk
    )


def enforce(hash_list: HashList) -> None:
    """A moderator switches the list (back) to enforce, as the admin's list page does."""
    hash_lists.hash_list_update(
        hash_list=hash_list, max_distance=None, enabled=True, mode=HashList.Mode.ENFORCE
    )


@pytest.fixture
def stored(make_profile):
    """Alice's and Bob's stored photos (two different scenes)."""
    alice_img, bob_img = images.photo(401), images.photo(402)
    return make_profile("alice", alice_img), alice_img, make_profile("bob", bob_img), bob_img


@pytest.fixture
def swept(django_capture_on_commit_callbacks):
    """Run a callable and the task work it owes on commit (plan, then every range)."""

    def run(call, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return call(*args, **kwargs)

    return run


# --- what a stored photo keeps --------------------------------------------------------------


def test_an_upload_keeps_its_pdq_and_the_digests_of_the_bytes_it_screened(make_profile):
    img = images.photo(403)
    profile = make_profile("carol", img)
    signal = signal_of(profile)
    assert len(signal.pdq) == 64 and signal.pdq_quality >= 50
    assert signals.pdq.distance(signal.pdq, pdq_of(img)) <= 31
    uploaded = images.upload(img, "carol.jpg").read()
    md5, sha256 = signals.bytes_hashes([uploaded])
    assert (signal.md5, signal.sha256, signal.dhash) == (md5, sha256, profile.photo_dhash)


def test_removing_a_photo_removes_its_signals(make_profile):
    from profiles.photos import profile_remove_photo

    profile = make_profile("carol", images.photo(404))
    profile_remove_photo(profile=profile)
    assert not StoredSignal.objects.filter(object_pk=profile.pk).exists()


def test_reindex_fills_the_signals_of_photos_stored_without_them(make_profile):
    profile = make_profile("carol", images.photo(405))
    upload_md5 = signal_of(profile).md5
    StoredSignal.objects.all().delete()
    Profile.objects.filter(pk=profile.pk).update(photo_pipeline_version=8)  # current already

    call_command("reindex", verbosity=0)

    signal = signal_of(profile)
    assert len(signal.pdq) == 64
    with profile.photo.open("rb") as fh:
        assert signal.md5 == stored_hashes.file_digests(fh).md5  # the stored file's
    assert signal.md5 != upload_md5


def test_reindex_keeps_the_digests_of_the_upload(make_profile):
    profile = make_profile("carol", images.photo(406))
    before = signal_of(profile)
    call_command("reindex", verbosity=0)
    after = signal_of(profile)
    assert (after.md5, after.sha256, after.pdq) == (before.md5, before.sha256, before.pdq)


# --- sweeps ---------------------------------------------------------------------------------


def test_a_shadow_list_import_only_records_what_it_would_take_down(stored, swept):
    alice, alice_img, bob, _ = stored
    partner = HashList.objects.create(name="partner", mode=HashList.Mode.SHADOW)

    swept(import_lines, partner, [pdq_of(alice_img)])

    alice.refresh_from_db()
    assert alice.photo  # still up
    hit = ShadowHit.objects.get()
    assert (hit.object_id, hit.hash_list, hit.signal_entry.value) == (
        alice.pk,
        partner,
        pdq_of(alice_img),
    )
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.TAKEDOWN).exists()
    sweep = Sweep.objects.get(hash_list=partner)
    assert (sweep.state, sweep.checked, sweep.taken_down) == ("done", 2, 0)


def test_an_enforced_import_takes_down_the_match_with_a_notice_and_the_innocent_photo_stays(
    stored, swept, quarantine_files
):
    alice, alice_img, bob, _ = stored
    partner = HashList.objects.create(name="partner", public_description="Spam images")
    bob_photo = bob.photo.name

    swept(import_lines, partner, [pdq_of(alice_img), "f" * 64])

    alice.refresh_from_db()
    bob.refresh_from_db()
    assert not alice.photo and alice.photo_dhash is None
    assert bob.photo.name == bob_photo
    takedown = AuditEvent.objects.get(action=AuditEvent.Action.TAKEDOWN)
    assert takedown.fingerprint is None and takedown.signal_entry.hash_list == partner
    assert takedown.evidence.name in quarantine_files()
    notice = Notice.objects.get()
    assert (notice.user, notice.ground, notice.signal_entry) == (
        alice.user,
        "Spam images",
        takedown.signal_entry,
    )
    sweep = Sweep.objects.get(hash_list=partner)
    assert (sweep.state, sweep.checked, sweep.taken_down) == ("done", 2, 1)


def test_sweeping_the_same_entries_again_changes_nothing(stored, swept):
    alice, alice_img, bob, bob_img = stored
    partner = HashList.objects.create(name="partner")
    imp = swept(import_lines, partner, [pdq_of(alice_img)])
    events = AuditEvent.objects.count()

    again = swept(
        list_sweep.sweep_list_after_commit, hash_list=partner, signal_import=imp
    )

    again.refresh_from_db()
    assert (again.state, again.taken_down, again.queued) == ("done", 0, 0)
    assert AuditEvent.objects.count() == events
    assert Notice.objects.count() == 1


def test_an_md5_entry_sweeps_the_photo_whose_upload_had_those_bytes(stored, swept):
    alice, alice_img, bob, _ = stored
    md5 = signal_of(bob).md5
    partner = HashList.objects.create(name="partner")

    swept(import_lines, partner, [md5])

    bob.refresh_from_db()
    alice.refresh_from_db()
    assert not bob.photo and alice.photo


def test_retracted_entries_do_not_sweep(stored, swept):
    alice, alice_img, _, _ = stored
    partner = HashList.objects.create(name="partner")
    # Imported, but retracted before the worker got to the sweep.
    imp = import_lines(partner, [pdq_of(alice_img)])
    sweep = Sweep.objects.get(hash_list=partner, signal_import=imp)
    import_lines(partner, ["e" * 64])  # the same source's next file drops it

    swept(list_sweep.plan_list_sweep_task.call, sweep.pk)

    alice.refresh_from_db()
    assert alice.photo
    sweep.refresh_from_db()
    assert (sweep.state, sweep.taken_down) == ("done", 0)


def test_an_entry_added_in_the_admin_sweeps_and_a_switched_off_list_does_not(stored, swept):
    alice, alice_img, bob, bob_img = stored
    off = HashList.objects.create(name="off", enabled=False)
    swept(signal_lists.entry_add, hash_list=off, signal_type="pdq", value=pdq_of(bob_img))
    bob.refresh_from_db()
    assert bob.photo and not Sweep.objects.exists()

    on = HashList.objects.create(name="on")
    swept(signal_lists.entry_add, hash_list=on, signal_type="pdq", value=pdq_of(alice_img))
    alice.refresh_from_db()
    assert not alice.photo


def test_switching_a_shadow_list_to_enforce_sweeps_its_entries(stored, swept):
    alice, alice_img, _, _ = stored
    partner = HashList.objects.create(name="partner", mode=HashList.Mode.SHADOW)
    swept(import_lines, partner, [pdq_of(alice_img)])
    alice.refresh_from_db()
    assert alice.photo

    swept(enforce, partner)

    alice.refresh_from_db()
    assert not alice.photo


def test_a_low_quality_stored_pdq_goes_to_the_review_queue(make_profile, swept):
    flat = images.photo(407).resize((8, 6)).resize((640, 480))  # smooth: low PDQ quality
    profile = make_profile("dora", flat)
    signal = signal_of(profile)
    if signal.pdq_quality >= 50:
        StoredSignal.objects.filter(pk=signal.pk).update(pdq_quality=20)
    partner = HashList.objects.create(name="partner")

    swept(import_lines, partner, [signal.pdq])

    profile.refresh_from_db()
    assert profile.photo
    item = ReviewItem.objects.get()
    assert (item.object_id, item.found_by, item.signal_entry.value) == (
        profile.pk,
        ReviewItem.FoundBy.LIST_SWEEP,
        signal.pdq,
    )
    assert item.get_found_by_display() == "a sweep of a hash list's entries"


def test_a_list_that_would_take_down_too_many_people_is_held_in_shadow(
    make_profile, swept, settings
):
    settings.MODERATION_FLOOD_MAX_USERS = 1
    img = images.photo(408)
    copies = [make_profile(name, img) for name in ("p1", "p2", "p3")]
    partner = HashList.objects.create(name="partner")

    swept(import_lines, partner, [pdq_of(img)])

    partner.refresh_from_db()
    assert partner.mode == HashList.Mode.SHADOW
    assert all(Profile.objects.get(pk=p.pk).photo for p in copies)  # the batch was weighed first
    assert ShadowHit.objects.filter(hash_list=partner).count() == 3
    hold = AuditEvent.objects.get(action=AuditEvent.Action.LIST_FLOOD_HOLD)
    assert hold.target == "hash list partner"
    assert hold.get_action_display() == "Hash list held in shadow by the flood guard"

    # A moderator who switches it back to enforce resumes it: swept, unguarded.
    swept(enforce, partner)
    assert not any(Profile.objects.get(pk=p.pk).photo for p in copies)
    assert AuditEvent.objects.filter(action=AuditEvent.Action.LIST_FLOOD_RESUME).count() == 1


def test_a_resumed_list_counts_only_what_it_took_down_since_the_resume(
    make_profile, swept, settings
):
    """The takedowns a moderator accepted by resuming a list do not hold its next import:
    within the same window, a later entry that reaches one more person is enforced."""
    settings.MODERATION_FLOOD_MAX_USERS = 1
    img, other = images.photo(408), images.photo(409)
    copies = [make_profile(name, img) for name in ("p1", "p2", "p3")]
    partner = HashList.objects.create(name="partner")
    swept(import_lines, partner, [pdq_of(img)])  # held: three people
    swept(enforce, partner)  # resumed: the three copies go, unguarded
    assert not any(Profile.objects.get(pk=p.pk).photo for p in copies)
    late = make_profile("p4", other)

    swept(import_lines, partner, [pdq_of(img), pdq_of(other)])

    partner.refresh_from_db()
    assert partner.mode == HashList.Mode.ENFORCE
    assert not Profile.objects.get(pk=late.pk).photo
    assert AuditEvent.objects.filter(action=AuditEvent.Action.LIST_FLOOD_HOLD).count() == 1


def test_an_overturned_takedown_is_restored_and_not_swept_again(stored, swept, moderator):
    alice, alice_img, _, _ = stored
    partner = HashList.objects.create(name="partner")
    imp = swept(import_lines, partner, [pdq_of(alice_img)])
    notice = Notice.objects.get()
    appeal = appeals.file_appeal(notice=notice, user=alice.user, text="that is my cat")

    swept(appeals.decide_appeal, appeal=appeal, actor=moderator, overturn=True, reason="ok")

    alice.refresh_from_db()
    assert alice.photo
    swept(list_sweep.sweep_list_after_commit, hash_list=partner, signal_import=imp)
    alice.refresh_from_db()
    assert alice.photo
    assert notice.signal_entry.__class__.objects.get(pk=notice.signal_entry_id).times_dismissed == 1


def test_the_appeal_page_of_a_list_takedown_shows_the_kept_photo_and_names_the_entry(
    stored, swept, moderator
):
    alice, alice_img, _, _ = stored
    partner = HashList.objects.create(name="partner")
    swept(import_lines, partner, [pdq_of(alice_img)])
    notice = Notice.objects.get()
    appeal = appeals.file_appeal(notice=notice, user=alice.user, text="It is my garden.")
    client = Client()
    client.force_login(moderator)

    page = client.get(reverse("admin:moderation_appeal_change", args=[appeal.pk]))

    html = page.content.decode()
    assert page.status_code == 200
    assert reverse("moderation:quarantined-file", args=[notice.kept_file]) in html
    assert pdq_of(alice_img) in html and "It is my garden." in html
    listed = client.get(reverse("admin:moderation_appeal_changelist"))
    assert listed.status_code == 200 and "partner" in listed.content.decode()


def test_a_range_whose_worker_died_mid_batch_is_redone_without_a_second_takedown(
    make_profile, swept
):
    img = images.photo(409)
    copies = [make_profile(f"c{i}", img) for i in range(3)]
    partner = HashList.objects.create(name="partner")
    # The import commits and owes its sweep; nothing has run it yet.
    import_lines(partner, [pdq_of(img)])
    sweep = Sweep.objects.get(hash_list=partner)
    [work] = list_sweep.plan(sweep)
    # A worker took the first batch (one photo) and committed it, then died during the next
    # batch after its takedown committed but before its cursor did.
    first = next(list_sweep.work_list_range(work, batch_size=1))
    assert len(first.result.taken_down) == 1
    work.refresh_from_db()
    target = list_sweep.registry.target_by_key(work.kind)
    list_sweep.sweep_list_batch(sweep, target, after=work.cursor, upto=work.hi, limit=1)
    assert AuditEvent.objects.filter(action=AuditEvent.Action.TAKEDOWN).count() == 2

    # The task runs again (the lease gave it back): it resumes at the committed cursor.
    swept(list_sweep.list_sweep_range_task.call, work.pk, batch_size=1)

    assert not any(Profile.objects.get(pk=p.pk).photo for p in copies)
    assert AuditEvent.objects.filter(action=AuditEvent.Action.TAKEDOWN).count() == 3
    assert Notice.objects.count() == 3
    work = WorkRange.objects.get(pk=work.pk)
    assert work.done and work.attempts == 1
    sweep.refresh_from_db()
    assert sweep.state == "done"


@pytest.mark.worker
def test_the_worker_takes_down_a_stored_photo_whose_pdq_a_newly_imported_list_holds(
    worker,  # noqa: F811 - the fixture
    make_profile,
):
    img = images.photo(410)
    alice = make_profile("alice", img)
    bob = make_profile("bob", images.photo(411))
    # Their uploads' rechecks have run: what follows is the sweep's work, not theirs (a
    # recheck running after the import would take Alice's photo down itself).
    wait_until_tasks_done(worker, recheck_image_task, count=2)
    partner = HashList.objects.create(name="partner")

    import_lines(partner, [pdq_of(img)])

    wait_until_tasks_done(worker, list_sweep.list_sweep_range_task)
    alice.refresh_from_db()
    bob.refresh_from_db()
    assert not alice.photo and bob.photo
    sweep = Sweep.objects.get(hash_list=partner)
    assert (sweep.state, sweep.checked, sweep.taken_down) == ("done", 2, 1)
    assert AuditEvent.objects.get(action=AuditEvent.Action.TAKEDOWN).signal_entry is not None


def test_the_import_command_says_which_list_sweep_it_queued(stored, tmp_path, capsys):
    _, alice_img, _, _ = stored
    path = tmp_path / "list.txt"
    path.write_text(pdq_of(alice_img) + "\n")

    call_command("import_hashes", str(path), "--list", "partner", verbosity=0)

    sweep = Sweep.objects.get(hash_list__name="partner")
    assert f"List sweep #{sweep.pk} of the stored photos" in capsys.readouterr().out
    assert sweep.state == "queued"  # the worker's, after the commit
