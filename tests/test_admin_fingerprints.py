"""The fingerprint admin: the changelist and its search and filters, read-only rows, the unflag
action, the "Flag an image" page, the read-only audit trail and the changelist's query count."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from moderation import flagging
from moderation.hashing import fingerprint
from moderation.models import AuditEvent, FlaggedFingerprint, quarantine_storage
from profiles.models import Profile
from tests import images
from tests.admin_pages import (
    FINGERPRINTS,
    FLAG_IMAGE,
    GENERIC,
    PROFILES,
    action_choices,
    confirm_unflag,
    flag_in_admin_upload,
    post_photo,
    run_action,
    user_client,
)
from tests.helpers import ban

pytestmark = pytest.mark.django_db


# --- FlaggedFingerprint admin -------------------------------------------------------------------


def test_fingerprint_changelist_shows_hex_hashes(admin_client):
    flagged = ban(images.photo(2))

    response = admin_client.get(reverse(FINGERPRINTS))

    assert f"<code>{flagged.hex}</code>" in response.content.decode()


@pytest.mark.parametrize("transform", [str.lower, str.upper], ids=["lower", "upper"])
def test_search_by_hex_hash_finds_the_fingerprint(admin_client, transform):
    wanted = ban(images.photo(2))
    other = ban(images.photo(20))
    assert wanted.dhash < 0  # top bit set: stored negative, still found by its hex

    response = admin_client.get(reverse(FINGERPRINTS), {"q": transform(wanted.hex)})

    assert list(response.context["cl"].result_list) == [wanted]
    assert other.hex not in response.content.decode()


def test_search_by_words_finds_the_reason(admin_client):
    wanted = ban(images.photo(2), reason="scam advert")
    ban(images.photo(20), reason="violence")

    response = admin_client.get(reverse(FINGERPRINTS), {"q": "advert"})

    assert list(response.context["cl"].result_list) == [wanted]


def test_filter_by_source(admin_client):
    from_command = ban(images.photo(2), source=FlaggedFingerprint.Source.COMMAND)
    ban(images.photo(20), source=FlaggedFingerprint.Source.ADMIN_UPLOAD)

    response = admin_client.get(reverse(FINGERPRINTS), {"source__exact": "command"})

    assert list(response.context["cl"].result_list) == [from_command]


def test_filter_by_active(admin_client):
    active = ban(images.photo(2))
    inactive = ban(images.photo(20))
    flagging.unflag_fingerprint(flagged=inactive, reason="mistake")

    yes = admin_client.get(reverse(FINGERPRINTS), {"active__exact": "1"})
    no = admin_client.get(reverse(FINGERPRINTS), {"active__exact": "0"})

    assert list(yes.context["cl"].result_list) == [active]
    assert list(no.context["cl"].result_list) == [inactive]


def test_fingerprints_cannot_be_added_in_the_admin(admin_client):
    assert admin_client.get(reverse("admin:moderation_flaggedfingerprint_add")).status_code == 403


def test_fingerprints_cannot_be_changed_in_the_admin(admin_client):
    flagged = ban(images.photo(2), reason="original reason")
    url = reverse("admin:moderation_flaggedfingerprint_change", args=[flagged.pk])

    page = admin_client.get(url)
    response = admin_client.post(url, {"reason": "edited", "active": ""})

    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert response.status_code == 403
    flagged.refresh_from_db()
    assert flagged.reason == "original reason"
    assert flagged.active


def test_fingerprints_cannot_be_deleted_in_the_admin(admin_client):
    flagged = ban(images.photo(2))
    url = reverse("admin:moderation_flaggedfingerprint_delete", args=[flagged.pk])

    assert admin_client.post(url, {"post": "yes"}).status_code == 403
    changelist = admin_client.get(reverse(FINGERPRINTS))
    assert "delete_selected" not in action_choices(changelist)
    run_action(admin_client, FINGERPRINTS, "delete_selected", [flagged], post="yes")
    assert FlaggedFingerprint.objects.filter(pk=flagged.pk).exists()


def test_unflag_action_asks_for_a_reason_first(moderator_client):
    flagged = ban(images.photo(2))

    response = run_action(moderator_client, FINGERPRINTS, "unflag_selected", [flagged])

    assert response.status_code == 200
    assert "admin/moderation/unflag_confirmation.html" in [t.name for t in response.templates]
    assert flagged.hex in response.content.decode()
    flagged.refresh_from_db()
    assert flagged.active
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.UNFLAG).exists()


def test_unflag_confirmation_links_each_original_through_the_quarantine_view(moderator_client):
    flagged = flag_in_admin_upload(images.photo(2))

    response = run_action(moderator_client, FINGERPRINTS, "unflag_selected", [flagged])

    page = response.content.decode()
    assert reverse("moderation:quarantined-file", args=[flagged.original.name]) in page
    assert f"/media/{flagged.original.name}" not in page
    with pytest.raises(NotImplementedError):
        quarantine_storage().url(flagged.original.name)  # quarantine has no URL to leak


def test_unflag_confirmation_says_which_fingerprints_are_already_unflagged(moderator_client):
    active = ban(images.photo(2))
    inactive = ban(images.photo(20))
    flagging.unflag_fingerprint(flagged=inactive, reason="mistake")

    response = run_action(moderator_client, FINGERPRINTS, "unflag_selected", [active, inactive])

    page = response.content.decode()
    assert page.count("already unflagged") == 1
    assert page.index(inactive.hex) < page.index("already unflagged")


def test_unflag_action_without_reason_shows_form_error_and_unflags_nothing(moderator_client):
    flagged = ban(images.photo(2))

    response = confirm_unflag(moderator_client, [flagged], reason="")

    assert response.status_code == 200
    assert response.context["form"].errors["reason"]
    flagged.refresh_from_db()
    assert flagged.active


def test_unflag_action_deactivates_without_deleting(moderator_client, moderator):
    flagged = ban(images.photo(2))

    response = confirm_unflag(moderator_client, [flagged])

    assert response.status_code == 302
    flagged.refresh_from_db()
    assert not flagged.active
    assert flagged.unflagged_by == moderator
    assert FlaggedFingerprint.objects.count() == 1


def test_unflag_action_writes_an_audit_row(moderator_client, moderator):
    flagged = ban(images.photo(2))

    confirm_unflag(moderator_client, [flagged], reason="was a mistake")

    event = AuditEvent.objects.get(action=AuditEvent.Action.UNFLAG)
    assert (event.fingerprint, event.actor, event.reason) == (flagged, moderator, "was a mistake")


def test_image_can_be_uploaded_again_after_unflag(moderator_client, user):
    original = images.photo(2)
    flagged = ban(original)
    alice = user_client(user)
    assert GENERIC in post_photo(alice, original).content.decode()

    confirm_unflag(moderator_client, [flagged])

    assert post_photo(alice, original).status_code == 302
    assert Profile.objects.get(user=user).photo


# --- "Flag an image" page -----------------------------------------------------------------------


def test_fingerprint_changelist_links_to_the_flag_image_page(moderator_client):
    response = moderator_client.get(reverse(FINGERPRINTS))

    assert reverse(FLAG_IMAGE) in response.content.decode()


def test_flag_image_page_shows_the_upload_form(moderator_client):
    response = moderator_client.get(reverse(FLAG_IMAGE))

    assert response.status_code == 200
    page = response.content.decode()
    assert 'enctype="multipart/form-data"' in page
    assert 'name="image"' in page and 'name="reason"' in page


def test_flag_image_page_bans_the_uploaded_image(moderator_client, moderator, quarantine_files):
    upload = images.upload(images.photo(2), "evil.png", "PNG")
    expected = fingerprint(images.upload(images.photo(2), "evil.png", "PNG"))

    response = moderator_client.post(reverse(FLAG_IMAGE), {"image": upload, "reason": "scam"})

    assert response.status_code == 302
    assert response["Location"] == reverse(FINGERPRINTS)
    flagged = FlaggedFingerprint.objects.get()
    assert flagged.hex == expected.hex
    assert flagged.source == FlaggedFingerprint.Source.ADMIN_UPLOAD
    assert flagged.flagged_by == moderator
    assert flagged.reason == "scam"
    assert quarantine_files() == [flagged.original.name]
    assert "evil" not in flagged.original.name
    event = AuditEvent.objects.get()
    assert (event.action, event.actor, event.fingerprint) == (
        AuditEvent.Action.FLAG,
        moderator,
        flagged,
    )


def test_image_flagged_on_the_page_is_refused_on_upload(moderator_client, user):
    original = images.photo(2)
    moderator_client.post(
        reverse(FLAG_IMAGE), {"image": images.upload(original, "x.png", "PNG"), "reason": "x"}
    )

    response = post_photo(user_client(user), images.resized(original, 0.5))

    assert GENERIC in response.content.decode()


def test_flag_image_page_refuses_a_non_image_and_writes_nothing(moderator_client, quarantine_files):
    junk = SimpleUploadedFile("evil.jpg", b"GIF89a but not really an image", "image/jpeg")

    response = moderator_client.post(reverse(FLAG_IMAGE), {"image": junk, "reason": "scam"})

    assert response.status_code == 200
    assert response.context["form"].errors["image"]
    assert not FlaggedFingerprint.objects.exists()
    assert not AuditEvent.objects.exists()
    assert quarantine_files() == []


def test_flag_image_page_requires_a_reason(moderator_client, quarantine_files):
    upload = images.upload(images.photo(2), "evil.png", "PNG")

    response = moderator_client.post(reverse(FLAG_IMAGE), {"image": upload, "reason": ""})

    assert response.status_code == 200
    assert response.context["form"].errors["reason"]
    assert not FlaggedFingerprint.objects.exists()
    assert quarantine_files() == []


def test_flagging_the_same_image_twice_keeps_one_fingerprint_and_two_audit_rows(
    moderator_client,
):
    for reason in ("first", "second"):
        moderator_client.post(
            reverse(FLAG_IMAGE),
            {"image": images.upload(images.photo(2), "evil.png", "PNG"), "reason": reason},
        )

    assert FlaggedFingerprint.objects.count() == 1
    flags = AuditEvent.objects.filter(action=AuditEvent.Action.FLAG)
    assert sorted(flags.values_list("reason", flat=True)) == ["first", "second"]
    assert {e.fingerprint_id for e in flags} == {FlaggedFingerprint.objects.get().pk}


def test_flag_image_page_sweeps_existing_matching_photos(
    moderator_client, make_profile, django_capture_on_commit_callbacks
):
    original = images.photo(3)
    profile = make_profile("bob", images.resized(original, 0.8))

    with django_capture_on_commit_callbacks(execute=True):
        moderator_client.post(
            reverse(FLAG_IMAGE),
            {"image": images.upload(original, "x.png", "PNG"), "reason": "scam"},
        )

    profile.refresh_from_db()
    assert not profile.photo


def test_audit_events_are_read_only_even_for_a_superuser(admin_client):
    ban(images.photo(2))
    event = AuditEvent.objects.get()
    change_url = reverse("admin:moderation_auditevent_change", args=[event.pk])

    changelist = admin_client.get(reverse("admin:moderation_auditevent_changelist"))
    add = admin_client.get(reverse("admin:moderation_auditevent_add"))
    change_page = admin_client.get(change_url)
    change = admin_client.post(change_url, {"reason": "rewritten", "action": "unflag"})
    delete = admin_client.post(
        reverse("admin:moderation_auditevent_delete", args=[event.pk]), {"post": "yes"}
    )

    assert changelist.status_code == 200
    assert "delete_selected" not in action_choices(changelist)
    assert add.status_code == 403
    assert 'name="_save"' not in change_page.content.decode()
    assert change.status_code == 403
    assert delete.status_code == 403
    event.refresh_from_db()
    assert (event.action, event.reason) == (AuditEvent.Action.FLAG, "test ban")


def test_audit_event_page_links_evidence_only_through_the_quarantine_view(
    admin_client, make_profile
):
    profile = make_profile("alice", images.photo(1))
    flagging.flag_stored_image(instance=profile, reason="x")
    event = AuditEvent.objects.get(action=AuditEvent.Action.TAKEDOWN)
    name = event.evidence.name

    for url in (
        reverse("admin:moderation_auditevent_changelist"),
        reverse("admin:moderation_auditevent_change", args=[event.pk]),
    ):
        page = admin_client.get(url).content.decode()
        assert reverse("moderation:quarantined-file", args=[name]) in page
        assert f"/media/{name}" not in page


def test_fingerprint_page_links_the_original_only_through_the_quarantine_view(admin_client):
    flagged = flag_in_admin_upload(images.photo(2))
    name = flagged.original.name

    for url in (
        reverse(FINGERPRINTS),
        reverse("admin:moderation_flaggedfingerprint_change", args=[flagged.pk]),
    ):
        page = admin_client.get(url).content.decode()
        assert reverse("moderation:quarantined-file", args=[name]) in page
        assert f"/media/{name}" not in page


def changelist_queries(client, url_name) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(reverse(url_name)).status_code == 200
    return len(queries)


@pytest.mark.parametrize(
    "url_name", [PROFILES, FINGERPRINTS, "admin:moderation_auditevent_changelist"]
)
def test_changelist_query_count_does_not_grow_with_rows(
    admin_client, moderator, make_profile, url_name
):
    def add_rows(seeds):
        for seed in seeds:
            profile = make_profile(f"user{seed}", images.photo(seed))
            flagging.flag_stored_image(instance=profile, reason="x", actor=moderator)
            make_profile(f"kept{seed}", images.photo(seed + 100))

    add_rows([1])
    few = changelist_queries(admin_client, url_name)
    add_rows([2, 3, 4])
    assert changelist_queries(admin_client, url_name) == few


SUSPENDED_HELP = "Deactivated automatically because moderators dismissed too many"


def test_a_flag_that_is_not_suspended_shows_no_suspension_explanation(admin_client):
    flagged = ban(images.photo(611))

    html = admin_client.get(
        reverse("admin:moderation_flaggedfingerprint_change", args=[flagged.pk])
    ).content.decode()

    assert "field-suspension" in html and SUSPENDED_HELP not in html


def test_a_suspended_flag_says_it_is_suspended_and_why(admin_client):
    flagged = ban(images.photo(612))
    FlaggedFingerprint.objects.filter(pk=flagged.pk).update(suspended=True, active=False)

    html = admin_client.get(
        reverse("admin:moderation_flaggedfingerprint_change", args=[flagged.pk])
    ).content.decode()

    assert SUSPENDED_HELP in html and "<strong>Yes</strong>" in html
