"""Stored photos and faults: nothing lost, nothing broken shown.

* What is stored is the site's own re-encoding, served as ``image/jpeg`` with ``nosniff`` (the
  S3 side of this: ``test_s3_storage.py::test_upload_stores_reencoded_photo_in_public_bucket...``
  checks the object's Content-Type on a real S3 server).
* Storage failing, the database failing after the file was written, the old file outliving a
  transaction that rolls back, a stored file gone missing.
* A reindex killed midway resumes and loses nothing: ``test_reindex.py`` (``test_interrupted_*``,
  ``test_rerun_after_interruption_resumes_from_the_cursor_and_loses_nothing``,
  ``test_reindex_interrupted_during_the_sweep_sweeps_again_without_rereading``).
* On PostgreSQL, with real concurrent connections: two moderators flagging the same image at the
  same moment, and an upload racing a flag of the same picture.
"""

from __future__ import annotations

import io
import threading
from io import StringIO

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.test import Client
from django.urls import reverse
from PIL import Image

from moderation import banned_set, flagging
from moderation.models import AuditEvent, BannedSetChange, FlaggedFingerprint, RefusedUpload
from profiles import photos
from profiles.models import Profile
from profiles.photos import profile_set_photo
from profiles.services import profile_for
from profiles.views import STORAGE_RETRY_MESSAGE
from tests import hostile, images

pytestmark = pytest.mark.django_db

FLAG_IMAGE = "admin:moderation_flaggedfingerprint_flag_image"


@pytest.fixture
def alice_client(client, user):
    client.force_login(user)
    return client


def upload(img, name: str = "me.jpg"):
    return images.upload(img, name)


def hostile_upload(data: bytes, name: str = "me.jpg"):
    return SimpleUploadedFile(name, data, "image/jpeg")


@pytest.fixture
def alice_with_photo(user) -> Profile:
    profile = profile_set_photo(profile=profile_for(user=user), upload=upload(images.photo(61)))
    return Profile.objects.get(pk=profile.pk)


# --- item 3: what is stored and how it is served ----------------------------------------


def test_stored_photo_is_a_reencoding_upright_and_without_metadata(alice_client, user):
    turned = images.photo(62).transpose(Image.Transpose.ROTATE_90)  # 480 x 640 as stored
    data = hostile.with_orientation(turned, 6)  # EXIF: turn 270 to show it: 640 x 480
    response = alice_client.post(
        reverse("profile-edit"),
        {"display_name": "A", "photo": hostile_upload(data)},
    )
    assert response.status_code == 302
    profile = Profile.objects.get(user=user)
    with profile.photo.open("rb") as fh:
        stored = fh.read()
    assert stored != data
    with Image.open(io.BytesIO(stored)) as img:
        assert img.format == "JPEG"
        assert img.size == (640, 480)  # orientation applied once and for all
        assert not img.getexif() and "exif" not in img.info


def test_media_is_served_as_image_jpeg_with_nosniff(dev_media_urls, alice_with_photo):
    response = Client().get(alice_with_photo.photo.url)
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert response["X-Content-Type-Options"] == "nosniff"
    body = b"".join(response.streaming_content)
    with alice_with_photo.photo.open("rb") as fh:
        assert body == fh.read()  # the re-encoded file is the one served


def test_pages_are_served_with_nosniff(client):
    assert client.get(reverse("home"))["X-Content-Type-Options"] == "nosniff"


# --- item 4: storage and database failures ----------------------------------------------


def test_storage_failing_while_saving_asks_to_retry_and_changes_nothing(
    alice_client, alice_with_photo, media_files, monkeypatch
):
    before = list(Profile.objects.filter(pk=alice_with_photo.pk).values())
    files = media_files()

    def broken(self, name, content):
        raise OSError("No space left on device")

    monkeypatch.setattr(FileSystemStorage, "_save", broken)
    response = alice_client.post(
        reverse("profile-edit"),
        {"display_name": "Alice", "photo": upload(images.photo(63))},
    )

    assert response.status_code == 200
    assert STORAGE_RETRY_MESSAGE.replace("'", "&#x27;") in response.content.decode()
    assert list(Profile.objects.filter(pk=alice_with_photo.pk).values()) == [
        {**before[0], "display_name": "Alice", "updated_at": Profile.objects.get().updated_at}
    ]
    assert media_files() == files  # no row points at a missing file, no stray file
    assert not RefusedUpload.objects.exists()  # our failure, not the user's


def _failing_photo_save(monkeypatch):
    real = Profile.save

    def save(self, *args, **kwargs):
        if "photo" in (kwargs.get("update_fields") or ()):
            raise DatabaseError("server closed the connection unexpectedly")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Profile, "save", save)


