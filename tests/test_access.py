"""Who may see and do what (issue 5, item 5), as one matrix over every page, admin view and action.

Roles: anonymous, an ordinary user, staff without moderation permissions, a moderator (view the
moderation and profile admin, flag, unflag, view quarantine) and a superuser. Each cell of the
matrix is what the role gets: the page (200), a login page (302 to the site's or the admin's
login), refused (403), or not there (404). Beside the matrix: flag and unflag are separate
permissions, users change only their own profile, every state change needs POST and CSRF,
quarantined files have no public URL, users never learn hashes, distances or which ban matched,
and the audit trail (and the refused-upload record) cannot be changed in the admin.
"""

from __future__ import annotations

import re

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import resolve, reverse

from moderation import flagging, screening
from moderation.hashing import fingerprint
from moderation.models import (
    AllowedMatch,
    AuditEvent,
    FlaggedFingerprint,
    RefusedUpload,
    ReviewItem,
    ShadowHit,
)
from profiles.models import Profile
from profiles.photos import profile_set_photo
from profiles.services import profile_for
from tests import hostile, images

pytestmark = pytest.mark.django_db

ROLES = ["anonymous", "user", "staff", "moderator", "superuser"]
MODERATOR_PERMS = [
    "profiles.view_profile",
    "moderation.view_flaggedfingerprint",
    "moderation.view_auditevent",
    "moderation.view_refusedupload",
    "moderation.view_hashlist",
    "moderation.view_reviewitem",
    "moderation.view_shadowhit",
    "moderation.view_allowedmatch",
    "moderation.review_upload",
    "moderation.flag_image",
    "moderation.unflag_image",
    "moderation.view_quarantine",
]


def grant(user, *perms: str) -> None:
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )


@pytest.fixture
def as_role(django_user_model):
    """A callable: a client logged in as ``role`` (a fresh user each time)."""
    made = {"n": 0}

    def make(role: str, *perms: str, csrf: bool = False) -> Client:
        client = Client(enforce_csrf_checks=csrf)
        if role == "anonymous":
            return client
        made["n"] += 1
        name = f"{role}{made['n']}"
        if role == "superuser":
            user = django_user_model.objects.create_superuser(name, f"{name}@example.com", "pw")
        else:
            user = django_user_model.objects.create_user(
                username=name, password="pw", is_staff=role in ("staff", "moderator")
            )
        grant(user, *(MODERATOR_PERMS if role == "moderator" else ()), *perms)
        client.force_login(user)
        client.user = user
        return client

    return make


@pytest.fixture
def world(django_user_model):
    """One of everything the pages show: a profile with a photo, a ban, an audit row, a refusal."""
    owner = django_user_model.objects.create_user(username="owner", password="pw")
    profile = profile_set_photo(
        profile=profile_for(user=owner), upload=images.upload(images.photo(81))
    )
    flagged = flagging.flag_image(
        file=images.upload(images.photo(82), "bad.png", "PNG"),
        reason="known bad",
        source=FlaggedFingerprint.Source.COMMAND,
    ).fingerprint
    refused = screening.record_refused_upload(user=owner, ip="192.0.2.1", code="banned_image")
    review = ReviewItem.objects.create(
        target_key="profiles.profile.photo",
        object_id=profile.pk,
        file_name=profile.photo.name,
        dhash=profile.photo_dhash,
        uploader=owner,
        fingerprint=flagged,
        distance=14,
    )
    shadow = ShadowHit.objects.create(
        hash_list=flagged.hash_list,
        fingerprint=flagged,
        target_key="profiles.profile.photo",
        object_id=profile.pk,
        dhash=profile.photo_dhash,
        distance=3,
    )
    allowed = AllowedMatch.objects.create(fingerprint=flagged, dhash=profile.photo_dhash)
    return {
        "review": review,
        "shadow": shadow,
        "allowed": allowed,
        "profile": Profile.objects.get(pk=profile.pk),
        "flagged": flagged,
        "event": AuditEvent.objects.get(),
        "refused": refused,
        "original": flagged.original.name,
    }


# --- the matrix --------------------------------------------------------------------------------

