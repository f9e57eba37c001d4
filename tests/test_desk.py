"""The moderator's desk: ban or dismiss a queued upload, the allowlist a dismissal creates, its
revocation, and the suspension of a flag dismissed too often.

A dismissal allows that image for that fingerprint only; too many dismissals suspend the flag.
The allowlist page lists every exception — who, when, which fingerprint, which image — with a
permission-checked, audited revoke action whose effect reaches the next lookup in every
process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from moderation import desk, matching, screening
from moderation.hashing import fingerprint_image
from moderation.models import (
    AllowedMatch,
    AuditEvent,
    FlaggedFingerprint,
    RefusedUpload,
    ReviewItem,
)
from profiles.models import Profile
from tests import images
from tests.helpers import ban, moderator_client

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("narrow_distances")]

ALLOWLIST = "admin:moderation_allowedmatch_changelist"











@pytest.fixture
def dismissed(make_profile, moderator, django_capture_on_commit_callbacks):
    """A near miss of a banned scene, stored, queued and dismissed by the moderator."""
    scene = images.photo(840)
    flagged = ban(scene)
    near = images.near_miss(scene)
    with django_capture_on_commit_callbacks(execute=True):
        profile = make_profile("nina", near)
    item = ReviewItem.objects.get()
    assert desk.review_dismiss(item=item, actor=moderator)
    return {
        "flagged": flagged,
        "near": near,
        "profile": profile,
        "allowed": AllowedMatch.objects.get(),
    }


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def revoke(client, allowed, **extra):
    return client.post(
        reverse(ALLOWLIST),
        {"action": "revoke_selected", ACTION_CHECKBOX_NAME: [allowed.pk], **extra},
    )


def test_the_allowlist_lists_who_allowed_which_image_for_which_fingerprint_and_when(
    dismissed, moderator
):
    page = client_for(moderator).get(reverse(ALLOWLIST)).content.decode()

    allowed, flagged = dismissed["allowed"], dismissed["flagged"]
    assert allowed.dhash_hex in page and flagged.hex in page
    assert "mod" in page and "in force" in page
    assert dismissed["profile"].photo.url in page  # the allowed image itself
    assert reverse("moderation:quarantined-file", args=[flagged.original.name]) in page


def test_the_flagged_original_is_linked_only_for_the_quarantine_permission(
    dismissed, moderator
):
    moderator.user_permissions.remove(Permission.objects.get(codename="view_quarantine"))
    page = client_for(moderator).get(reverse(ALLOWLIST)).content.decode()
    assert "/moderation/quarantine/" not in page
    assert dismissed["allowed"].dhash_hex in page


def test_revoking_asks_for_a_reason_first(dismissed, moderator):
    response = revoke(client_for(moderator), dismissed["allowed"])
    assert response.status_code == 200
    assert 'name="reason"' in response.content.decode()
    assert AllowedMatch.objects.in_force().count() == 1


def test_a_revoked_exception_is_kept_marked_and_audited(dismissed, moderator):
    response = revoke(client_for(moderator), dismissed["allowed"], confirm="1", reason="mistake")

    assert response.status_code == 302
    allowed = AllowedMatch.objects.get()
    assert allowed.revoked_at is not None and allowed.revoked_by == moderator
    event = AuditEvent.objects.get(action=AuditEvent.Action.REVOKE)
    assert (event.actor, event.fingerprint, event.reason) == (
        moderator,
        dismissed["flagged"],
        "mistake",
    )
    page = client_for(moderator).get(reverse(ALLOWLIST), {"state": "revoked"})
    assert allowed.dhash_hex in page.content.decode()
    assert client_for(moderator).get(reverse(ALLOWLIST), {"state": "in_force"}).context[
        "cl"
    ].result_count == 0


def test_a_revoked_exception_stops_applying_at_the_next_lookup(dismissed, moderator):
    fp = fingerprint_image(dismissed["near"])
    assert screening.check(fp).decision == matching.PASS

    desk.allowed_match_revoke(allowed=dismissed["allowed"], actor=moderator)

    assert screening.check(fp).decision == matching.REVIEW


def test_revoking_twice_changes_nothing_the_second_time(dismissed, moderator):
    assert desk.allowed_match_revoke(allowed=dismissed["allowed"], actor=moderator)
    assert not desk.allowed_match_revoke(allowed=dismissed["allowed"], actor=moderator)
    assert AuditEvent.objects.filter(action=AuditEvent.Action.REVOKE).count() == 1


@pytest.mark.parametrize("missing", ["review_upload", "flag_image"])
def test_revoking_needs_the_review_and_flag_permissions(dismissed, moderator, missing):
    moderator.user_permissions.remove(Permission.objects.get(codename=missing))
    client = client_for(moderator)

    response = revoke(client, dismissed["allowed"], confirm="1", reason="x")

    assert response.status_code in (200, 302)  # the admin answers "no such action"
    assert AllowedMatch.objects.in_force().count() == 1
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.REVOKE).exists()


def test_a_revoked_dismissal_no_longer_counts_towards_suspension(
    dismissed, moderator, settings, django_user_model
):
    from profiles.models import Profile

    settings.MODERATION_MAX_DISMISSALS = 1
    desk.allowed_match_revoke(allowed=dismissed["allowed"], actor=moderator)
    owner = django_user_model.objects.create_user(username="other", password="pw")
    item = ReviewItem.objects.create(
        target_key="profiles.profile.photo",
        object_id=Profile.objects.create(user=owner).pk,
        file_name="photos/other.jpg",
        dhash=fingerprint_image(images.at_distance(images.photo(840), 7, seed=9)).signed,
        fingerprint=dismissed["flagged"],
        distance=7,
    )

    desk.review_dismiss(item=item, actor=moderator)

    dismissed["flagged"].refresh_from_db()
    assert dismissed["flagged"].active and not dismissed["flagged"].suspended


def test_the_allowlist_admin_changes_nothing_by_itself(dismissed, as_superuser):
    allowed = dismissed["allowed"]
    change = reverse("admin:moderation_allowedmatch_change", args=[allowed.pk])
    assert 'name="_save"' not in as_superuser.get(change).content.decode()
    assert as_superuser.post(change, {"dhash": "0"}).status_code == 403
    delete = reverse("admin:moderation_allowedmatch_delete", args=[allowed.pk])
    assert as_superuser.post(delete, {"post": "yes"}).status_code == 403
    assert AllowedMatch.objects.get().dhash == allowed.dhash


@pytest.fixture
def as_superuser(django_user_model):
    return client_for(django_user_model.objects.create_superuser("root", "r@example.com", "pw"))


# --- another process ------------------------------------------------------------------------

# A process that stays up (like a web worker) and answers one decision per hex dHash line.
_WARM_DECISIONS = """
import json, sys
from moderation import banned_set, desk, matching, screening
from moderation.hashing import Fingerprint
banned_set.current().sync()
print("DECISION " + json.dumps("ready"), flush=True)
for line in sys.stdin:
    dhash, phash = line.split()
    fp = Fingerprint.from_hex(dhash)
    fp = Fingerprint(fp.dhash, fp.pipeline_version, phash=int(phash, 16))
    print("DECISION " + json.dumps(screening.check(fp).decision), flush=True)
