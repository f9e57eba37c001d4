"""Abuse of the upload form: rate limits, and a record of refused uploads for moderators.

Limits are counted in Django's cache (locmem here; conftest clears it around every test). Every
photo upload counts, accepted or refused; an edit without a photo does not.
"""

from __future__ import annotations

import PIL.Image
import pytest
from django.core.checks import run_checks
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from moderation import flagging, ratelimit
from moderation.hashing import fingerprint
from moderation.models import FlaggedFingerprint, RefusedUpload
from profiles.models import Profile
from tests import hostile, images

pytestmark = pytest.mark.django_db

REFUSED = "admin:moderation_refusedupload_changelist"


@pytest.fixture
def login(django_user_model):
    """A callable: a client for a new user, optionally from a given IP."""

    def make(username: str, ip: str = "203.0.113.7", **extra) -> Client:
        user = django_user_model.objects.create_user(username=username, password="pw")
        client = Client(REMOTE_ADDR=ip, **extra)
        client.force_login(user)
        client.user = user
        return client

    return make


def post_photo(client, data: bytes | None = None, seed: int = 1):
    photo = (
        images.upload(images.photo(seed))
        if data is None
        else SimpleUploadedFile("x.jpg", data, "image/jpeg")
    )
    return client.post(reverse("profile-edit"), {"display_name": "x", "photo": photo})


@pytest.fixture
def limits(settings):
    settings.MODERATION_UPLOAD_RATE_PER_USER = 3
    settings.MODERATION_UPLOAD_RATE_PER_IP = 5
    settings.MODERATION_UPLOAD_RATE_WINDOW = 3600
    return settings


def test_defaults_are_twenty_per_user_and_sixty_per_ip_an_hour(settings):
    assert settings.MODERATION_UPLOAD_RATE_PER_USER == 20
    assert settings.MODERATION_UPLOAD_RATE_PER_IP == 60
    assert settings.MODERATION_UPLOAD_RATE_WINDOW == 3600


def test_user_over_the_limit_gets_a_friendly_429_and_nothing_is_decoded(
    limits, login, media_files, monkeypatch
):
    alice = login("alice")
    for seed in range(3):
        assert post_photo(alice, seed=seed).status_code == 302
    stored = media_files()

    def refuse(*args, **kwargs):
        raise AssertionError("a rate-limited upload was opened")

    monkeypatch.setattr(PIL.Image, "open", refuse)
    response = post_photo(alice, seed=9)

    assert response.status_code == 429
    page = response.content.decode()
    assert "Too many uploads" in page and "try again" in page
    assert 0 < int(response["Retry-After"]) <= 3600
    assert media_files() == stored


def test_refused_uploads_count_toward_the_limit(limits, login):
    alice = login("alice")
    for _ in range(3):
        assert post_photo(alice, hostile.TEXT).status_code == 200
    assert post_photo(alice).status_code == 429


def test_edits_without_a_photo_are_not_counted(limits, login):
    alice = login("alice")
    for _ in range(10):
        assert alice.post(reverse("profile-edit"), {"display_name": "y"}).status_code == 302
    assert post_photo(alice).status_code == 302


def test_another_user_on_another_ip_is_not_affected(limits, login):
    alice = login("alice")
    for seed in range(4):
        post_photo(alice, seed=seed)
    assert post_photo(login("bob", ip="198.51.100.2")).status_code == 302


def test_many_accounts_from_one_ip_hit_the_ip_limit(limits, login):
    statuses = [
        post_photo(login(f"sock{i}", ip="192.0.2.50"), seed=i).status_code for i in range(6)
    ]
    assert statuses == [302] * 5 + [429]
    assert post_photo(login("elsewhere", ip="192.0.2.51")).status_code == 302


def test_the_limit_resets_when_the_window_ends(limits, login, monkeypatch):
    alice = login("alice")
    now = 1_000_000 * 3600.0
    monkeypatch.setattr(ratelimit.time, "time", lambda: now)
    for seed in range(3):
        post_photo(alice, seed=seed)
    assert post_photo(alice).status_code == 429
    monkeypatch.setattr(ratelimit.time, "time", lambda: now + 3600)
    assert post_photo(alice).status_code == 302


def test_a_limit_of_zero_is_off(limits, login):
    limits.MODERATION_UPLOAD_RATE_PER_USER = 0
    limits.MODERATION_UPLOAD_RATE_PER_IP = 0
    alice = login("alice")
    assert all(post_photo(alice, hostile.TEXT).status_code == 200 for _ in range(8))


def test_a_forged_forwarded_for_header_does_not_escape_the_ip_limit(limits, login):
    """With no trusted proxy configured, X-Forwarded-For is the client's word: ignored."""
    statuses = [
        post_photo(
            login(f"sock{i}", ip="192.0.2.60", HTTP_X_FORWARDED_FOR=f"10.0.0.{i}"), seed=i
        ).status_code
        for i in range(6)
    ]
    assert statuses[-1] == 429


