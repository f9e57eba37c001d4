"""The moderator's side in the admin: flag photos, flag an uploaded image, unflag, audit, perms."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from moderation import banned_set, flagging
from moderation.hashing import Fingerprint, fingerprint
from moderation.models import AuditEvent, FlaggedFingerprint, quarantine_storage
from profiles.models import Profile
from profiles.photos import profile_set_photo
from tests import images
from tests.helpers import ban

pytestmark = pytest.mark.django_db

GENERIC = "This image can&#x27;t be used as a profile photo."

PROFILES = "admin:profiles_profile_changelist"
FINGERPRINTS = "admin:moderation_flaggedfingerprint_changelist"
FLAG_IMAGE = "admin:moderation_flaggedfingerprint_flag_image"


# --- fixtures and helpers -------------------------------------------------------------------


@pytest.fixture
def staff_with(django_user_model):
    """A callable: a logged-in client for a staff user holding exactly the given permissions."""

    def make(*perms: str, username: str = "staff") -> Client:
        user = django_user_model.objects.create_user(
            username=username, password=f"pw-{username}", is_staff=True
        )
        for perm in perms:
            app_label, codename = perm.split(".")
            user.user_permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )
        client = Client()
        client.force_login(user)
        return client

    return make


@pytest.fixture
def moderator_client(moderator):
    client = Client()
    client.force_login(moderator)
    return client


@pytest.fixture
def quarantine_files(isolated_storage):
    """A callable listing every file in quarantine storage (relative paths)."""

    def list_files() -> list[str]:
        root = isolated_storage / "quarantine"
        if not root.exists():
            return []
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

    return list_files


def run_action(client, url_name, action, objects, **extra):
    data = {"action": action, ACTION_CHECKBOX_NAME: [obj.pk for obj in objects], **extra}
    return client.post(reverse(url_name), data)


class _HiddenInputs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, list[str]] = {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "input" and attrs.get("type") == "hidden" and attrs.get("name"):
            self.data.setdefault(attrs["name"], []).append(attrs.get("value") or "")


def hidden_inputs(response) -> dict[str, list[str]]:
    """The hidden fields of a page, as a browser would submit them."""
    parser = _HiddenInputs()
    parser.feed(response.content.decode())
    return parser.data


def submit_confirmation(client, url_name, page, reason):
    """Submit a confirmation page's form with ``reason`` filled in."""
    assert page.status_code == 200
    return client.post(reverse(url_name), {**hidden_inputs(page), "reason": reason})


def confirm_flag(client, profiles, reason="spam"):
    """Run "Flag selected photos" the way a moderator does: action, then its confirmation page."""
    page = run_action(client, PROFILES, "flag_selected_photos", profiles)
    return submit_confirmation(client, PROFILES, page, reason)


def forge_flag(client, profiles, reason="spam"):
    """A hand-made confirmation POST, with every field the real page would have sent."""
    photos = {f"photo-{p.pk}": p.photo.name for p in profiles}
    return run_action(
        client, PROFILES, "flag_selected_photos", profiles, confirm="yes", reason=reason, **photos
    )


def confirm_unflag(client, fingerprints, reason="was a mistake"):
    page = run_action(client, FINGERPRINTS, "unflag_selected", fingerprints)
    return submit_confirmation(client, FINGERPRINTS, page, reason)


def forge_unflag(client, fingerprints, reason="was a mistake"):
    return run_action(
        client, FINGERPRINTS, "unflag_selected", fingerprints, confirm="yes", reason=reason
    )


def messages_of(response) -> list[str]:
    return [str(m) for m in response.wsgi_request._messages]



def flag_in_admin_upload(img, reason="test ban"):
    """A fingerprint flagged as on the "Flag an image" page, so its original is kept."""
    return ban(img, reason=reason, source=FlaggedFingerprint.Source.ADMIN_UPLOAD)


def action_choices(response) -> list[str]:
    action_form = response.context["action_form"]
    return [] if action_form is None else [c[0] for c in action_form.fields["action"].choices]


def user_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def post_photo(client, img, name="me.jpg"):
    return client.post(
        reverse("profile-edit"), {"display_name": "", "photo": images.upload(img, name)}
    )


# --- Profile admin: thumbnails and "Flag selected photos" -------------------------------------


