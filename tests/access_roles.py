"""The roles the access tests play and the world they look at: a client per role (a fresh user
each time) and one of everything the pages show.

The fixtures here are registered for every test module through ``pytest_plugins`` in
``tests/conftest.py``."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from moderation import flagging, screening
from moderation.models import (
    AllowedMatch,
    AuditEvent,
    FlaggedFingerprint,
    ProberEscalation,
    ReviewItem,
    ShadowHit,
)
from moderation.thumbnails import thumbnail_jpeg
from profiles.models import Profile
from profiles.photos import profile_set_photo
from profiles.services import profile_for
from tests import images

ROLES = ["anonymous", "user", "staff", "moderator", "superuser"]
MODERATOR_PERMS = [
    "profiles.view_profile",
    "moderation.view_flaggedfingerprint",
    "moderation.view_auditevent",
    "moderation.view_refusedupload",
    "moderation.view_hashlist",
    "moderation.view_reviewitem",
    "moderation.view_shadowhit",
    "moderation.view_signalentry",
    "moderation.view_signalimport",
    "moderation.view_allowedmatch",
    "moderation.view_appeal",
    "moderation.view_report",
    "moderation.view_sweep",
    "moderation.view_reindexrun",
    "moderation.review_upload",
    "moderation.flag_image",
    "moderation.unflag_image",
    "moderation.view_quarantine",
    "moderation.view_failedtask",
    "moderation.retry_task",
    "moderation.view_workerheartbeat",
    "moderation.view_proberescalation",
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
    # The thumbnail a refusal by a match keeps (tests/test_refusal_thumbnails.py makes one
    # through the upload form), for the matrix's row of its private view.
    refused.thumbnail = thumbnail_jpeg(images.photo(82))
    refused.save(update_fields=["thumbnail"])
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
    escalation = ProberEscalation.objects.create(user=owner, fingerprint=flagged, attempts=5)
    return {
        "escalation": escalation,
        "review": review,
        "shadow": shadow,
        "allowed": allowed,
        "profile": Profile.objects.get(pk=profile.pk),
        "flagged": flagged,
        "event": AuditEvent.objects.get(),
        "refused": refused,
        "original": flagged.original.name,
    }
