"""The flood guard: a "default avatar" flagged by mistake is held in shadow before it takes down
more than ``MODERATION_FLOOD_MAX_USERS`` users' photos, across a sweep's batches, ranges and
retries, and across refused uploads; moderators are alerted, and resume (the held takedowns
run) or drop it."""

from __future__ import annotations

import pytest
from django.core import mail

from moderation import banned_set, desk, flood_guard, registry, sweeping
from moderation.models import (
    AuditEvent,
    EmailDelivery,
    FlaggedFingerprint,
    RefusedUpload,
    ReviewSubscription,
    ShadowHit,
)
from profiles.models import Profile
from tests import images
from tests.helpers import flag_file, post_photo

pytestmark = pytest.mark.django_db

LIMIT = 3
PROFILES = 8


@pytest.fixture
def guard(settings):
    settings.MODERATION_FLOOD_MAX_USERS = LIMIT
    settings.MODERATION_FLOOD_WINDOW_MINUTES = 60


@pytest.fixture
def avatar():
    """The site's default avatar: a drawn picture every new profile might carry."""
    return images.photo(4242)


@pytest.fixture
def avatars(make_profile, avatar, django_capture_on_commit_callbacks):
    """``PROFILES`` users who kept the default avatar, stored and rechecked (nothing banned)."""
    with django_capture_on_commit_callbacks(execute=True):
        made = [make_profile(f"member{i}", avatar) for i in range(PROFILES)]
    assert all(p.photo for p in made)
    return made


def with_photo() -> int:
    return Profile.objects.exclude(photo="").count()


def takedowns(flagged) -> int:
    return AuditEvent.objects.filter(action=AuditEvent.Action.TAKEDOWN, fingerprint=flagged).count()


def test_a_mistaken_avatar_flag_is_held_before_its_sweep_takes_down_more_than_the_limit(
    guard, avatars, avatar, moderator, django_capture_on_commit_callbacks
):
    ReviewSubscription.objects.create(user=moderator)
    moderator.email = "mod@example.org"
    moderator.save()
    with django_capture_on_commit_callbacks(execute=True):
        flagged = flag_file(avatar, reason="mistake: the default avatar").fingerprint

    flagged.refresh_from_db()
    assert flagged.held and flagged.active
    assert takedowns(flagged) <= LIMIT
    assert with_photo() >= PROFILES - LIMIT
    hold = AuditEvent.objects.get(action=AuditEvent.Action.FLOOD_HOLD, fingerprint=flagged)
    assert "MODERATION_FLOOD_MAX_USERS=3" in hold.reason
    # The moderators were alerted, by the review-queue subscription's email.
    [alert] = EmailDelivery.objects.filter(kind=EmailDelivery.Kind.FLOOD_ALERT)
    assert alert.sent_at is not None
    assert [m.subject for m in mail.outbox] == [alert.subject]