def test_profile_changelist_shows_photo_thumbnails(admin_client, make_profile):
    profile = make_profile("alice", images.photo(1))

    response = admin_client.get(reverse(PROFILES))

    assert response.status_code == 200
    assert f'<img src="{profile.photo.url}"' in response.content.decode()


def test_flag_action_asks_for_confirmation_and_flags_nothing_yet(moderator_client, make_profile):
    profile = make_profile("alice", images.photo(1))

    response = run_action(moderator_client, PROFILES, "flag_selected_photos", [profile])

    assert response.status_code == 200
    assert "admin/profiles/profile/flag_confirmation.html" in [t.name for t in response.templates]
    page = response.content.decode()
    assert profile.photo.url in page
    assert 'name="reason"' in page
    assert not FlaggedFingerprint.objects.exists()
    profile.refresh_from_db()
    assert profile.photo


def test_flag_action_confirmation_lists_profiles_without_photo_as_skipped(
    moderator_client, make_profile
):
    with_photo = make_profile("alice", images.photo(1))
    without = make_profile("bob")

    response = run_action(moderator_client, PROFILES, "flag_selected_photos", [with_photo, without])

    assert response.context["without_photo"] == 1
    assert list(response.context["profiles"]) == [with_photo]


def test_flag_action_with_reason_bans_the_photo_as_the_moderator(
    moderator_client, moderator, make_profile
):
    profile = make_profile("alice", images.photo(1))
    stored_hex = Fingerprint.from_signed(profile.photo_dhash).hex

    response = confirm_flag(moderator_client, [profile], reason="spam")

    assert response.status_code == 302
    assert response["Location"] == reverse(PROFILES)
    flagged = FlaggedFingerprint.objects.get()
    assert flagged.hex == stored_hex
    assert flagged.source == FlaggedFingerprint.Source.PROFILE_PHOTO
    assert flagged.flagged_by == moderator
    assert flagged.reason == "spam"
    assert flagged.active


def test_flag_action_takes_the_photo_off_the_profile(moderator_client, make_profile):
    profile = make_profile("alice", images.photo(1))

    confirm_flag(moderator_client, [profile])

    profile.refresh_from_db()
    assert not profile.photo
    assert profile.photo_dhash is None


def test_flag_action_deletes_the_public_file_after_commit(
    moderator_client, make_profile, media_files, django_capture_on_commit_callbacks
):
    profile = make_profile("alice", images.photo(1))
    assert media_files() == [profile.photo.name]

    with django_capture_on_commit_callbacks(execute=True):
        confirm_flag(moderator_client, [profile])

    assert media_files() == []


def test_flag_action_keeps_the_original_in_quarantine_linked_from_the_fingerprint(
    moderator_client, make_profile, quarantine_files
):
    profile = make_profile("alice", images.photo(1))
    public_bytes = profile.photo.read()
    profile.photo.close()

    confirm_flag(moderator_client, [profile])

    flagged = FlaggedFingerprint.objects.get()
    assert flagged.original.name in quarantine_files()
    with quarantine_storage().open(flagged.original.name, "rb") as fh:
        assert fh.read() == public_bytes
    changelist = moderator_client.get(reverse(FINGERPRINTS)).content.decode()
    assert reverse("moderation:quarantined-file", args=[flagged.original.name]) in changelist


def test_flag_action_writes_flag_and_takedown_audit_rows(moderator_client, moderator, make_profile):
    profile = make_profile("alice", images.photo(1))

    confirm_flag(moderator_client, [profile], reason="spam")

    flagged = FlaggedFingerprint.objects.get()
    rows = AuditEvent.objects.filter(fingerprint=flagged).values_list("action", "actor", "reason")
    assert sorted(rows) == [
        (AuditEvent.Action.FLAG, moderator.pk, "spam"),
        (AuditEvent.Action.TAKEDOWN, moderator.pk, "spam"),
    ]


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda img: images.resized(img, 0.6), id="resized"),
        pytest.param(lambda img: images.recompressed(img, 45), id="recompressed"),
        pytest.param(lambda img: images.recompressed(images.resized(img, 0.75), 60), id="both"),
    ],
)
def test_user_cannot_upload_an_edited_copy_of_a_flagged_photo_again(
    moderator_client, user, edit, django_capture_on_commit_callbacks
):
    original = images.photo(1)
    alice = user_client(user)
    with django_capture_on_commit_callbacks(execute=True):
        post_photo(alice, original)
    profile = Profile.objects.get(user=user)
    with django_capture_on_commit_callbacks(execute=True):
        confirm_flag(moderator_client, [profile])

    response = post_photo(alice, edit(original))

    assert response.status_code == 200
    assert GENERIC in response.content.decode()
    profile.refresh_from_db()
    assert not profile.photo