OK, LOGIN, ADMIN_LOGIN, DENIED, HOME = "ok", "login", "admin-login", "denied", "home"
EVERYONE = dict.fromkeys(ROLES, OK)
SIGNED_IN = {"anonymous": LOGIN, "user": OK, "staff": OK, "moderator": OK, "superuser": OK}
MODERATORS = {
    "anonymous": ADMIN_LOGIN,
    "user": ADMIN_LOGIN,
    "staff": DENIED,
    "moderator": OK,
    "superuser": OK,
}
STAFF = {**MODERATORS, "staff": OK}
SUPERUSER_ONLY = {**MODERATORS, "moderator": DENIED}
NOBODY = {**MODERATORS, "moderator": DENIED, "superuser": DENIED}

# name -> (url from the world, expected per role)
PAGES = {
    "home": (lambda w: reverse("home"), EVERYONE),
    "login": (lambda w: reverse("login"), EVERYONE),
    "public profile": (lambda w: reverse("profile-detail", args=["owner"]), EVERYONE),
    "edit own profile": (lambda w: reverse("profile-edit"), SIGNED_IN),
    "quarantined original": (
        lambda w: reverse("moderation:quarantined-file", args=[w["original"]]),
        MODERATORS,
    ),
    "admin index": (lambda w: reverse("admin:index"), STAFF),
    "profiles": (lambda w: reverse("admin:profiles_profile_changelist"), MODERATORS),
    "profile": (
        lambda w: reverse("admin:profiles_profile_change", args=[w["profile"].pk]),
        MODERATORS,
    ),
    "profile history": (
        lambda w: reverse("admin:profiles_profile_history", args=[w["profile"].pk]),
        MODERATORS,
    ),
    "profile add": (lambda w: reverse("admin:profiles_profile_add"), NOBODY),
    "profile delete": (
        lambda w: reverse("admin:profiles_profile_delete", args=[w["profile"].pk]),
        SUPERUSER_ONLY,
    ),
    "fingerprints": (
        lambda w: reverse("admin:moderation_flaggedfingerprint_changelist"),
        MODERATORS,
    ),
    "fingerprint": (
        lambda w: reverse("admin:moderation_flaggedfingerprint_change", args=[w["flagged"].pk]),
        MODERATORS,
    ),
    "fingerprint add": (lambda w: reverse("admin:moderation_flaggedfingerprint_add"), NOBODY),
    "fingerprint delete": (
        lambda w: reverse("admin:moderation_flaggedfingerprint_delete", args=[w["flagged"].pk]),
        NOBODY,
    ),
    "flag an image": (
        lambda w: reverse("admin:moderation_flaggedfingerprint_flag_image"),
        MODERATORS,
    ),
    "audit trail": (lambda w: reverse("admin:moderation_auditevent_changelist"), MODERATORS),
    "audit event": (
        lambda w: reverse("admin:moderation_auditevent_change", args=[w["event"].pk]),
        MODERATORS,
    ),
    "audit event add": (lambda w: reverse("admin:moderation_auditevent_add"), NOBODY),
    "audit event delete": (
        lambda w: reverse("admin:moderation_auditevent_delete", args=[w["event"].pk]),
        NOBODY,
    ),
    "refused uploads": (
        lambda w: reverse("admin:moderation_refusedupload_changelist"),
        MODERATORS,
    ),
    "refused upload": (
        lambda w: reverse("admin:moderation_refusedupload_change", args=[w["refused"].pk]),
        MODERATORS,
    ),
    "refused upload add": (lambda w: reverse("admin:moderation_refusedupload_add"), NOBODY),
    "refused upload delete": (
        lambda w: reverse("admin:moderation_refusedupload_delete", args=[w["refused"].pk]),
        NOBODY,
    ),
    "hash lists": (lambda w: reverse("admin:moderation_hashlist_changelist"), MODERATORS),
    "hash list": (
        lambda w: reverse("admin:moderation_hashlist_change", args=[w["flagged"].hash_list_id]),
        MODERATORS,
    ),
    "hash list trial": (
        lambda w: reverse("admin:moderation_hashlist_trial", args=[w["flagged"].hash_list_id]),
        MODERATORS,
    ),
    "hash list add": (lambda w: reverse("admin:moderation_hashlist_add"), SUPERUSER_ONLY),
    "hash list delete": (
        lambda w: reverse("admin:moderation_hashlist_delete", args=[w["flagged"].hash_list_id]),
        NOBODY,
    ),
    "review queue": (lambda w: reverse("admin:moderation_reviewitem_changelist"), MODERATORS),
    "review item": (
        lambda w: reverse("admin:moderation_reviewitem_change", args=[w["review"].pk]),
        MODERATORS,
    ),
    "review item add": (lambda w: reverse("admin:moderation_reviewitem_add"), NOBODY),
    "review item delete": (
        lambda w: reverse("admin:moderation_reviewitem_delete", args=[w["review"].pk]),
        NOBODY,
    ),
    "shadow hits": (lambda w: reverse("admin:moderation_shadowhit_changelist"), MODERATORS),
    "shadow hit": (
        lambda w: reverse("admin:moderation_shadowhit_change", args=[w["shadow"].pk]),
        MODERATORS,
    ),
    "shadow hit add": (lambda w: reverse("admin:moderation_shadowhit_add"), NOBODY),
    "shadow hit delete": (
        lambda w: reverse("admin:moderation_shadowhit_delete", args=[w["shadow"].pk]),
        NOBODY,
    ),
    "allowlist": (lambda w: reverse("admin:moderation_allowedmatch_changelist"), MODERATORS),
    "allowed match": (
        lambda w: reverse("admin:moderation_allowedmatch_change", args=[w["allowed"].pk]),
        MODERATORS,
    ),
    "allowed match add": (lambda w: reverse("admin:moderation_allowedmatch_add"), NOBODY),
    "allowed match delete": (
        lambda w: reverse("admin:moderation_allowedmatch_delete", args=[w["allowed"].pk]),
        NOBODY,
    ),
    "moderation dashboard": (lambda w: reverse("admin:moderation_dashboard"), MODERATORS),
    "users": (lambda w: reverse("admin:auth_user_changelist"), SUPERUSER_ONLY),
    "groups": (lambda w: reverse("admin:auth_group_changelist"), SUPERUSER_ONLY),
    "tasks": (
        lambda w: reverse("admin:django_tasks_database_dbtaskresult_changelist"),
        SUPERUSER_ONLY,
    ),
}


