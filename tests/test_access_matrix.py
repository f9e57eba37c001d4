"""Who may see and do what, as one matrix over every page, admin view and admin action.

Roles: anonymous, an ordinary user, staff without moderation permissions, a moderator (view the
moderation and profile admin, flag, unflag, view quarantine) and a superuser (``tests/
access_roles.py``). Each cell of the matrix is what the role gets: the page (200), a login page
(302 to the site's or the admin's login), refused (403), or not there (404). Beside the matrix:
flag and unflag are separate permissions. The rules that are not a matrix (own profile only, POST
and CSRF, no public URL for quarantine, nothing learnt about a match, append-only records) are in
``test_access_rules.py``.
"""

from __future__ import annotations

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import resolve, reverse

from moderation.models import AllowedMatch, AuditEvent, FlaggedFingerprint
from profiles.models import Profile
from tests import images
from tests.access_roles import ROLES

pytestmark = pytest.mark.django_db


# --- the matrix --------------------------------------------------------------------------------

OK, LOGIN, ADMIN_LOGIN, DENIED, HOME = "ok", "login", "admin-login", "denied", "home"
TWO_FACTOR = "two-factor"  # sent to the two-factor page
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
# Each account's own two-factor pages: only for accounts that can moderate (staff in these roles).
OWN_TWO_FACTOR = {**SIGNED_IN, "user": DENIED}

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
    "refusal thumbnail": (
        lambda w: reverse("moderation:refusal-thumbnail", args=[w["refused"].pk]),
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
    "list entries": (lambda w: reverse("admin:moderation_signalentry_changelist"), MODERATORS),
    "list entry add": (lambda w: reverse("admin:moderation_signalentry_add"), NOBODY),
    "hash imports": (lambda w: reverse("admin:moderation_signalimport_changelist"), MODERATORS),
    "hash import add": (lambda w: reverse("admin:moderation_signalimport_add"), NOBODY),
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
    "appeals": (lambda w: reverse("admin:moderation_appeal_changelist"), MODERATORS),
    "appeal add": (lambda w: reverse("admin:moderation_appeal_add"), NOBODY),
    "reported photos": (lambda w: reverse("admin:moderation_report_changelist"), MODERATORS),
    "reported photo add": (lambda w: reverse("admin:moderation_report_add"), NOBODY),
    "moderation dashboard": (lambda w: reverse("admin:moderation_dashboard"), MODERATORS),
    "escalated probers": (
        lambda w: reverse("admin:moderation_proberescalation_changelist"),
        MODERATORS,
    ),
    "escalated prober": (
        lambda w: reverse("admin:moderation_proberescalation_change", args=[w["escalation"].pk]),
        MODERATORS,
    ),
    "escalated prober add": (
        lambda w: reverse("admin:moderation_proberescalation_add"),
        NOBODY,
    ),
    "sweeps": (lambda w: reverse("admin:moderation_sweep_changelist"), MODERATORS),
    "sweep": (
        lambda w: reverse("admin:moderation_sweep_change", args=[w["flagged"].sweeps.get().pk]),
        MODERATORS,
    ),
    "sweep add": (lambda w: reverse("admin:moderation_sweep_add"), NOBODY),
    "reindex runs": (lambda w: reverse("admin:moderation_reindexrun_changelist"), MODERATORS),
    "reindex run add": (lambda w: reverse("admin:moderation_reindexrun_add"), NOBODY),
    "users": (lambda w: reverse("admin:auth_user_changelist"), SUPERUSER_ONLY),
    "groups": (lambda w: reverse("admin:auth_group_changelist"), SUPERUSER_ONLY),
    "tasks": (
        lambda w: reverse("admin:django_tasks_database_dbtaskresult_changelist"),
        SUPERUSER_ONLY,
    ),
    "failed tasks": (lambda w: reverse("admin:moderation_failedtask_changelist"), MODERATORS),
    "task workers": (
        lambda w: reverse("admin:moderation_workerheartbeat_changelist"),
        MODERATORS,
    ),
    "api tokens": (lambda w: reverse("admin:moderation_apitoken_changelist"), SUPERUSER_ONLY),
    "api token issue": (lambda w: reverse("admin:moderation_apitoken_add"), SUPERUSER_ONLY),
    "login attempts": (lambda w: reverse("admin:axes_accessattempt_changelist"), SUPERUSER_ONLY),
    "login log": (lambda w: reverse("admin:axes_accesslog_changelist"), SUPERUSER_ONLY),
    "login failure log": (
        lambda w: reverse("admin:axes_accessfailurelog_changelist"),
        SUPERUSER_ONLY,
    ),
    "own two-factor": (lambda w: reverse("moderation:two-factor-manage"), OWN_TWO_FACTOR),
    "own two-factor code": (lambda w: reverse("moderation:two-factor-verify"), OWN_TWO_FACTOR),
    # The roles' staff are enrolled already: enrolling again leads to their two-factor page.
    "own two-factor enrolment": (
        lambda w: reverse("moderation:two-factor-enrol"),
        {**OWN_TWO_FACTOR, "staff": TWO_FACTOR, "moderator": TWO_FACTOR, "superuser": TWO_FACTOR},
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
        if location.startswith(reverse("moderation:two-factor-manage")):
            return TWO_FACTOR
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