def test_a_held_flag_matches_in_shadow_so_the_avatar_uploads_again_and_is_recorded(
    guard, avatars, avatar, client, django_user_model, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        flagged = flag_file(avatar).fingerprint
    flagged.refresh_from_db()
    assert flagged.held

    newcomer = django_user_model.objects.create_user(username="newcomer", password="pw-new-123")
    client.force_login(newcomer)
    with django_capture_on_commit_callbacks(execute=True):
        response = post_photo(client, avatar, "avatar.jpg")
    assert response.status_code == 302  # accepted: a held flag refuses nothing
    assert Profile.objects.get(user=newcomer).photo
    assert ShadowHit.objects.filter(fingerprint=flagged, uploader=newcomer).exists()


@pytest.mark.parametrize("snapshots", [False, True], ids=["from-tables", "from-snapshot"])
def test_a_process_starting_after_the_hold_loads_the_flag_in_shadow(
    guard, avatars, avatar, snapshots, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        flagged = flag_file(avatar).fingerprint
    banned_set.reset(snapshots=snapshots)  # a new process: nothing in memory yet

    verdict = banned_set.current().check(flagged.fingerprint)

    assert not verdict.blocked
    assert [m.fingerprint_id for m in verdict.shadow] == [flagged.pk]


def test_resuming_a_held_flag_runs_the_held_takedowns(
    guard, avatars, avatar, moderator, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        flagged = flag_file(avatar).fingerprint
    flagged.refresh_from_db()
    assert with_photo() > 0

    with django_capture_on_commit_callbacks(execute=True):
        assert desk.flood_resume(flagged=flagged, actor=moderator)

    assert flagged.flood_state == flood_guard.RESUMED and not flagged.held
    assert with_photo() == 0
    assert takedowns(flagged) == PROFILES
    assert AuditEvent.objects.filter(
        action=AuditEvent.Action.FLOOD_RESUME, fingerprint=flagged, actor=moderator
    ).exists()
    assert not desk.flood_resume(flagged=flagged, actor=moderator)  # decided once


def test_dropping_a_held_flag_unflags_it_and_leaves_the_photos_up(
    guard, avatars, avatar, moderator, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        flagged = flag_file(avatar).fingerprint
    before = with_photo()

    assert desk.flood_drop(flagged=FlaggedFingerprint.objects.get(pk=flagged.pk), actor=moderator)

    flagged.refresh_from_db()
    assert not flagged.active and flagged.flood_state == flood_guard.DROPPED
    assert with_photo() == before
    assert banned_set.find(flagged.fingerprint) == []
    assert AuditEvent.objects.filter(action=AuditEvent.Action.FLOOD_DROP).count() == 1
    assert AuditEvent.objects.filter(action=AuditEvent.Action.UNFLAG).count() == 1


def test_the_guard_holds_across_the_ranges_of_a_full_sweep_and_its_retries(guard, avatars, avatar):
    # Flagged without its own sweep (as if its worker died): the full sweep's ranges find them.
    flagged = flag_file(avatar).fingerprint
    target = registry.target_for(Profile)
    pks = sorted(p.pk for p in avatars)
    ranges = [(pks[0] - 1, pks[1]), (pks[1], pks[3]), (pks[3], pks[5]), (pks[5], pks[-1])]

    for after, upto in ranges + ranges:  # every range, then all of them again (a retry)
        sweeping.sweep_stored_range(target, after=after, upto=upto, limit=2)

    flagged.refresh_from_db()
    assert flagged.held
    assert takedowns(flagged) == 2  # the first range; the second would have made 4 > 3
    assert with_photo() == PROFILES - 2


def test_single_takedowns_stop_at_the_limit_and_hold_the_flag(guard, avatars, avatar):
    """Rechecks take down one image at a time: the one that would be one too many holds."""
    flagged = flag_file(avatar).fingerprint
    results = [
        sweeping.take_down_image(instance=profile, flagged=flagged, distance=0)
        for profile in avatars
    ]
    assert results == [True] * LIMIT + [False] * (PROFILES - LIMIT)
    flagged.refresh_from_db()
    assert flagged.held
    assert takedowns(flagged) == LIMIT


def test_refusals_of_more_than_the_limit_of_users_hold_the_flag(
    guard, avatar, client, django_user_model, django_capture_on_commit_callbacks
):
    flagged = flag_file(avatar).fingerprint
    outcomes = []
    for i in range(LIMIT + 2):
        user = django_user_model.objects.create_user(username=f"new{i}", password="pw-new-123")
        client.force_login(user)
        client.defaults["REMOTE_ADDR"] = f"192.0.2.{10 + i}"  # people on their own machines
        with django_capture_on_commit_callbacks(execute=True):
            outcomes.append(post_photo(client, avatar, "avatar.jpg").status_code)
    # LIMIT + 1 different users refused (one more than allowed), then the flag is held.
    assert outcomes == [200] * (LIMIT + 1) + [302]
    assert RefusedUpload.objects.filter(nearest=flagged).count() == LIMIT + 1
    flagged.refresh_from_db()
    assert flagged.held


def test_many_accounts_refused_from_one_address_do_not_hold_the_flag(
    guard, avatar, client, django_user_model
):
    """Sock puppets on one machine cannot switch a banned picture off by uploading it."""
    flagged = flag_file(avatar).fingerprint
    for i in range(LIMIT + 3):
        user = django_user_model.objects.create_user(username=f"sock{i}", password="pw-sock-1")
        client.force_login(user)
        assert post_photo(client, avatar, "avatar.jpg").status_code == 200
    flagged.refresh_from_db()
    assert not flagged.held


def test_one_user_refused_many_times_is_not_a_flood(
    guard, avatar, client, user, django_capture_on_commit_callbacks
):
    flagged = flag_file(avatar).fingerprint
    client.force_login(user)
    for _ in range(LIMIT + 2):
        assert post_photo(client, avatar, "avatar.jpg").status_code == 200
    flagged.refresh_from_db()
    assert not flagged.held


def test_a_limit_of_zero_turns_the_guard_off(
    settings, avatars, avatar, django_capture_on_commit_callbacks
):
    settings.MODERATION_FLOOD_MAX_USERS = 0
    with django_capture_on_commit_callbacks(execute=True):
        flagged = flag_file(avatar).fingerprint
    flagged.refresh_from_db()
    assert not flagged.held
    assert with_photo() == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_takedowns_by_one_flag_in_parallel_never_pass_the_limit(
    guard, avatar, make_profile, monkeypatch
):
    """Workers taking down copies of one flag at the same moment count one after the other
    (the flag's row lock), so together they stop at the limit too."""
    import threading

    from django.db import connection

    profiles = [make_profile(f"racer{i}", avatar) for i in range(PROFILES)]
    # The flag's own sweep does not run (as if its worker died): the threads are the takedowns.
    monkeypatch.setattr(sweeping, "sweep_after_commit", lambda ids: None)
    flagged = flag_file(avatar).fingerprint
    assert not FlaggedFingerprint.objects.get(pk=flagged.pk).held
    start = threading.Barrier(len(profiles))
    results: list[bool] = []

    def take(profile):
        try:
            start.wait()
            results.append(sweeping.take_down_image(instance=profile, flagged=flagged, distance=0))
        finally:
            connection.close()

    threads = [threading.Thread(target=take, args=(p,)) for p in profiles]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(results) == [False] * (PROFILES - LIMIT) + [True] * LIMIT
    assert takedowns(flagged) == LIMIT
    flagged.refresh_from_db()
    assert flagged.held