def outcome(response) -> str:
    if response.status_code == 200:
        return OK
    if response.status_code == 403:
        return DENIED
    if response.status_code == 302:
        location = response["Location"]
        if location.startswith(reverse("admin:login")):
            return ADMIN_LOGIN
        if location.startswith(reverse("login")):
            return LOGIN
        return f"redirect {location}"
    return str(response.status_code)


@pytest.mark.parametrize("role", ROLES)
def test_permission_matrix_over_every_page(role, as_role, world):
    client = as_role(role)
    got = {name: outcome(client.get(url(world))) for name, (url, _) in PAGES.items()}
    expected = {name: by_role[role] for name, (_, by_role) in PAGES.items()}
    assert got == expected


def test_the_matrix_covers_every_admin_model(world):
    from django.contrib import admin

    visited = {resolve(url(world)).url_name for url, _ in PAGES.values()}
    for model in admin.site._registry:
        prefix = f"{model._meta.app_label}_{model._meta.model_name}"
        assert f"{prefix}_changelist" in visited, prefix


# --- admin actions -----------------------------------------------------------------------------

# name -> (changelist, action, what it acts on, roles that get the confirmation page)
ACTIONS = {
    "flag selected photos": (
        "admin:profiles_profile_changelist",
        "flag_selected_photos",
        "profile",
    ),
    "unflag selected fingerprints": (
        "admin:moderation_flaggedfingerprint_changelist",
        "unflag_selected",
        "flagged",
    ),
    "revoke selected exceptions": (
        "admin:moderation_allowedmatch_changelist",
        "revoke_selected",
        "allowed",
    ),
}
CONFIRMATION_PAGE = "confirm"
ACTION_EXPECTED = {
    "anonymous": ADMIN_LOGIN,
    "user": ADMIN_LOGIN,
    "staff": DENIED,
    "moderator": CONFIRMATION_PAGE,
    "superuser": CONFIRMATION_PAGE,
}


def post_action(client, changelist, action, obj, **extra):
    data = {"action": action, ACTION_CHECKBOX_NAME: [obj.pk], **extra}
    return client.post(reverse(changelist), data)


