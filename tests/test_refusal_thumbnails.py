"""A refusal by a match keeps a small thumbnail of the refused picture in its row: nothing is
written to storage, the thumbnail is made from the upload's own decode, it is served only to
staff who may view quarantine (blurred on the refusal's page and an appeal's, beside what it
matched), and the keep period's purge empties it."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from moderation import appeals, notices
from moderation.hashing import fingerprint
from moderation.models import Appeal, Notice, RefusedUpload
from moderation.thumbnails import THUMBNAIL_MAX_SIDE
from profiles.models import Profile
from tests import images
from tests.helpers import ban, moderator_client, post_photo, run_command

pytestmark = pytest.mark.django_db

SCENE = 1801


@pytest.fixture
def refused(client, user):
    """Alice uploads a copy of a banned picture (a big JPEG, as from a phone): refused."""
    flagged = ban(images.photo(SCENE))
    client.force_login(user)
    big = images.resized(images.photo(SCENE), 3.0)  # 1920 px wide
    response = post_photo(client, big)
    assert response.status_code == 200  # refused, the form shown again
    return RefusedUpload.objects.get(), flagged


def thumbnail_url(refusal: RefusedUpload) -> str:
    return reverse("moderation:refusal-thumbnail", args=[refusal.pk])


def tree(root) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes: a refusal must leave it exactly as it was."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


# --- what is kept ---------------------------------------------------------------------------


def test_a_refusal_by_a_match_keeps_a_small_jpeg_of_the_refused_picture(refused):
    refusal, flagged = refused
    data = bytes(refusal.thumbnail)
    with Image.open(io.BytesIO(data)) as thumb:
        assert thumb.format == "JPEG"
        assert max(thumb.size) == THUMBNAIL_MAX_SIDE
        assert thumb.size[0] > thumb.size[1]  # the picture's own proportions (landscape)
        assert not thumb.info.get("exif") and not thumb.info.get("comment")
    assert len(data) < 12_000  # a few KB, for a row
    # It is the refused picture: its fingerprint is the banned one's, near enough.
    assert fingerprint(io.BytesIO(data)).distance(flagged.fingerprint) <= 8


def test_a_refusal_writes_nothing_to_storage_and_keeps_the_previous_photo(
    client, user, isolated_storage
):
    client.force_login(user)
    assert post_photo(client, images.photo(SCENE + 1)).status_code == 302
    before_photo = Profile.objects.get(user=user).photo.name
    ban(images.photo(SCENE))
    before = tree(isolated_storage / "media"), tree(isolated_storage / "quarantine")

    assert post_photo(client, images.photo(SCENE)).status_code == 200

    assert RefusedUpload.objects.get().thumbnail is not None
    assert (tree(isolated_storage / "media"), tree(isolated_storage / "quarantine")) == before
    assert Profile.objects.get(user=user).photo.name == before_photo


def test_the_thumbnail_is_made_from_the_uploads_own_decode_not_a_second_one(
    client, user, monkeypatch
):
    from moderation import decoding
    from moderation.screening import screened_upload
    from profiles.photos import reencode_photo

    ban(images.photo(SCENE))
    upload = images.encode(images.photo(SCENE), "JPEG", quality=90)
    decodes: list = []
    real_decode = decoding._decode

    def counting(*args, **kwargs):
        decodes.append(kwargs.get("draft_mode"))
        return real_decode(*args, **kwargs)

    # What a refusal decodes without a thumbnail: the re-encoding, then the screening's own.
    content = reencode_photo(SimpleUploadedFile("p.jpg", upload)).read()
    monkeypatch.setattr(decoding, "_decode", counting)
    assert screened_upload(SimpleUploadedFile("p.jpg", upload), content).thumbnail == b""
    without = [None, *decodes]
    decodes.clear()

    client.force_login(user)
    assert post_photo(client, upload).status_code == 200

    assert RefusedUpload.objects.get().thumbnail is not None
    assert decodes == without


def test_an_accepted_upload_makes_no_thumbnail(client, user, monkeypatch):
    from moderation import screening

    made = []
    real = screening.thumbnail_jpeg
    monkeypatch.setattr(screening, "thumbnail_jpeg", lambda pic: made.append(1) or real(pic))
    ban(images.photo(SCENE))
    client.force_login(user)
    assert post_photo(client, images.photo(SCENE + 2)).status_code == 302
    assert made == []
    assert post_photo(client, images.photo(SCENE)).status_code == 200
    assert made == [1]


def test_a_file_refused_as_unreadable_keeps_no_thumbnail(client, user, moderator):
    client.force_login(user)
    post_photo(client, b"\xff\xd8\xff not really a jpeg")
    refusal = RefusedUpload.objects.get()
    assert refusal.code != "banned_image" and refusal.thumbnail is None
    page = moderator_client(moderator).get(
        reverse("admin:moderation_refusedupload_change", args=[refusal.pk])
    )
    assert page.status_code == 200 and thumbnail_url(refusal) not in page.content.decode()
    assert moderator_client(moderator).get(thumbnail_url(refusal)).status_code == 404


# --- who may see it -------------------------------------------------------------------------


def test_the_thumbnail_is_served_privately_as_jpeg_to_staff_who_may_view_quarantine(
    refused, moderator
):
    refusal, _flagged = refused
    response = moderator_client(moderator).get(thumbnail_url(refusal))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert response["Cache-Control"] == "private, no-store"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response.content == bytes(refusal.thumbnail)


def test_the_thumbnail_is_refused_to_staff_without_the_quarantine_permission(
    refused, staff_with
):
    refusal, _flagged = refused
    client = staff_with("moderation.view_refusedupload", "moderation.view_flaggedfingerprint")
    response = client.get(thumbnail_url(refusal))
    assert response.status_code == 403
    assert bytes(refusal.thumbnail) not in response.content
    page = client.get(reverse("admin:moderation_refusedupload_change", args=[refusal.pk]))
    assert page.status_code == 200 and thumbnail_url(refusal) not in page.content.decode()


@pytest.mark.parametrize("who", ["anonymous", "the uploader", "another user"])
def test_the_thumbnail_is_never_served_to_anyone_not_staff(
    refused, client, user, who, django_user_model
):
    refusal, _flagged = refused
    client.logout()
    if who == "the uploader":
        client.force_login(user)
    elif who == "another user":
        client.force_login(django_user_model.objects.create_user(username="bo", password="pw"))
    response = client.get(thumbnail_url(refusal))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    assert bytes(refusal.thumbnail) not in response.content


# --- shown beside what it matched -----------------------------------------------------------


def test_the_refusals_page_shows_the_thumbnail_beside_the_matched_original_both_blurred(
    refused, moderator
):
    refusal, flagged = refused
    page = moderator_client(moderator).get(
        reverse("admin:moderation_refusedupload_change", args=[refusal.pk])
    )
    html = page.content.decode()
    original = reverse("moderation:quarantined-file", args=[flagged.original.name])
    assert f'<img class="mod-img mod-size-240" src="{thumbnail_url(refusal)}"' in html
    assert f'<img class="mod-img mod-size-240" src="{original}"' in html
    assert html.index('id="refused-picture"') < html.index('id="matched-original"')


def test_the_evidence_of_an_appealed_refusal_is_its_thumbnail_beside_the_original(
    refused, user, moderator
):
    refusal, flagged = refused
    notice = Notice.objects.get(refused_upload=refusal)
    appeal = appeals.file_appeal(notice=notice, user=user, text="That is my dog.")
    html = (
        moderator_client(moderator)
        .get(reverse("admin:moderation_appeal_change", args=[appeal.pk]))
        .content.decode()
    )
    original = reverse("moderation:quarantined-file", args=[flagged.original.name])
    assert f'<img class="mod-img" src="{thumbnail_url(refusal)}"' in html
    assert f'<img class="mod-img" src="{original}"' in html
    assert "<style>" not in html  # the page's CSS is in admin.css (CSP blocks inline styles)


# --- purged with the kept copies ------------------------------------------------------------


def test_the_purge_empties_a_thumbnail_after_the_keep_period_and_not_before(refused, settings):
    settings.MODERATION_TAKEDOWN_KEEP_DAYS = 30
    refusal, _flagged = refused
    assert notices.purge_refusal_thumbnails(now=timezone.now() + timedelta(days=29)) == 0
    refusal.refresh_from_db()
    assert refusal.thumbnail is not None
    assert notices.purge_refusal_thumbnails(now=timezone.now() + timedelta(days=31)) == 1
    refusal.refresh_from_db()
    assert refusal.thumbnail is None
    assert refusal.nearest_id is not None and refusal.dhash is not None  # the record stays
    assert notices.purge_refusal_thumbnails(now=timezone.now() + timedelta(days=31)) == 0


def test_the_purge_task_and_command_empty_thumbnails_and_the_view_then_answers_404(
    refused, settings, moderator
):
    settings.MODERATION_TAKEDOWN_KEEP_DAYS = 1
    refusal, _flagged = refused
    RefusedUpload.objects.update(created_at=timezone.now() - timedelta(days=2))
    assert "1 refusal thumbnail is due" in run_command("purge_kept_takedowns", dry_run=True)
    notices.purge_kept_takedowns_task.call()
    assert RefusedUpload.objects.get().thumbnail is None
    assert moderator_client(moderator).get(thumbnail_url(refusal)).status_code == 404
    assert "Emptied 0 refusal thumbnails." in run_command("purge_kept_takedowns")
    page = moderator_client(moderator).get(
        reverse("admin:moderation_refusedupload_change", args=[refusal.pk])
    )
    assert "its keep period is over" in page.content.decode()


def test_an_open_appeal_keeps_the_thumbnail_past_the_keep_period(refused, user, settings):
    settings.MODERATION_TAKEDOWN_KEEP_DAYS = 1
    refusal, _flagged = refused
    notice = Notice.objects.get(refused_upload=refusal)
    appeal = appeals.file_appeal(notice=notice, user=user, text="Mine.")
    later = timezone.now() + timedelta(days=5)
    assert notices.purge_refusal_thumbnails(now=later) == 0
    Appeal.objects.filter(pk=appeal.pk).update(status=Appeal.Status.UPHELD)
    assert notices.purge_refusal_thumbnails(now=later) == 1


def test_with_a_worker_backend_a_refusal_queues_the_purge_for_the_end_of_its_keep_period(
    client, user, settings
):
    from django_tasks_db.models import DBTaskResult

    settings.TASKS = {
        "default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}
    }
    settings.MODERATION_TAKEDOWN_KEEP_DAYS = 10
    ban(images.photo(SCENE))
    client.force_login(user)
    post_photo(client, images.photo(SCENE))
    refusal = RefusedUpload.objects.get()
    [queued] = DBTaskResult.objects.filter(
        task_path=notices.purge_kept_takedowns_task.module_path, status="READY"
    )
    assert queued.run_after == refusal.created_at + timedelta(days=10)