def test_database_failing_after_the_file_was_written_removes_the_new_file(
    alice_with_photo, media_files, monkeypatch
):
    old = alice_with_photo.photo.name
    written = []
    real_save = FileSystemStorage._save

    def recording(self, name, content):
        written.append(real_save(self, name, content))
        return written[-1]

    monkeypatch.setattr(FileSystemStorage, "_save", recording)
    _failing_photo_save(monkeypatch)

    with pytest.raises(DatabaseError):
        profile_set_photo(profile=alice_with_photo, upload=upload(images.photo(64)))

    assert len(written) == 1, "the new file was written before the row update"
    assert media_files() == [old]  # ...and removed again; the old one untouched
    assert Profile.objects.get(pk=alice_with_photo.pk).photo.name == old


def test_database_failing_during_an_upload_leaves_no_file_behind(
    alice_with_photo, user, media_files, monkeypatch
):
    old = alice_with_photo.photo.name
    _failing_photo_save(monkeypatch)
    client = Client(raise_request_exception=False)
    client.force_login(user)
    response = client.post(reverse("profile-edit"), {"photo": upload(images.photo(65))})
    assert response.status_code == 500  # the database is down: nothing to be done but say so
    assert media_files() == [old]
    assert Profile.objects.get(pk=alice_with_photo.pk).photo.name == old


def test_replacing_a_photo_deletes_the_old_file_only_after_commit(
    alice_with_photo, media_files, django_capture_on_commit_callbacks
):
    old = alice_with_photo.photo.name
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        profile_set_photo(profile=alice_with_photo, upload=upload(images.photo(66)))
        new = Profile.objects.get(pk=alice_with_photo.pk).photo.name
        assert sorted(media_files()) == sorted([old, new])  # not yet: not committed
    for callback in callbacks:
        callback()
    assert media_files() == [new]


def test_a_replacement_rolled_back_keeps_the_old_file(alice_with_photo, media_files):
    old = alice_with_photo.photo.name
    with pytest.raises(RuntimeError), transaction.atomic():
        profile_set_photo(profile=alice_with_photo, upload=upload(images.photo(67)))
        raise RuntimeError("the request failed later")
    assert Profile.objects.get(pk=alice_with_photo.pk).photo.name == old
    assert old in media_files()  # never deleted: its deletion waited for a commit that never came


# --- a stored photo whose file is missing -------------------------------------------------


def reindex() -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("reindex", stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def missing_photo(alice_with_photo) -> Profile:
    alice_with_photo.photo.storage.delete(alice_with_photo.photo.name)
    return alice_with_photo


def test_missing_file_is_reported_by_reindex_and_audited_once(missing_photo):
    out, err = reindex()
    assert f"missing file: profiles.profile #{missing_photo.pk}" in err
    reindex()  # found missing again: still one audit row
    event = AuditEvent.objects.get(action=AuditEvent.Action.MISSING)
    assert "alice" in event.target and missing_photo.photo.name in event.reason
    missing_photo.refresh_from_db()
    assert missing_photo.photo_missing_since is not None
    assert missing_photo.photo_dhash is not None  # the hash stays: it is still compared


def test_missing_photo_is_hidden_from_every_page(missing_photo, user, client):
    reindex()
    url = missing_photo.photo.url
    assert url not in client.get(reverse("home")).content.decode()
    detail = client.get(reverse("profile-detail", args=["alice"])).content.decode()
    assert url not in detail and "No photo" in detail
    client.force_login(user)
    edit = client.get(reverse("profile-edit")).content.decode()
    assert url not in edit and "could not be found" in edit


def test_missing_photo_is_still_taken_down_when_it_matches_a_flag(
    missing_photo, django_capture_on_commit_callbacks
):
    reindex()
    with django_capture_on_commit_callbacks(execute=True):
        flagging.flag_image(
            file=upload(images.photo(61), "same.png"),
            reason="same picture",
            source=FlaggedFingerprint.Source.COMMAND,
        )
    missing_photo.refresh_from_db()
    assert not missing_photo.photo  # a missing file never counts as "not banned"
    takedown = AuditEvent.objects.get(action=AuditEvent.Action.TAKEDOWN)
    assert "missing" in takedown.reason


def test_a_restored_file_is_shown_again_by_the_next_reindex(alice_with_photo):
    storage, name = alice_with_photo.photo.storage, alice_with_photo.photo.name
    with storage.open(name, "rb") as fh:
        backup = fh.read()
    storage.delete(name)
    reindex()
    assert not Profile.objects.get(pk=alice_with_photo.pk).photo_visible
    storage._save(name, ContentFile(backup))  # restored from a backup under the same name
    reindex()
    assert Profile.objects.get(pk=alice_with_photo.pk).photo_visible


def test_a_new_upload_clears_the_missing_mark(missing_photo, alice_client):
    reindex()
    assert alice_client.post(
        reverse("profile-edit"), {"display_name": "A", "photo": upload(images.photo(68))}
    ).status_code == 302
    assert Profile.objects.get(pk=missing_photo.pk).photo_visible


# --- PostgreSQL: real concurrency -----------------------------------------------------------


def _in_thread(target, results: list, errors: list):
    def run():
        try:
            results.append(target())
        except BaseException as e:  # noqa: BLE001 - reported by the test
            errors.append(e)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _waiting_for_advisory_locks() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        return cursor.fetchone()[0]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_moderators_flagging_the_same_image_at_once_make_one_fingerprint_two_audit_rows(
    django_user_model,
):
    from django.contrib.auth.models import Permission

    data = hostile.encoded(images.photo(71), "PNG")
    clients = []
    for name in ("mod1", "mod2"):
        mod = django_user_model.objects.create_user(username=name, is_staff=True)
        mod.user_permissions.add(Permission.objects.get(codename="flag_image"))
        c = Client()
        c.force_login(mod)
        clients.append(c)

    def flag(c, reason):
        def post():
            file = hostile_upload(data, "evil.png")
            return c.post(reverse(FLAG_IMAGE), {"image": file, "reason": reason}).status_code

        return post

    results: list = []
    errors: list = []
    # Hold the banned-set writers' lock so both requests line up at the same point, past every
    # check they make before it, then let them go at once.
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [banned_set.BANNED_SET_LOCK_KEY])
        threads = [_in_thread(flag(c, f"by {i}"), results, errors) for i, c in enumerate(clients)]
        for _ in range(200):
            if _waiting_for_advisory_locks() == 2:
                break
            threading.Event().wait(0.05)
        assert _waiting_for_advisory_locks() == 2, "both flags should be waiting together"
    for thread in threads:
        thread.join(30)

    assert errors == []
    assert sorted(results) == [302, 302]
    assert FlaggedFingerprint.objects.count() == 1
    # The banned set changed once: one log row per stored variant of the one flag.
    assert BannedSetChange.objects.count() == FlaggedFingerprint.objects.get().variants.count()
    flags = AuditEvent.objects.filter(action=AuditEvent.Action.FLAG)
    assert sorted(flags.values_list("reason", flat=True)) == ["by 0", "by 1"]
    assert {e.fingerprint_id for e in flags} == {FlaggedFingerprint.objects.get().pk}