def world_unchanged(world) -> bool:
    profile = Profile.objects.get(pk=world["profile"].pk)
    flagged = FlaggedFingerprint.objects.get(pk=world["flagged"].pk)
    return (
        bool(profile.photo)
        and flagged.active
        and AuditEvent.objects.count() == 1
        and AllowedMatch.objects.in_force().count() == 1
    )


@pytest.mark.parametrize("action_name", list(ACTIONS))
@pytest.mark.parametrize("role", ROLES)
def test_permission_matrix_over_every_admin_action(role, action_name, as_role, world):
    changelist, action, target = ACTIONS[action_name]
    client = as_role(role)
    response = post_action(client, changelist, action, world[target])
    got = outcome(response)
    if got == OK:
        assert 'name="reason"' in response.content.decode()
        got = CONFIRMATION_PAGE
    assert got == ACTION_EXPECTED[role]
    # Confirmed by someone not allowed, the action still does nothing.
    post_action(client, changelist, action, world[target], confirm="1", reason="x")
    if ACTION_EXPECTED[role] != CONFIRMATION_PAGE:
        assert world_unchanged(world)


def test_flag_and_unflag_are_separate_permissions(as_role, world):
    view = ["profiles.view_profile", "moderation.view_flaggedfingerprint"]
    flagger = as_role("staff", *view, "moderation.flag_image")
    unflagger = as_role("staff", *view, "moderation.unflag_image")
    profile, flagged = world["profile"], world["flagged"]

    # The flagger cannot unflag...
    post_action(
        flagger,
        "admin:moderation_flaggedfingerprint_changelist",
        "unflag_selected",
        flagged,
        confirm="1",
        reason="x",
    )
    assert FlaggedFingerprint.objects.get(pk=flagged.pk).active
    # ...and the unflagger cannot flag, by the action or by the page.
    post_action(
        unflagger,
        "admin:profiles_profile_changelist",
        "flag_selected_photos",
        profile,
        confirm="1",
        reason="x",
        **{f"photo-{profile.pk}": profile.photo.name},
    )
    page = unflagger.post(
        reverse("admin:moderation_flaggedfingerprint_flag_image"),
        {"image": images.upload(images.photo(83), "x.png", "PNG"), "reason": "x"},
    )
    assert page.status_code == 403
    assert FlaggedFingerprint.objects.count() == 1 and Profile.objects.get(pk=profile.pk).photo

    # Each can do their own.
    post_action(
        unflagger,
        "admin:moderation_flaggedfingerprint_changelist",
        "unflag_selected",
        flagged,
        confirm="1",
        reason="mistake",
    )
    assert not FlaggedFingerprint.objects.get(pk=flagged.pk).active
    post_action(
        flagger,
        "admin:profiles_profile_changelist",
        "flag_selected_photos",
        profile,
        confirm="1",
        reason="bad",
        **{f"photo-{profile.pk}": profile.photo.name},
    )
    assert not Profile.objects.get(pk=profile.pk).photo


# --- users edit only their own profile ---------------------------------------------------------


def test_a_user_changes_only_their_own_profile_whatever_they_post(as_role, world):
    owner_profile = world["profile"]
    client = as_role("user")
    response = client.post(
        reverse("profile-edit"),
        {
            "display_name": "Mallory",
            "user": owner_profile.user_id,
            "id": owner_profile.pk,
            "pk": owner_profile.pk,
            "profile": owner_profile.pk,
            "photo_dhash": "0",
        },
    )
    assert response.status_code == 302
    after = Profile.objects.get(pk=owner_profile.pk)
    assert after.display_name == owner_profile.display_name
    assert after.photo_dhash == owner_profile.photo_dhash
    mine = Profile.objects.get(user=client.user)
    assert mine.display_name == "Mallory" and mine.photo_dhash is None


def test_a_user_removes_only_their_own_photo(as_role, world):
    client = as_role("user")
    client.post(reverse("profile-remove-photo"), {"user": world["profile"].user_id})
    assert Profile.objects.get(pk=world["profile"].pk).photo


# --- every state change: POST, with CSRF --------------------------------------------------------