def test_flag_action_without_reason_shows_form_error_and_flags_nothing(
    moderator_client, make_profile, media_files
):
    profile = make_profile("alice", images.photo(1))

    response = confirm_flag(moderator_client, [profile], reason="")

    assert response.status_code == 200
    assert response.context["form"].errors["reason"]
    assert not FlaggedFingerprint.objects.exists()
    assert not AuditEvent.objects.exists()
    profile.refresh_from_db()
    assert profile.photo
    assert media_files() == [profile.photo.name]


def test_flag_action_can_be_confirmed_from_the_page_reshown_after_a_missing_reason(
    moderator_client, make_profile
):
    profile = make_profile("alice", images.photo(1))
    reshown = confirm_flag(moderator_client, [profile], reason="")

    response = submit_confirmation(moderator_client, PROFILES, reshown, "spam")

    assert response.status_code == 302
    assert FlaggedFingerprint.objects.get().reason == "spam"


def test_flag_action_does_not_flag_a_photo_replaced_after_the_confirmation_page(
    moderator_client, make_profile, quarantine_files
):
    profile = make_profile("alice", images.photo(1))
    page = run_action(moderator_client, PROFILES, "flag_selected_photos", [profile])
    profile_set_photo(profile=profile, upload=images.upload(images.photo(31)))  # alice, meanwhile
    replacement = profile.photo.name

    response = submit_confirmation(moderator_client, PROFILES, page, "spam")

    assert not FlaggedFingerprint.objects.exists()
    assert quarantine_files() == []
    profile.refresh_from_db()
    assert profile.photo.name == replacement
    assert "1 photo changed after you confirmed and was not flagged." in messages_of(response)


def test_flag_action_does_not_flag_a_photo_added_after_the_confirmation_page(
    moderator_client, make_profile
):
    shown = make_profile("alice", images.photo(1))
    empty = make_profile("bob")
    page = run_action(moderator_client, PROFILES, "flag_selected_photos", [shown, empty])
    profile_set_photo(profile=empty, upload=images.upload(images.photo(31)))  # bob, meanwhile

    response = submit_confirmation(moderator_client, PROFILES, page, "spam")

    flagged = FlaggedFingerprint.objects.get()
    assert "alice" in flagged.audit_events.get(action=AuditEvent.Action.FLAG).target
    empty.refresh_from_db()
    assert empty.photo
    assert "1 photo changed after you confirmed and was not flagged." in messages_of(response)


def test_flag_action_reports_how_many_photos_it_flagged(moderator_client, make_profile):
    profiles = [make_profile("alice", images.photo(1)), make_profile("bob", images.photo(30))]

    response = confirm_flag(moderator_client, profiles)

    messages = messages_of(response)
    assert messages == ["Flagged 2 photos; matching photos elsewhere are being taken down."]
    assert FlaggedFingerprint.objects.count() == 2


def test_flag_action_reports_a_photo_missing_from_storage_and_flags_the_rest(
    moderator_client, make_profile, quarantine_files
):
    broken = make_profile("alice", images.photo(1))
    fine = make_profile("bob", images.photo(30))
    broken.photo.storage.delete(broken.photo.name)

    response = confirm_flag(moderator_client, [broken, fine])

    messages = messages_of(response)
    assert "1 photo could not be read and was not flagged." in messages
    flagged = FlaggedFingerprint.objects.get()
    assert flagged.hex == Fingerprint.from_signed(fine.photo_dhash).hex
    assert quarantine_files() == [flagged.original.name]
    broken.refresh_from_db()
    assert broken.photo  # nothing was changed for the unreadable one


