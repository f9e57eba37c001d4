"""Links in the admin lead somewhere the viewer may go: "User: …", "Flagged by: …", "Actor: …"
are plain text to a moderator who may not view users, and links for a superuser, who may."""

from __future__ import annotations

import re
from html import unescape

import pytest
from django.contrib import admin
from django.contrib.admin.utils import flatten_fieldsets
from django.contrib.auth.models import Group, Permission
from django.test import Client, RequestFactory
from django.urls import reverse

from moderation.models import AuditEvent, FlaggedFingerprint, ProberEscalation, RefusedUpload
from profiles.management.commands.demo_setup import MODERATOR_PERMISSIONS

pytestmark = pytest.mark.django_db

USERS = "/admin/auth/user/"


@pytest.fixture
def demo_moderator(django_user_model):
    """A moderator exactly as ``make run`` makes one: staff, in the Moderators group."""
    group = Group.objects.create(name="Moderators")
    for app_label, codename in MODERATOR_PERMISSIONS:
        group.permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    user = django_user_model.objects.create_user("demo", password="pw", is_staff=True)
    user.groups.add(group)
    return user


@pytest.fixture
def people_everywhere(world, django_user_model):
    """``world`` with a person in every "who" field the admin pages show."""
    alice = django_user_model.objects.create_user("alice-mod", password="pw", is_staff=True)
    FlaggedFingerprint.objects.update(flagged_by=alice)
    AuditEvent.objects.update(actor=alice)
    RefusedUpload.objects.update(user=world["profile"].user)
    ProberEscalation.objects.update(closed_by=alice)
    return world


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def field_value(page: str, label: str) -> str:
    """The HTML of the read-only value beside ``label`` on a change page."""
    match = re.search(
        rf"<label>{re.escape(label)}:</label>\s*<div class=\"readonly\">(.*?)</div>", page, re.S
    )
    assert match, f"no read-only field {label!r} on the page"
    return match.group(1)


def test_a_moderator_sees_flagged_by_as_plain_text(people_everywhere, demo_moderator):
    flagged = people_everywhere["flagged"]
    page = client_for(demo_moderator).get(
        reverse("admin:moderation_flaggedfingerprint_change", args=[flagged.pk])
    )
    assert page.status_code == 200
    value = field_value(page.content.decode(), "Flagged by")
    assert unescape(value).strip() == "alice-mod"
    assert "<a " not in value


def test_a_superuser_still_gets_the_link_to_the_user(people_everywhere, django_user_model):
    boss = django_user_model.objects.create_superuser("boss", "boss@example.com", "pw")
    flagged = people_everywhere["flagged"]
    page = client_for(boss).get(
        reverse("admin:moderation_flaggedfingerprint_change", args=[flagged.pk])
    )
    value = field_value(page.content.decode(), "Flagged by")
    assert f'href="{USERS}' in value


def test_a_moderator_who_may_edit_profiles_sees_the_user_as_plain_text(
    people_everywhere, demo_moderator
):
    profile = people_everywhere["profile"]
    page = client_for(demo_moderator).get(
        reverse("admin:profiles_profile_change", args=[profile.pk])
    )
    assert page.status_code == 200
    value = field_value(page.content.decode(), "User")
    assert unescape(value).strip() == "owner" and "<a " not in value


def test_no_admin_link_the_demo_moderator_sees_answers_403(people_everywhere, demo_moderator):
    """Every change list and change page the moderator reaches from the admin's index, and
    every link on them, opens (or is not a page at all), never a bare 403."""
    client = client_for(demo_moderator)
    seen: set[str] = set()
    forbidden: list[tuple[str, str]] = []
    frontier = ["/admin/"]
    for _depth in range(3):
        following = []
        for url in frontier:
            response = client.get(url)
            if response.status_code != 200 or "text/html" not in response["Content-Type"]:
                continue
            for href in re.findall(r'href="(/admin/[^"?#]*)"', response.content.decode()):
                href = unescape(href)
                if href in seen or "logout" in href:
                    continue
                seen.add(href)
                if client.get(href).status_code == 403:
                    forbidden.append((url, href))
                following.append(href)
        frontier = following
    assert any("/auth/user/" not in h and "/change/" in h for h in seen), "crawl found no pages"
    assert forbidden == []


@pytest.mark.parametrize(
    "model", [m for m in admin.site._registry if m._meta.app_label in ("moderation", "profiles")]
)
def test_every_admin_shows_a_relation_the_moderator_may_not_open_as_text(
    model, demo_moderator
):
    """What Django would link on the model's change page, for the demo moderator: no read-only
    relation to a model whose admin page refuses them (new admins included)."""
    model_admin = admin.site.get_model_admin(model)
    request = RequestFactory().get("/admin/")
    request.user = demo_moderator
    obj = model()
    fieldsets = model_admin.get_fieldsets(request, obj)
    if model_admin.has_change_permission(request, obj):
        readonly = model_admin.get_readonly_fields(request, obj)
    else:
        readonly = flatten_fieldsets(fieldsets)
    shown = set(flatten_fieldsets(fieldsets))
    links = []
    for name in readonly:
        if not isinstance(name, str) or name not in shown:
            continue
        field = next((f for f in model._meta.concrete_fields if f.name == name), None)
        if field is None or not field.is_relation:
            continue
        related = field.related_model
        if admin.site.is_registered(related) and not admin.site.get_model_admin(
            related
        ).has_view_or_change_permission(request):
            links.append(name)
    assert links == []