def state_changes(world) -> dict:
    """name -> (url, data) for every request that changes something."""
    profile, flagged = world["profile"], world["flagged"]
    return {
        "upload a photo": (
            reverse("profile-edit"),
            {"display_name": "x", "photo": images.upload(images.photo(84))},
        ),
        "remove photo": (reverse("profile-remove-photo"), {}),
        "log out": (reverse("logout"), {}),
        "flag an image": (
            reverse("admin:moderation_flaggedfingerprint_flag_image"),
            {"image": images.upload(images.photo(85), "x.png", "PNG"), "reason": "x"},
        ),
        "flag selected photos": (
            reverse("admin:profiles_profile_changelist"),
            {
                "action": "flag_selected_photos",
                ACTION_CHECKBOX_NAME: [profile.pk],
                "confirm": "1",
                "reason": "x",
                f"photo-{profile.pk}": profile.photo.name,
            },
        ),
        "unflag selected": (
            reverse("admin:moderation_flaggedfingerprint_changelist"),
            {
                "action": "unflag_selected",
                ACTION_CHECKBOX_NAME: [flagged.pk],
                "confirm": "1",
                "reason": "x",
            },
        ),
        "ban from the review queue": (
            reverse("admin:moderation_reviewitem_change", args=[world["review"].pk]),
            {"decision": "ban"},
        ),
        "dismiss from the review queue": (
            reverse("admin:moderation_reviewitem_change", args=[world["review"].pk]),
            {"decision": "dismiss"},
        ),
        "review-queue emails": (
            reverse("admin:moderation_review_subscription"),
            {"subscribe": "1"},
        ),
        "revoke an allowlist exception": (
            reverse("admin:moderation_allowedmatch_changelist"),
            {
                "action": "revoke_selected",
                ACTION_CHECKBOX_NAME: [world["allowed"].pk],
                "confirm": "1",
                "reason": "x",
            },
        ),
        "try a hash-list distance": (
            reverse("admin:moderation_hashlist_trial", args=[flagged.hash_list_id]),
            {"do": "propose", "distance": "14"},
        ),
        "change a hash list": (
            reverse("admin:moderation_hashlist_change", args=[flagged.hash_list_id]),
            {"name": "x", "description": "", "max_distance": "", "mode": "shadow"},
        ),
    }


@pytest.mark.parametrize(
    "change",
    [
        "upload a photo",
        "remove photo",
        "log out",
        "flag an image",
        "flag selected photos",
        "unflag selected",
        "ban from the review queue",
        "dismiss from the review queue",
        "review-queue emails",
        "revoke an allowlist exception",
        "try a hash-list distance",
        "change a hash list",
    ],
)
def test_every_state_change_is_refused_without_a_csrf_token(change, as_role, world, user):
    client = as_role("superuser", csrf=True)
    profile_set_photo(profile=profile_for(user=client.user), upload=images.upload(images.photo(86)))
    before = (
        list(Profile.objects.order_by("pk").values()),
        list(FlaggedFingerprint.objects.order_by("pk").values()),
        AuditEvent.objects.count(),
    )
    url, data = state_changes(world)[change]
    response = client.post(url, data)
    assert response.status_code == 403
    after = (
        list(Profile.objects.order_by("pk").values()),
        list(FlaggedFingerprint.objects.order_by("pk").values()),
        AuditEvent.objects.count(),
    )
    assert after == before
    assert client.get(reverse("profile-edit")).status_code == 200  # still logged in


def test_a_state_change_with_the_token_from_the_page_goes_through(as_role):
    client = as_role("user", csrf=True)
    page = client.get(reverse("profile-edit")).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    response = client.post(
        reverse("profile-edit"),
        {
            "csrfmiddlewaretoken": token,
            "display_name": "x",
            "photo": images.upload(images.photo(87)),
        },
    )
    assert response.status_code == 302
    assert Profile.objects.get(user=client.user).photo


@pytest.mark.parametrize("name", ["profile-remove-photo", "logout"])
def test_state_changes_refuse_get(name, as_role, world):
    client = as_role("user")
    profile_set_photo(profile=profile_for(user=client.user), upload=images.upload(images.photo(88)))
    assert client.get(reverse(name)).status_code == 405
    assert Profile.objects.get(user=client.user).photo