def test_flag_action_sweeps_a_near_duplicate_on_another_profile(
    moderator_client, make_profile, settings, django_capture_on_commit_callbacks
):
    original = images.photo(3)
    flagged_profile = make_profile("alice", original)
    copy_profile = make_profile("bob", images.recompressed(images.resized(original, 0.7), 60))
    unrelated = make_profile("carol", images.photo(40))

    with django_capture_on_commit_callbacks(execute=True):
        confirm_flag(moderator_client, [flagged_profile])

    copy_profile.refresh_from_db()
    unrelated.refresh_from_db()
    assert not copy_profile.photo
    assert unrelated.photo
    takedown = AuditEvent.objects.get(action=AuditEvent.Action.TAKEDOWN, target__contains="bob")
    assert takedown.fingerprint == FlaggedFingerprint.objects.get()
    assert takedown.distance is not None
    assert 0 <= takedown.distance <= settings.MODERATION_MAX_DISTANCE
    assert not AuditEvent.objects.filter(target__contains="carol").exists()


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


# --- permissions --------------------------------------------------------------------------------


def test_staff_without_flag_permission_does_not_see_the_flag_action(staff_with, make_profile):
    make_profile("alice", images.photo(1))
    client = staff_with("profiles.view_profile", "profiles.change_profile")

    response = client.get(reverse(PROFILES))

    assert response.status_code == 200
    assert "flag_selected_photos" not in action_choices(response)
    assert "flag_selected_photos" not in response.content.decode()


def test_staff_without_flag_permission_cannot_run_the_flag_action(staff_with, make_profile):
    profile = make_profile("alice", images.photo(1))
    client = staff_with("profiles.view_profile", "profiles.change_profile")

    run_action(client, PROFILES, "flag_selected_photos", [profile])
    forge_flag(client, [profile])

    assert not FlaggedFingerprint.objects.exists()
    profile.refresh_from_db()
    assert profile.photo


def test_staff_without_flag_permission_gets_403_on_the_flag_image_page(staff_with):
    client = staff_with("moderation.view_flaggedfingerprint")
    upload = images.upload(images.photo(2), "evil.png", "PNG")

    assert client.get(reverse(FLAG_IMAGE)).status_code == 403
    assert client.post(reverse(FLAG_IMAGE), {"image": upload, "reason": "x"}).status_code == 403
    assert not FlaggedFingerprint.objects.exists()


def test_staff_without_flag_permission_does_not_see_the_flag_image_link(staff_with):
    client = staff_with("moderation.view_flaggedfingerprint")

    response = client.get(reverse(FINGERPRINTS))

    assert reverse(FLAG_IMAGE) not in response.content.decode()


def test_staff_who_may_flag_but_not_unflag_cannot_unflag(staff_with):
    flagged = ban(images.photo(2))
    client = staff_with("moderation.view_flaggedfingerprint", "moderation.flag_image")

    changelist = client.get(reverse(FINGERPRINTS))
    run_action(client, FINGERPRINTS, "unflag_selected", [flagged])
    forge_unflag(client, [flagged])

    assert "unflag_selected" not in action_choices(changelist)
    flagged.refresh_from_db()
    assert flagged.active
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.UNFLAG).exists()


@pytest.mark.parametrize("url_name", [PROFILES, FINGERPRINTS, FLAG_IMAGE])
def test_non_staff_are_sent_to_the_admin_login(client, user, url_name):
    client.force_login(user)

    response = client.get(reverse(url_name))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_non_staff_cannot_flag_by_posting(client, user, make_profile):
    profile = make_profile("bob", images.photo(1))
    client.force_login(user)

    forge_flag(client, [profile])
    client.post(
        reverse(FLAG_IMAGE),
        {"image": images.upload(images.photo(2), "x.png", "PNG"), "reason": "x"},
    )

    assert not FlaggedFingerprint.objects.exists()


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


# --- quarantine view ----------------------------------------------------------------------------


@pytest.fixture
def quarantined(moderator):
    """A flagged original in quarantine: (stored name, the bytes that were uploaded)."""
    upload = images.upload(images.photo(2), "evil.png", "PNG")
    content = upload.read()
    upload.seek(0)
    flagged = flagging.flag_image(
        file=upload, reason="x", source=FlaggedFingerprint.Source.ADMIN_UPLOAD, actor=moderator
    ).fingerprint
    return flagged.original.name, content


def quarantine_url(name: str) -> str:
    return reverse("moderation:quarantined-file", args=[name])