"""


@pytest.mark.django_db(transaction=True)
def test_a_revocation_committed_here_applies_to_the_next_lookup_in_another_process(
    moderator, isolated_storage, settings
):
    from tests.processes import MANAGE, subprocess_env

    scene = images.photo(841)
    flagged = ban(scene)
    copy = fingerprint_image(images.at_distance(scene, 3, seed=2))  # blockable
    allowed = AllowedMatch.objects.create(fingerprint=flagged, dhash=copy.signed)
    proc = subprocess.Popen(
        [sys.executable, str(MANAGE), "shell", "-c", _WARM_DECISIONS],
        env=subprocess_env(
            MODERATION_TASKS_BACKEND="immediate",
            MODERATION_MAX_UNCONFIRMED_DISTANCE="4",
            MODERATION_REVIEW_DISTANCE="10",
        ),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    def ask(line: str | None = None) -> str:
        if line is not None:
            proc.stdin.write(line + "\n")
            proc.stdin.flush()
        while True:
            out = proc.stdout.readline()
            assert out, "the lookup process exited"
            if out.startswith("DECISION "):
                return json.loads(out.removeprefix("DECISION "))

    try:
        assert ask() == "ready"
        query = f"{copy.hex} {copy.phash:016x}"
        assert ask(query) == matching.PASS  # allowed, in the warm process too

        desk.allowed_match_revoke(allowed=allowed, actor=moderator)

        assert ask(query) == matching.BLOCK  # its very next lookup: no sleep, no retry
    finally:
        proc.stdin.close()
        proc.wait(10)


# --- ban and dismiss ------------------------------------------------------------------------


def test_staff_without_the_review_permission_cannot_ban_or_dismiss(queued, django_user_model):
    viewer = django_user_model.objects.create_user(username="v", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_reviewitem"))
    client = Client()
    client.force_login(viewer)
    url = reverse("admin:moderation_reviewitem_change", args=[queued.pk])

    for decision in ("ban", "dismiss"):
        assert client.post(url, {"decision": decision}).status_code == 403
    queued.refresh_from_db()
    assert queued.status == ReviewItem.Status.PENDING


def test_a_ban_with_its_reason_flags_the_upload_and_takes_it_down(queued, moderator, user):
    url = reverse("admin:moderation_reviewitem_change", args=[queued.pk])

    response = moderator_client(moderator).post(
        url, {"decision": "ban", "reason": "  the same scam ad, cropped  "}
    )

    assert response.status_code == 302
    queued.refresh_from_db()
    assert queued.status == ReviewItem.Status.BANNED and queued.decided_by == moderator
    assert not Profile.objects.get(user=user).photo
    assert FlaggedFingerprint.objects.active().count() == 2
    assert FlaggedFingerprint.objects.filter(reason="the same scam ad, cropped").exists()
    assert AuditEvent.objects.filter(action="takedown", actor=moderator).exists()


@pytest.mark.parametrize(
    "data", [{}, {"reason": ""}, {"reason": "   "}, {"reason": "x" * 201}], ids=str
)
def test_a_ban_without_a_usable_reason_bans_nothing_and_says_why(queued, moderator, user, data):
    url = reverse("admin:moderation_reviewitem_change", args=[queued.pk])

    response = moderator_client(moderator).post(url, {"decision": "ban", **data}, follow=True)

    assert "give the reason for the ban" in response.content.decode()
    queued.refresh_from_db()
    assert queued.status == ReviewItem.Status.PENDING
    assert Profile.objects.get(user=user).photo
    assert FlaggedFingerprint.objects.count() == 1
    assert not AuditEvent.objects.filter(action="takedown").exists()


def test_the_ban_prompt_offers_an_editable_reason_naming_the_flag(queued, scene, moderator):
    flagged, _ = scene
    url = reverse("admin:moderation_reviewitem_change", args=[queued.pk])

    html = moderator_client(moderator).get(url).content.decode()

    suggested = f"same picture as banned {flagged.hex}: {flagged.reason}"
    assert '<dialog id="ban-prompt"' in html
    assert f'name="reason" id="id_ban_reason" value="{suggested}" required maxlength="200"' in html
    assert 'data-shortcut="b" data-opens="ban-prompt"' in html


def test_one_click_dismiss_allows_that_image_for_that_fingerprint(queued, scene, moderator, upload):
    flagged, near = scene
    url = reverse("admin:moderation_reviewitem_change", args=[queued.pk])

    moderator_client(moderator).post(url, {"decision": "dismiss"})

    queued.refresh_from_db()
    assert queued.status == ReviewItem.Status.DISMISSED
    assert AllowedMatch.objects.get().fingerprint == flagged
    assert AuditEvent.objects.filter(action="dismiss", fingerprint=flagged).exists()
    assert screening.check(fingerprint_image(near)).decision == matching.PASS
    upload(near)  # the same picture again: accepted, and not queued again
    assert ReviewItem.objects.count() == 1


def test_an_allowed_image_is_not_refused_even_within_the_block_distance(
    scene, upload, user, settings
):
    flagged, near = scene
    AllowedMatch.objects.create(fingerprint=flagged, dhash=fingerprint_image(near).signed)
    settings.MODERATION_MAX_DISTANCE = 10  # now the copy would be blocked

    response = upload(near)

    assert response.status_code == 302
    assert Profile.objects.get(user=user).photo
    assert not RefusedUpload.objects.exists()


def test_an_allowlist_entry_does_not_help_a_different_image(scene):
    flagged, near = scene
    AllowedMatch.objects.create(fingerprint=flagged, dhash=fingerprint_image(near).signed)
    assert screening.check(fingerprint_image(images.photo(801))).blocked


def test_too_many_dismissals_suspend_the_fingerprint_and_show_it(
    scene, settings, django_user_model, moderator
):
    settings.MODERATION_MAX_DISMISSALS = 1
    flagged, near = scene
    for n in range(2):
        owner = django_user_model.objects.create_user(username=f"u{n}", password="pw")
        profile = Profile.objects.create(user=owner)
        item = ReviewItem.objects.create(
            target_key="profiles.profile.photo",
            object_id=profile.pk,
            file_name=f"photos/{n}.jpg",
            dhash=fingerprint_image(images.at_distance(images.photo(801), 7, seed=n)).signed,
            fingerprint=flagged,
            distance=7,
        )
        desk.review_dismiss(item=item, actor=moderator)

    flagged.refresh_from_db()
    assert not flagged.active and flagged.suspended
    assert AuditEvent.objects.filter(action="suspend", fingerprint=flagged).exists()
    assert not screening.check(fingerprint_image(images.photo(801))).blocked
    changelist = moderator_client(moderator).get(
        reverse("admin:moderation_flaggedfingerprint_changelist"), {"suspended__exact": "1"}
    )
    assert flagged.hex in changelist.content.decode()


def test_a_decided_item_cannot_be_decided_again(queued, moderator):
    assert desk.review_dismiss(item=queued, actor=moderator)
    assert not desk.review_dismiss(item=queued, actor=moderator)
    assert not desk.review_ban(item=queued, actor=moderator)
    assert AllowedMatch.objects.count() == 1