def test_admin_actions_do_not_run_from_a_get(as_role, world):
    client = as_role("superuser")
    url = reverse("admin:moderation_flaggedfingerprint_changelist")
    client.get(url, {"action": "unflag_selected", ACTION_CHECKBOX_NAME: world["flagged"].pk})
    assert FlaggedFingerprint.objects.get(pk=world["flagged"].pk).active


# --- quarantine has no public URL ---------------------------------------------------------------


def test_quarantined_files_are_not_reachable_by_any_public_url(dev_media_urls, as_role, world):
    flagging.flag_stored_image(instance=world["profile"], reason="x")
    names = [world["original"]]
    names += [e.evidence.name for e in AuditEvent.objects.exclude(evidence="") if e.evidence.name]
    assert len(names) >= 2
    client = as_role("superuser")  # not even staff get them any other way
    for name in names:
        for url in (
            f"/media/{name}",
            f"/media/../quarantine/{name}",
            f"/media/%2e%2e/quarantine/{name}",
            f"/static/{name}",
            f"/{name}",
        ):
            assert client.get(url).status_code in (400, 404), url
        with pytest.raises(NotImplementedError):
            FlaggedFingerprint._meta.get_field("original").storage.url(name)
    for page in ("home", "profile-edit"):
        body = client.get(reverse(page)).content.decode()
        assert not any(name in body for name in names)


# --- users never learn hashes, distances or which ban matched ------------------------------------


def test_a_refused_user_learns_nothing_about_the_match(as_role, world):
    flagged = world["flagged"]
    client = as_role("user")
    data = hostile.encoded(images.resized(images.photo(82), 0.9), "JPEG", quality=80)
    own = fingerprint(hostile_upload(data))
    response = client.post(
        reverse("profile-edit"), {"display_name": "x", "photo": hostile_upload(data)}
    )
    page = response.content.decode()
    assert "can&#x27;t be used" in page
    refusal = RefusedUpload.objects.filter(user=client.user).get()
    assert refusal.nearest == flagged and refusal.distance is not None  # staff do know
    for secret in (
        flagged.hex,
        own.hex,
        str(flagged.dhash),
        str(own.signed),
        flagged.reason,
        "distance",
        "fingerprint",
        "hash",
    ):
        assert secret.lower() not in page.lower(), secret
    for header, value in response.items():
        assert flagged.hex not in value and own.hex not in value, header


def test_an_accepted_user_sees_no_hash_of_their_photo(as_role):
    client = as_role("user")
    client.post(
        reverse("profile-edit"), {"display_name": "x", "photo": images.upload(images.photo(89))}
    )
    profile = Profile.objects.get(user=client.user)
    for url in (reverse("profile-edit"), reverse("profile-detail", args=[client.user.username])):
        page = client.get(url).content.decode()
        assert profile.photo_hex not in page and str(profile.photo_dhash) not in page


def hostile_upload(data: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("me.jpg", data, "image/jpeg")


# --- the audit trail and the refusal record are append-only in the admin ------------------------


@pytest.mark.parametrize(("model", "key"), [("auditevent", "event"), ("refusedupload", "refused")])
def test_records_are_append_only_even_for_a_superuser(model, key, as_role, world):
    client = as_role("superuser")
    obj = world[key]
    change_url = reverse(f"admin:moderation_{model}_change", args=[obj.pk])
    changelist = client.get(reverse(f"admin:moderation_{model}_changelist"))
    form = changelist.context["action_form"]  # None: no action at all
    actions = [c[0] for c in form.fields["action"].choices] if form else []
    assert "delete_selected" not in actions
    assert 'name="_save"' not in client.get(change_url).content.decode()
    assert client.post(change_url, {"reason": "rewritten", "code": "x"}).status_code == 403
    delete_url = reverse(f"admin:moderation_{model}_delete", args=[obj.pk])
    assert client.post(delete_url, {"post": "yes"}).status_code == 403
    bulk = client.post(
        reverse(f"admin:moderation_{model}_changelist"),
        {"action": "delete_selected", ACTION_CHECKBOX_NAME: [obj.pk], "post": "yes"},
    )
    assert bulk.status_code in (200, 302)
    assert type(obj).objects.filter(pk=obj.pk).exists()