def test_behind_one_trusted_proxy_the_ip_is_the_one_it_appended(limits, login):
    limits.MODERATION_TRUSTED_PROXY_COUNT = 1
    # The client wrote "1.2.3.4"; our proxy appended the address it really came from.
    statuses = [
        post_photo(
            login(f"sock{i}", ip="10.0.0.1", HTTP_X_FORWARDED_FOR=f"1.2.3.{i}, 198.51.100.9"),
            seed=i,
        ).status_code
        for i in range(6)
    ]
    assert statuses == [302] * 5 + [429]
    other = login("other", ip="10.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.10")
    assert post_photo(other).status_code == 302


def test_nonsense_limits_are_system_check_errors(settings):
    settings.MODERATION_UPLOAD_RATE_PER_USER = -1
    settings.MODERATION_UPLOAD_RATE_WINDOW = 0
    ids = {e.id for e in run_checks()}
    assert {"moderation.E005", "moderation.E002"} <= ids


def test_a_per_process_cache_is_a_deploy_warning(settings):
    assert "moderation.W001" in {e.id for e in run_checks(include_deployment_checks=True)}
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "django_cache",
        }
    }
    assert "moderation.W001" not in {e.id for e in run_checks(include_deployment_checks=True)}


# --- the record of refused uploads ---------------------------------------------------------


@pytest.fixture
def banned():
    return flagging.flag_image(
        file=images.upload(images.photo(90), "bad.png", "PNG"),
        reason="known bad",
        source=FlaggedFingerprint.Source.COMMAND,
    ).fingerprint


def probe(client, seed_factor: float):
    """An edited copy of the banned picture, as someone probing the threshold would upload."""
    data = hostile.encoded(images.resized(images.photo(90), seed_factor), "JPEG", quality=85)
    return post_photo(client, data), fingerprint(SimpleUploadedFile("x", data))


def test_each_refused_copy_is_recorded_with_who_where_and_what_it_was_near(login, banned):
    mallory = login("mallory", ip="192.0.2.99")
    fps = []
    for factor in (0.9, 0.8, 0.7):
        response, fp = probe(mallory, factor)
        assert response.status_code == 200
        fps.append(fp)

    rows = list(RefusedUpload.objects.order_by("id"))
    assert len(rows) == 3
    for row, fp in zip(rows, fps):
        assert row.user == mallory.user and row.ip == "192.0.2.99"
        assert row.code == "banned_image"
        assert row.hex == fp.hex
        assert row.nearest == banned
        assert row.distance == fp.distance(banned.fingerprint)
        assert (row.found_by, row.variant) == ("whole", 0)


def test_refusals_that_are_not_bans_are_recorded_with_their_code(login):
    alice = login("alice")
    post_photo(alice, hostile.TEXT)
    post_photo(alice, hostile.png_declaring(12000, 12000))
    assert sorted(RefusedUpload.objects.values_list("code", flat=True)) == [
        "too_many_pixels",
        "unsupported_format",
    ]
    assert not RefusedUpload.objects.exclude(nearest=None).exists()


def test_accepted_uploads_are_not_recorded(login):
    post_photo(login("alice"))
    assert not RefusedUpload.objects.exists()
    assert Profile.objects.get().photo


def test_moderators_see_refusals_with_a_count_per_user(login, banned, moderator):
    mallory = login("mallory")
    for factor in (0.9, 0.8, 0.7):
        probe(mallory, factor)
    post_photo(login("alice"), hostile.TEXT)

    client = Client()
    client.force_login(moderator)
    page = client.get(reverse(REFUSED))
    assert page.status_code == 200
    body = page.content.decode()
    assert body.count("mallory") >= 3
    assert f'?user__id__exact={mallory.user.pk}">3</a>' in body
    assert str(banned) in body

    only_mallory = client.get(reverse(REFUSED), {"user__id__exact": mallory.user.pk})
    assert only_mallory.status_code == 200
    assert only_mallory.context["cl"].result_count == 3


def test_refusals_are_sortable_by_count_so_the_worst_come_first(login, banned, admin_client):
    mallory = login("mallory")
    for factor in (0.9, 0.8, 0.7):
        probe(mallory, factor)
    post_photo(login("alice"), hostile.TEXT)
    column = admin_client.get(reverse(REFUSED)).context["cl"].list_display.index(
        "refusals_by_user"
    )
    page = admin_client.get(reverse(REFUSED), {"o": f"-{column}"})
    users = [row.user.username for row in page.context["cl"].result_list]
    assert users == ["mallory"] * 3 + ["alice"]


def test_ordinary_users_cannot_see_the_record(login):
    alice = login("alice")
    response = alice.get(reverse(REFUSED))
    assert response.status_code == 302 and reverse("admin:login") in response["Location"]
