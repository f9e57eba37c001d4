"""The recheck after an upload looks the stored photo's kept signals up in the hash lists: an
upload screened just before an import committed, and stored after the import's sweep had
passed its range, is missed by both unless the recheck catches it. It decides as a list sweep
does: enforce takes down with a notice, shadow records, a low PDQ quality queues for review,
a dismissed match is not acted on again, and the list's flood guard weighs the takedown."""

from __future__ import annotations

import pytest

from moderation import desk, signals, sweeping
from moderation.models import (
    AuditEvent,
    HashList,
    Notice,
    ReviewItem,
    ShadowHit,
    StoredSignal,
    Sweep,
)
from profiles.photos import prepare_photo, profile_set_photo
from tests import images
from tests.test_list_sweeps import import_lines, pdq_of, signal_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def race(make_profile, django_capture_on_commit_callbacks):
    """The race, step by step: Carol's upload is screened (no list holds it yet), then the
    import commits and its sweep runs over the photos stored by then, then her photo is
    stored. Returns Carol's profile and the recheck her storing owes, not yet run."""

    def run(img, hash_list: HashList, lines: list[str] | None = None):
        carol = make_profile("carol")
        screened = prepare_photo(images.upload(img, "carol.jpg"))
        assert screened.screening.decision == "pass"
        with django_capture_on_commit_callbacks(execute=True):
            import_lines(hash_list, lines if lines is not None else [pdq_of(img)])
        assert Sweep.objects.get(hash_list=hash_list).state == "done"  # before Carol's photo
        with django_capture_on_commit_callbacks() as owed:
            profile_set_photo(profile=carol, upload=screened)
        carol.refresh_from_db()
        assert carol.photo  # stored: neither the upload's screening nor the sweep saw the other

        def recheck():
            with django_capture_on_commit_callbacks(execute=True):
                for callback in owed:
                    callback()
            carol.refresh_from_db()

        return carol, recheck

    return run


def test_a_photo_stored_after_an_enforced_import_was_swept_is_taken_down_by_its_recheck(race):
    img = images.photo(501)
    partner = HashList.objects.create(name="partner", public_description="Spam images")
    carol, recheck = race(img, partner)

    recheck()

    assert not carol.photo and carol.photo_dhash is None
    takedown = AuditEvent.objects.get(action=AuditEvent.Action.TAKEDOWN)
    assert takedown.fingerprint is None and takedown.signal_entry.hash_list == partner
    notice = Notice.objects.get()
    assert (notice.user, notice.ground, notice.signal_entry) == (
        carol.user,
        "Spam images",
        takedown.signal_entry,
    )


def test_the_recheck_matches_the_md5_of_the_bytes_the_upload_screened(race):
    img = images.photo(502)
    uploaded = images.upload(img, "carol.jpg").read()
    md5, _sha256 = signals.bytes_hashes([uploaded])
    partner = HashList.objects.create(name="partner")
    carol, recheck = race(img, partner, [md5])
    assert signal_of(carol).md5 == md5

    recheck()

    assert not carol.photo
    assert AuditEvent.objects.get(action=AuditEvent.Action.TAKEDOWN).signal_entry.value == md5


def test_a_shadow_list_only_records_what_the_recheck_would_have_taken_down(race):
    img = images.photo(503)
    partner = HashList.objects.create(name="partner", mode=HashList.Mode.SHADOW)
    carol, recheck = race(img, partner)

    recheck()

    assert carol.photo
    hit = ShadowHit.objects.get()
    assert (hit.object_id, hit.hash_list, hit.signal_entry.value) == (
        carol.pk,
        partner,
        pdq_of(img),
    )
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.TAKEDOWN).exists()


def test_a_low_quality_match_is_queued_and_once_dismissed_not_queued_again(race, moderator):
    img = images.photo(504)
    partner = HashList.objects.create(name="partner")
    carol, recheck = race(img, partner)
    StoredSignal.objects.filter(pk=signal_of(carol).pk).update(pdq_quality=20)

    recheck()

    assert carol.photo
    item = ReviewItem.objects.get()
    assert (item.object_id, item.found_by, item.signal_entry.value) == (
        carol.pk,
        ReviewItem.FoundBy.UPLOAD,
        pdq_of(img),
    )
    desk.review_dismiss(item=item, actor=moderator)

    assert sweeping.recheck_stored_image(instance=carol) is False

    assert ReviewItem.objects.count() == 1
    carol.refresh_from_db()
    assert carol.photo


def test_the_recheck_weighs_the_lists_flood_guard(race, make_profile, settings):
    settings.MODERATION_FLOOD_MAX_USERS = 1
    img = images.photo(505)
    dave = make_profile("dave", img)  # stored before the import: its sweep takes it down
    partner = HashList.objects.create(name="partner")
    carol, recheck = race(img, partner)

    recheck()

    assert carol.photo  # a second person's photo would pass the limit: the list is held
    partner.refresh_from_db()
    assert partner.mode == HashList.Mode.SHADOW
    assert AuditEvent.objects.filter(action=AuditEvent.Action.LIST_FLOOD_HOLD).count() == 1
    assert ShadowHit.objects.filter(hash_list=partner, object_id=carol.pk).exists()
    dave.refresh_from_db()
    assert not dave.photo
