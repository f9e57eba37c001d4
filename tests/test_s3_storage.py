"""Public photos and quarantined originals in real S3 (SeaweedFS on 127.0.0.1), end to end.

Every test here runs with ``STORAGES`` built by ``config.s3_storage.s3_storages`` from the
variables a deployment sets, against the server in ``tests/s3server.py`` whose anonymous
identity may read the public bucket and nothing else. Objects are listed and read back with
boto3, and "publicly readable" means an unsigned HTTP GET. Nothing about S3 is mocked.
"""

from __future__ import annotations

import io
import time
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils.html import escape
from PIL import Image

from moderation.hashing import fingerprint
from moderation.models import AuditEvent, FlaggedFingerprint, quarantine_storage
from profiles.models import Profile
from tests import images
from tests.helpers import ban, post_photo
from tests.s3server import SHARED_PUBLIC_PREFIX, http_get, start_server

pytestmark = [pytest.mark.s3, pytest.mark.django_db]

GENERIC = escape("This image can't be used as a profile photo.")
RETRY = escape("We couldn't save your photo just now. Please try again in a moment.")


# --- helpers ----------------------------------------------------------------------------------




class _HiddenInputs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.fields: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs) -> None:
        a = dict(attrs)
        if tag == "input" and a.get("type") == "hidden" and a.get("name"):
            self.fields.append((a["name"], a.get("value") or ""))


def flag_in_admin(client, profiles, reason="spam"):
    """Profiles -> select -> "Flag selected photos" -> confirm, as a moderator's browser does."""
    url = reverse("admin:profiles_profile_changelist")
    page = client.post(
        url, {"action": "flag_selected_photos", ACTION_CHECKBOX_NAME: [p.pk for p in profiles]}
    )
    assert page.status_code == 200
    for profile in profiles:  # the confirmation page shows the photos from S3
        assert profile.photo.url in page.content.decode()
    parser = _HiddenInputs()
    parser.feed(page.content.decode())
    data: dict[str, list[str]] = {}
    for name, value in parser.fields:
        data.setdefault(name, []).append(value)
    assert data.get("confirm") == ["yes"], "not the confirmation form"
    return client.post(url, {**data, "reason": reason})


def fingerprint_bytes(data: bytes):
    return fingerprint(io.BytesIO(data))