def _flag_while_the_upload_is_uncommitted(monkeypatch, picture):
    """Make the flag commit after the upload passed its check and before the upload commits."""
    real = Profile.save
    flagged: list = []

    def save(self, *args, **kwargs):
        real(self, *args, **kwargs)
        if "photo" in (kwargs.get("update_fields") or ()) and not flagged:
            errors: list = []
            thread = _in_thread(
                lambda: flagging.flag_image(
                    file=hostile_upload(hostile.encoded(picture, "PNG"), "bad.png"),
                    reason="raced",
                    source=FlaggedFingerprint.Source.COMMAND,
                ),
                flagged,
                errors,
            )
            thread.join(30)
            assert errors == [] and flagged, errors

    monkeypatch.setattr(Profile, "save", save)
    return flagged


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_upload_racing_a_flag_of_the_same_picture_is_taken_down_after_commit(
    alice_client, user, media_files, monkeypatch
):
    picture = images.photo(72)
    flagged = _flag_while_the_upload_is_uncommitted(monkeypatch, picture)

    response = alice_client.post(
        reverse("profile-edit"), {"display_name": "Alice", "photo": upload(picture)}
    )

    assert response.status_code == 302  # the check passed: nothing was banned yet
    assert flagged, "the flag committed in the middle of the upload"
    profile = Profile.objects.get(user=user)
    assert not profile.photo  # ...and the post-commit recheck took it down
    takedown = AuditEvent.objects.get(action=AuditEvent.Action.TAKEDOWN)
    assert takedown.fingerprint == flagged[0].fingerprint and "alice" in takedown.target
    assert takedown.evidence  # kept in quarantine for review
    assert media_files() == []


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_without_the_recheck_the_flags_own_sweep_misses_the_racing_upload(
    alice_client, user, monkeypatch
):
    """The control: the window is real, and it is the recheck that closes it."""
    monkeypatch.setattr(photos, "recheck_after_commit", lambda instance: None)
    picture = images.photo(73)
    _flag_while_the_upload_is_uncommitted(monkeypatch, picture)

    alice_client.post(reverse("profile-edit"), {"display_name": "Alice", "photo": upload(picture)})

    assert Profile.objects.get(user=user).photo  # the sweep could not see the uncommitted row
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.TAKEDOWN).exists()


def test_a_file_the_re_encoding_cannot_decode_is_a_form_error_and_writes_nothing(
    alice_client, user, media_files, monkeypatch
):
    """Belt and braces: the form re-encodes the upload before it is checked; if that fails
    on a file the size checks let through, it is a coded form error and nothing is stored."""
    from django.core.exceptions import ValidationError

    from moderation.decoding import ERROR_MESSAGES
    from profiles import photos

    def fails(file):
        raise ValidationError(ERROR_MESSAGES["corrupt"], code="corrupt")

    monkeypatch.setattr(photos, "reencoded_photo", fails)  # what the form calls
    response = alice_client.post(
        reverse("profile-edit"), {"display_name": "A", "photo": upload(images.photo(69))}
    )
    assert response.status_code == 200
    assert [e.code for e in response.context["form"].errors.as_data()["photo"]] == ["corrupt"]
    assert media_files() == []
    assert not Profile.objects.get(user=user).photo
    assert RefusedUpload.objects.get().code == "corrupt"