def test_quarantined_file_is_served_to_staff_with_permission(moderator_client, quarantined):
    name, content = quarantined

    response = moderator_client.get(quarantine_url(name))

    assert response.status_code == 200
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Type"] == "image/png"
    assert "no-store" in response["Cache-Control"]
    assert b"".join(response.streaming_content) == content


def test_quarantined_takedown_evidence_is_served_to_staff_with_permission(
    moderator_client, make_profile
):
    profile = make_profile("alice", images.photo(1))
    flagging.flag_stored_image(instance=profile, reason="x")
    evidence = AuditEvent.objects.get(action=AuditEvent.Action.TAKEDOWN).evidence.name

    assert moderator_client.get(quarantine_url(evidence)).status_code == 200


def test_quarantined_file_is_403_for_staff_without_permission(staff_with, quarantined):
    client = staff_with("moderation.view_flaggedfingerprint", "moderation.flag_image")

    assert client.get(quarantine_url(quarantined[0])).status_code == 403


@pytest.mark.parametrize("who", ["anonymous", "non-staff"])
def test_quarantined_file_sends_others_to_the_admin_login(client, user, quarantined, who):
    if who == "non-staff":
        client.force_login(user)

    response = client.get(quarantine_url(quarantined[0]))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_quarantine_view_is_404_for_a_name_the_database_does_not_reference(
    moderator_client, quarantined
):
    stray = quarantine_storage().save("originals/stray.png", ContentFile(quarantined[1]))

    assert moderator_client.get(quarantine_url(stray)).status_code == 404
    assert moderator_client.get(quarantine_url("originals/nothing.png")).status_code == 404
    assert moderator_client.get(quarantine_url("../media/x.jpg")).status_code == 404


def test_quarantine_view_is_404_when_a_referenced_file_is_missing(moderator_client, quarantined):
    quarantine_storage().delete(quarantined[0])

    assert moderator_client.get(quarantine_url(quarantined[0])).status_code == 404


def test_public_media_never_links_to_quarantine(client, make_profile, moderator):
    profile = make_profile("alice", images.photo(1))
    flagging.flag_stored_image(instance=profile, reason="x", actor=moderator)
    flagged = FlaggedFingerprint.objects.get()

    page = client.get(reverse("profile-detail", args=["alice"])).content.decode()

    assert flagged.original.name not in page


# --- banned set seen by the upload check ---------------------------------------------------------


def test_find_sees_an_admin_flag_and_forgets_it_after_unflag(moderator_client, make_profile):
    profile = make_profile("alice", images.photo(1))
    fp = Fingerprint.from_signed(profile.photo_dhash)
    assert banned_set.find(fp) == []  # the index is loaded before the flag

    confirm_flag(moderator_client, [profile])
    flagged = FlaggedFingerprint.objects.get()
    assert [m.fingerprint_id for m in banned_set.find(fp)] == [flagged.pk]

    confirm_unflag(moderator_client, [flagged])
    assert banned_set.find(fp) == []


@pytest.mark.django_db(transaction=True)
def test_admin_flag_with_real_commits_bans_sweeps_and_cleans_up(
    moderator_client, make_profile, media_files, user
):
    """No captured callbacks: each flag commits and the immediate backend sweeps right then."""
    original = images.photo(3)
    flagged_profile = make_profile("carol", original)
    copy_profile = make_profile("bob", images.resized(original, 0.6))
    fp = Fingerprint.from_signed(flagged_profile.photo_dhash)
    assert banned_set.find(fp) == []

    confirm_flag(moderator_client, [flagged_profile])

    copy_profile.refresh_from_db()
    assert not copy_profile.photo
    assert media_files() == []
    assert banned_set.find(fp)
    assert (
        GENERIC in post_photo(user_client(user), images.brightened(original, 1.1)).content.decode()
    )


@pytest.mark.django_db(transaction=True)
def test_flagging_a_photo_and_its_copy_together_takes_both_down_without_warnings(
    moderator_client, make_profile
):
    """The first flag's sweep removes the copy before the loop reaches it: that is no news."""
    original = images.photo(3)
    profiles = [make_profile("carol", original), make_profile("bob", images.resized(original, 0.6))]

    response = confirm_flag(moderator_client, profiles)

    assert all(not Profile.objects.get(pk=p.pk).photo for p in profiles)
    assert messages_of(response) == [
        "Flagged 1 photo; matching photos elsewhere are being taken down."
    ]