@pytest.fixture
def alice_client(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def moderator_client(moderator):
    client = Client()
    client.force_login(moderator)
    return client


@pytest.fixture
def upload_as(django_user_model):
    """A callable: a new user uploads ``img`` through the profile form; returns the profile."""

    def upload(username: str, img) -> Profile:
        user = django_user_model.objects.create_user(username=username, password=f"pw-{username}")
        client = Client()
        client.force_login(user)
        response = post_photo(client, img, f"{username}.jpg")
        assert response.status_code == 302, response.content.decode()[:2000]
        return Profile.objects.get(user=user)

    return upload


# --- upload -----------------------------------------------------------------------------------


def test_upload_stores_reencoded_photo_in_public_bucket_with_a_plain_public_url(
    s3, alice_client, user
):
    upload = images.encode(images.photo(1), "JPEG", quality=95)
    response = alice_client.post(
        reverse("profile-edit"),
        {"display_name": "Alice", "photo": images.upload(images.photo(1), "my holiday.jpg")},
    )
    assert response.status_code == 302

    profile = Profile.objects.get(user=user)
    key = profile.photo.name
    assert key.startswith("photos/") and key.endswith(".jpg") and "holiday" not in key
    assert s3.keys(s3.public_bucket) == [key]
    assert s3.keys(s3.quarantine_bucket) == []

    stored = s3.read(s3.public_bucket, key)
    assert stored != upload  # a re-encoding, not the uploaded bytes
    assert Image.open(io.BytesIO(stored)).format == "JPEG"
    assert fingerprint_bytes(stored).signed == profile.photo_dhash

    # The public URL is the plain object URL: no signature, no expiry, readable by anyone.
    url = profile.photo.url
    assert url == s3.object_url(s3.public_bucket, key)
    assert not urlsplit(url).query
    status, body, headers = http_get(url)
    assert status == 200
    assert body == stored
    assert headers["Content-Type"] == "image/jpeg"
    assert headers["Cache-Control"] == "public, max-age=300"

    page = Client().get(reverse("profile-detail", args=["alice"])).content.decode()
    assert url in page


def test_replacing_a_photo_deletes_the_old_object_after_commit(
    s3, alice_client, user, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        post_photo(alice_client, images.photo(7))
    first = Profile.objects.get(user=user).photo.name
    with django_capture_on_commit_callbacks(execute=True):
        post_photo(alice_client, images.photo(8))
    second = Profile.objects.get(user=user).photo.name
    assert first != second
    assert s3.keys(s3.public_bucket) == [second]
    assert http_get(s3.object_url(s3.public_bucket, first))[0] == 404


def test_storage_never_overwrites_an_existing_object(s3):
    first = default_storage.save("photos/same.jpg", ContentFile(b"first"))
    second = default_storage.save("photos/same.jpg", ContentFile(b"second"))
    assert first == "photos/same.jpg"
    assert second != first and second.startswith("photos/same")
    assert s3.read(s3.public_bucket, first) == b"first"
    assert s3.read(s3.public_bucket, second) == b"second"

    q_first = quarantine_storage().save("originals/same.png", ContentFile(b"a"))
    q_second = quarantine_storage().save("originals/same.png", ContentFile(b"b"))
    assert q_first != q_second
    assert s3.keys(s3.quarantine_bucket) == sorted([q_first, q_second])


def test_refused_upload_leaves_no_object_in_any_bucket(s3, alice_client, user):
    post_photo(alice_client, images.photo(4))
    before_photo = Profile.objects.get(user=user).photo.name
    ban(images.photo(5))
    before = {bucket: s3.keys(bucket) for bucket in s3.buckets}
    assert before[s3.public_bucket] == [before_photo]
    assert len(before[s3.quarantine_bucket]) == 1  # the banned image's original

    response = post_photo(alice_client, images.resized(images.photo(5), 0.5))

    assert response.status_code == 200
    assert GENERIC in response.content.decode()
    assert {bucket: s3.keys(bucket) for bucket in s3.buckets} == before
    assert Profile.objects.get(user=user).photo.name == before_photo


# --- flag, takedown, quarantine ---------------------------------------------------------------


def test_flagging_in_admin_moves_original_to_quarantine_and_the_public_url_stops_working(
    s3, upload_as, moderator_client, django_capture_on_commit_callbacks
):
    profile = upload_as("alice", images.photo(10))
    public_key, public_url = profile.photo.name, profile.photo.url
    public_bytes = s3.read(s3.public_bucket, public_key)
    assert http_get(public_url)[0] == 200

    with django_capture_on_commit_callbacks(execute=True):
        response = flag_in_admin(moderator_client, [profile], reason="not allowed here")
    assert response.status_code == 302

    profile.refresh_from_db()
    assert not profile.photo and profile.photo_dhash is None
    flagged = FlaggedFingerprint.objects.get()
    original = flagged.original.name
    assert original.startswith("originals/")

    # The public object is gone, and its URL with it.
    assert s3.keys(s3.public_bucket) == []
    assert http_get(public_url)[0] in (403, 404)

    # The original is in the quarantine bucket, byte for byte, and nobody can read it anonymously.
    assert s3.keys(s3.quarantine_bucket) == [original]
    assert s3.read(s3.quarantine_bucket, original) == public_bytes
    assert fingerprint_bytes(public_bytes).signed == flagged.dhash
    status, body, _ = http_get(s3.object_url(s3.quarantine_bucket, original))
    assert status == 403, body[:300]
    head = s3.admin.head_object(Bucket=s3.quarantine_bucket, Key=original)
    assert head["CacheControl"] == "private, no-store"

    # The takedown audit points at the same private evidence.
    takedown = AuditEvent.objects.get(action=AuditEvent.Action.TAKEDOWN)
    assert takedown.evidence.name == original

    # A re-upload of a resized copy is refused and stores nothing.
    client = Client()
    client.force_login(profile.user)
    response = post_photo(client, images.resized(images.photo(10), 0.5))
    assert GENERIC in response.content.decode()
    assert s3.keys(s3.public_bucket) == []


def test_staff_quarantine_view_serves_the_original_to_a_moderator_only(
    s3, upload_as, moderator_client, django_capture_on_commit_callbacks
):
    profile = upload_as("alice", images.photo(12))
    with django_capture_on_commit_callbacks(execute=True):
        flag_in_admin(moderator_client, [profile])
    original = FlaggedFingerprint.objects.get().original.name
    url = reverse("moderation:quarantined-file", args=[original])

    response = moderator_client.get(url)
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == s3.read(s3.quarantine_bucket, original)
    assert response["Content-Type"] == "image/jpeg"
    assert response["Cache-Control"] == "private, no-store"

    # The uploader, a visitor and a staff member without the permission get nothing.
    uploader = Client()
    uploader.force_login(profile.user)
    assert uploader.get(url).status_code == 302  # to the admin login
    assert Client().get(url).status_code == 302
    # A name the database does not know is not served, even if it exists in the bucket.
    s3.admin.put_object(Bucket=s3.quarantine_bucket, Key="originals/stray.jpg", Body=b"x")
    stray = reverse("moderation:quarantined-file", args=["originals/stray.jpg"])
    assert moderator_client.get(stray).status_code == 404
    # A referenced name whose object vanished is a 404, not a server error.
    s3.admin.delete_object(Bucket=s3.quarantine_bucket, Key=original)
    assert moderator_client.get(url).status_code == 404


def test_quarantine_urls_are_short_lived_signed_urls_never_the_custom_domain(s3, settings):
    settings.STORAGES = {
        **settings.STORAGES,
        **s3.storages(
            AWS_S3_CUSTOM_DOMAIN=f"127.0.0.1:{s3.ports['s3']}/{s3.public_bucket}",
            AWS_S3_URL_PROTOCOL="http:",
        ),
    }
    png = ContentFile(images.encode(images.photo(3), "PNG"))
    name = quarantine_storage().save("originals/x.png", png)
    signed = quarantine_storage().url(name)
    parts = urlsplit(signed)
    assert f"{parts.scheme}://{parts.netloc}" == s3.endpoint
    assert parts.path == f"/{s3.quarantine_bucket}/{name}"
    assert "X-Amz-Signature=" in parts.query and "X-Amz-Expires=300" in parts.query
    assert http_get(signed)[0] == 200
    unsigned = f"{parts.scheme}://{parts.netloc}{parts.path}"
    assert http_get(unsigned)[0] == 403

    # The public storage does use the custom domain, and that URL works.
    key = default_storage.save("photos/c.jpg", ContentFile(images.encode(images.photo(4))))
    public_url = default_storage.url(key)
    assert public_url == f"http://127.0.0.1:{s3.ports['s3']}/{s3.public_bucket}/{key}"
    assert http_get(public_url)[0] == 200


def test_sweep_takes_a_matching_photo_down_into_quarantine(
    s3, upload_as, moderator_client, django_capture_on_commit_callbacks
):
    bob = upload_as("bob", images.photo(20))
    bob_key, bob_url = bob.photo.name, bob.photo.url
    bob_bytes = s3.read(s3.public_bucket, bob_key)
    other = upload_as("carol", images.photo(21))

    # A moderator bans a resized copy through the admin's "Flag an image" page.
    copy = images.upload(images.resized(images.photo(20), 0.5), "copy.png", "PNG")
    with django_capture_on_commit_callbacks(execute=True):
        response = moderator_client.post(
            reverse("admin:moderation_flaggedfingerprint_flag_image"),
            {"image": copy, "reason": "known bad"},
        )
    assert response.status_code == 302

    bob.refresh_from_db()
    assert not bob.photo
    takedown = AuditEvent.objects.get(action=AuditEvent.Action.TAKEDOWN)
    evidence = takedown.evidence.name
    assert evidence.startswith("takedowns/")
    original = FlaggedFingerprint.objects.get().original.name
    assert s3.keys(s3.quarantine_bucket) == sorted([original, evidence])
    assert s3.read(s3.quarantine_bucket, evidence) == bob_bytes
    assert s3.keys(s3.public_bucket) == [other.photo.name]
    assert http_get(bob_url)[0] in (403, 404)
    assert http_get(s3.object_url(s3.quarantine_bucket, evidence))[0] == 403
    assert http_get(other.photo.url)[0] == 200


def test_takedown_of_a_photo_missing_from_the_bucket_still_clears_the_profile(
    s3, upload_as, django_capture_on_commit_callbacks
):
    bob = upload_as("bob", images.photo(22))
    s3.admin.delete_object(Bucket=s3.public_bucket, Key=bob.photo.name)

    with django_capture_on_commit_callbacks(execute=True):
        ban(images.photo(22))

    bob.refresh_from_db()
    assert not bob.photo
    takedown = AuditEvent.objects.get(action=AuditEvent.Action.TAKEDOWN)
    assert "missing from storage" in takedown.reason
    assert not takedown.evidence


# --- reindex ----------------------------------------------------------------------------------


def test_reindex_reads_photos_and_originals_back_from_s3(s3, upload_as):
    profile = upload_as("alice", images.photo(30))
    flagged = ban(images.photo(31))
    right_photo, right_flag = profile.photo_dhash, flagged.dhash
    Profile.objects.filter(pk=profile.pk).update(photo_dhash=right_photo ^ 0xFF)
    FlaggedFingerprint.objects.filter(pk=flagged.pk).update(dhash=right_flag ^ 0xF0F)

    out, err = io.StringIO(), io.StringIO()
    call_command("reindex", stdout=out, stderr=err)

    profile.refresh_from_db()
    flagged.refresh_from_db()
    assert profile.photo_dhash == right_photo
    assert flagged.dhash == right_flag
    assert "2 changed" in out.getvalue(), out.getvalue()
    assert "missing file" not in err.getvalue()


def test_reindex_reports_a_photo_missing_from_the_bucket(s3, upload_as):
    profile = upload_as("alice", images.photo(32))
    s3.admin.delete_object(Bucket=s3.public_bucket, Key=profile.photo.name)

    err = io.StringIO()
    call_command("reindex", stdout=io.StringIO(), stderr=err)

    assert profile.photo.name in err.getvalue()
    assert "missing" in err.getvalue()


# --- one bucket, two prefixes -----------------------------------------------------------------


def test_one_bucket_with_separate_prefixes_keeps_quarantine_private(
    s3, settings, upload_as, moderator_client, django_capture_on_commit_callbacks
):
    settings.STORAGES = {
        **settings.STORAGES,
        **s3.storages(
            MODERATION_S3_BUCKET=s3.shared_bucket,
            MODERATION_S3_PREFIX=SHARED_PUBLIC_PREFIX,
            MODERATION_S3_QUARANTINE_BUCKET=s3.shared_bucket,
            MODERATION_S3_QUARANTINE_PREFIX="quarantine",
        ),
    }
    profile = upload_as("alice", images.photo(40))
    public_key = f"{SHARED_PUBLIC_PREFIX}/{profile.photo.name}"
    assert s3.keys(s3.shared_bucket) == [public_key]
    assert profile.photo.url == s3.object_url(s3.shared_bucket, public_key)
    assert http_get(profile.photo.url)[0] == 200

    with django_capture_on_commit_callbacks(execute=True):
        flag_in_admin(moderator_client, [profile])

    original = FlaggedFingerprint.objects.get().original.name
    assert s3.keys(s3.shared_bucket) == [f"quarantine/{original}"]
    assert http_get(s3.object_url(s3.shared_bucket, f"quarantine/{original}"))[0] == 403
    assert moderator_client.get(
        reverse("moderation:quarantined-file", args=[original])
    ).status_code == 200


# --- outage -----------------------------------------------------------------------------------


@pytest.fixture
def outage_server(tmp_path):
    """A SeaweedFS server of this test's own, to kill and freeze without disturbing the rest."""
    server = start_server(tmp_path / "weed")
    yield server
    server.stop()


def test_storage_outage_during_upload_asks_to_retry_and_writes_nothing(
    outage_server, settings, alice_client, user
):
    server = outage_server
    settings.STORAGES = {**settings.STORAGES, **server.storages()}
    assert post_photo(alice_client, images.photo(50)).status_code == 302
    before = Profile.objects.get(user=user)
    assert server.keys(server.public_bucket) == [before.photo.name]

    def assert_nothing_changed(response):
        assert response.status_code == 200
        content = response.content.decode()
        assert RETRY in content
        assert GENERIC not in content
        after = Profile.objects.get(user=user)
        assert after.photo.name == before.photo.name
        assert after.photo_dhash == before.photo_dhash
        assert after.photo_pipeline_version == before.photo_pipeline_version
        assert after.photo_checked_at == before.photo_checked_at
        assert before.photo.url in content  # the page still shows the current photo
        assert not AuditEvent.objects.exists()

    # 1. The server is down: connections are refused.
    server.kill()
    began = time.monotonic()
    response = post_photo(alice_client, images.photo(51))
    assert time.monotonic() - began < 15
    assert_nothing_changed(response)

    # 2. The server hangs: it accepts connections and never answers. Short timeouts (as a
    #    deployment would set them) bound how long the user waits.
    server.start()
    settings.STORAGES = {
        **settings.STORAGES,
        **server.storages(
            AWS_S3_CONNECT_TIMEOUT="1", AWS_S3_READ_TIMEOUT="1", AWS_S3_MAX_ATTEMPTS="1"
        ),
    }
    with server.frozen():
        began = time.monotonic()
        response = post_photo(alice_client, images.photo(52))
        waited = time.monotonic() - began
    assert waited < 10
    assert_nothing_changed(response)

    # Back up: the previous photo is intact and no stray object was written.
    assert server.keys(server.public_bucket) == [before.photo.name]
    assert server.keys(server.quarantine_bucket) == []
    assert http_get(before.photo.url)[0] == 200

    # And the next try works.
    assert post_photo(alice_client, images.photo(53)).status_code == 302
    assert Profile.objects.get(user=user).photo.name != before.photo.name


def test_storage_outage_during_staff_actions_gives_clear_errors_and_changes_nothing(
    outage_server, settings, alice_client, user, moderator_client
):
    server = outage_server
    settings.STORAGES = {**settings.STORAGES, **server.storages()}
    assert post_photo(alice_client, images.photo(60)).status_code == 302
    profile = Profile.objects.get(user=user)
    kept = FlaggedFingerprint.objects.get(pk=ban(images.photo(61)).pk)
    server.kill()

    # "Flag selected photos": the photo can't be read; nothing is flagged, nothing cleared.
    response = flag_in_admin(moderator_client, [profile])
    assert response.status_code == 302
    assert FlaggedFingerprint.objects.count() == 1
    assert Profile.objects.get(pk=profile.pk).photo.name == profile.photo.name

    # "Flag an image": a form error, not a 500, and no row.
    page = moderator_client.post(
        reverse("admin:moderation_flaggedfingerprint_flag_image"),
        {"image": images.upload(images.photo(62)), "reason": "spam"},
    )
    assert page.status_code == 200
    assert "File storage is unavailable" in page.content.decode()
    assert FlaggedFingerprint.objects.count() == 1

    # The quarantine view answers 503, not 500.
    view = moderator_client.get(reverse("moderation:quarantined-file", args=[kept.original.name]))
    assert view.status_code == 503
