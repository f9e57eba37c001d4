"""What the admin tests share: a moderator's client, a staff client with given permissions, and
running an admin action and its confirmation page the way a browser does.

The fixtures here are registered for every test module through ``pytest_plugins`` in
``tests/conftest.py``."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from moderation.models import FlaggedFingerprint
from tests import images
from tests.helpers import ban

GENERIC = "This image can&#x27;t be used as a profile photo."

PROFILES = "admin:profiles_profile_changelist"

FINGERPRINTS = "admin:moderation_flaggedfingerprint_changelist"
FLAG_IMAGE = "admin:moderation_flaggedfingerprint_flag_image"


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
