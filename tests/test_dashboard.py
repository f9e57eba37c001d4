"""The staff dashboard: refusals per day with a chart, the queue, top fingerprints,
users with repeated refusals."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from moderation import dashboard, flagging
from moderation.models import FlaggedFingerprint, RefusedUpload, ReviewItem
from tests import images

pytestmark = pytest.mark.django_db

DASHBOARD = "admin:moderation_dashboard"


@pytest.fixture
def flagged():
    return flagging.flag_image(
        file=images.upload(images.photo(950), "b.png", "PNG"),
        reason="bad",
        source=FlaggedFingerprint.Source.COMMAND,
        keep_original=False,
    ).fingerprint


def refuse(user, *, days_ago: int = 0, nearest=None) -> RefusedUpload:
    row = RefusedUpload.objects.create(
        user=user, code="banned_image", nearest=nearest, distance=0 if nearest else None
    )
    RefusedUpload.objects.filter(pk=row.pk).update(
        created_at=timezone.now() - timedelta(days=days_ago)
    )
    return row


def page(user) -> str:
    client = Client()
    client.force_login(user)
    response = client.get(reverse(DASHBOARD))
    assert response.status_code == 200
    return response.content.decode()


def test_refusals_are_counted_per_day_with_empty_days_kept(user):
    refuse(user, days_ago=0)
    refuse(user, days_ago=0)
    refuse(user, days_ago=3)
    refuse(user, days_ago=40)  # outside the window

    per_day = dashboard.refusals_per_day(30)

    assert len(per_day) == 30
    assert per_day[-1]["count"] == 2 and per_day[-4]["count"] == 1
    assert sum(d["count"] for d in per_day) == 3
    assert per_day[-1]["height"] == dashboard.CHART_HEIGHT  # the tallest bar
    assert per_day[-4]["height"] == dashboard.CHART_HEIGHT // 2


def test_the_dashboard_draws_the_chart_inline_without_any_external_script(user, moderator):
    refuse(user)
    html = page(moderator)
    assert '<svg id="refusals-chart"' in html and html.count("<rect ") == 30
    # Every script and stylesheet is the site's own (a random CSP nonce may spell "cdn", so
    # the addresses are what is checked, not the page's text).
    addresses = re.findall(r'<(?:script|link)[^>]*?(?:src|href)="([^"]*)"', html)
    assert addresses and all(a.startswith("/") and not a.startswith("//") for a in addresses)


def test_the_dashboard_shows_the_queue_size_and_age(user, moderator, flagged):
    item = ReviewItem.objects.create(
        target_key="profiles.profile.photo",
        object_id=1,
        file_name="photos/a.jpg",
        dhash=1,
        fingerprint=flagged,
        distance=14,
    )
    ReviewItem.objects.filter(pk=item.pk).update(created_at=timezone.now() - timedelta(days=2))

    html = page(moderator)

    assert "1 upload waiting" in html and "the oldest for 2" in html


def test_the_dashboard_ranks_fingerprints_by_hits_and_lists_repeat_users(
    user, moderator, flagged, django_user_model
):
    once = django_user_model.objects.create_user(username="once", password="pw")
    for _ in range(3):
        refuse(user, nearest=flagged)
    refuse(once)

    summary = dashboard.summary()
    html = page(moderator)

    assert [(f.pk, f.refusals) for f in summary["top_fingerprints"]] == [(flagged.pk, 3)]
    assert [(u["user__username"], u["n"]) for u in summary["repeat_users"]] == [("alice", 3)]
    assert flagged.hex in html and "alice" in html
    assert ">once<" not in html


def test_the_dashboard_is_for_moderators_only(user, django_user_model):
    staff = django_user_model.objects.create_user(username="s", password="pw", is_staff=True)
    client = Client()
    client.force_login(staff)
    assert client.get(reverse(DASHBOARD)).status_code == 403
    client.force_login(user)
    assert client.get(reverse(DASHBOARD)).status_code == 302  # to the admin login


# --- reaching the dashboard, and what waits besides the queue ------------------------------


def test_the_admin_index_and_top_bar_link_the_dashboard_for_staff_who_may_see_it(moderator):
    client = Client()
    client.force_login(moderator)
    url = reverse(DASHBOARD)

    index = client.get(reverse("admin:index")).content.decode()
    elsewhere = client.get(reverse("admin:moderation_auditevent_changelist")).content.decode()

    assert 'id="moderation-dashboard-module"' in index and f'href="{url}"' in index
    assert f'<a href="{url}" id="userlinks-dashboard">' in elsewhere


def test_staff_who_may_not_see_the_dashboard_get_no_link_to_it(django_user_model):
    from django.contrib.auth.models import Permission

    staff = django_user_model.objects.create_user(username="s", password="pw", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_auditevent"))
    client = Client()
    client.force_login(staff)

    index = client.get(reverse("admin:index")).content.decode()

    assert reverse(DASHBOARD) not in index
    assert client.get(reverse(DASHBOARD)).status_code == 403


def test_the_dashboard_counts_open_appeals_and_open_reports_and_links_their_lists(
    user, moderator, flagged, django_user_model
):
    from moderation.models import Appeal, Notice, Report

    notices = [
        Notice.objects.create(
            user=user, kind=Notice.Kind.TAKEDOWN, fingerprint=flagged, ground="g", dhash=1,
            created_at=timezone.now(),
        )
        for _ in range(3)
    ]
    for notice, status in zip(notices, ["open", "open", "upheld"], strict=True):
        Appeal.objects.create(
            notice=notice, text="it is me", status=status, created_at=timezone.now()
        )
    for status in ("open", "dismissed"):
        Report.objects.create(
            target_key="profiles.profile.photo", object_id=1, file_name="a.jpg", status=status,
            created_at=timezone.now(),
        )

    html = page(moderator)

    appeals = reverse("admin:moderation_appeal_changelist") + "?status=open"
    reports = reverse("admin:moderation_report_changelist") + "?status=open"
    assert f'<a href="{appeals}" id="dashboard-appeals-open">2 open appeals</a>' in html
    assert f'<a href="{reports}" id="dashboard-reports-open">1 open report</a>' in html


# --- hash lists held by the flood guard ------------------------------------------------------


@pytest.fixture
def held_list(make_profile, settings, django_capture_on_commit_callbacks):
    """A partner list whose import would have taken down three people's photos, with the
    flood guard allowing one: held in shadow before any came down."""
    from moderation.models import HashList
    from tests.test_list_sweeps import import_lines, pdq_of

    settings.MODERATION_FLOOD_MAX_USERS = 1
    img = images.photo(951)
    copies = [make_profile(name, img) for name in ("p1", "p2", "p3")]
    partner = HashList.objects.create(name="partner", description="Partner X's spam hashes")
    with django_capture_on_commit_callbacks(execute=True):
        import_lines(partner, [pdq_of(img)])
    partner.refresh_from_db()
    assert partner.mode == HashList.Mode.SHADOW
    return partner, copies


def decide_list(user, hash_list, decision: str, capture):
    client = Client()
    client.force_login(user)
    with capture(execute=True):
        return client.post(
            reverse("admin:moderation_hashlist_flood", args=[hash_list.pk]),
            {"decision": decision},
        )


def test_a_list_held_by_the_flood_guard_is_shown_with_resume_and_drop(held_list, moderator):
    partner, _ = held_list

    html = page(moderator)

    row = re.search(rf'<tr id="held-list-{partner.pk}">.*?</tr>', html, re.S).group(0)
    assert "partner" in row and "Partner X&#x27;s spam hashes" in row
    assert "0 taken down" in row
    action = reverse("admin:moderation_hashlist_flood", args=[partner.pk])
    assert row.count(f'action="{action}"') == 2
    assert 'value="resume"' in row and 'value="drop"' in row


def test_resuming_a_held_list_enforces_it_and_its_sweep_takes_the_photos_down(
    held_list, moderator, django_capture_on_commit_callbacks
):
    from moderation.models import AuditEvent, HashList
    from profiles.models import Profile

    partner, copies = held_list

    response = decide_list(moderator, partner, "resume", django_capture_on_commit_callbacks)

    assert response.status_code == 302 and response.url == reverse(DASHBOARD)
    partner.refresh_from_db()
    assert partner.mode == HashList.Mode.ENFORCE
    assert not any(Profile.objects.get(pk=p.pk).photo for p in copies)
    resume = AuditEvent.objects.get(action=AuditEvent.Action.LIST_FLOOD_RESUME)
    assert (resume.actor, resume.target) == (moderator, "hash list partner")
    assert f'id="held-list-{partner.pk}"' not in page(moderator)


def test_dropping_a_held_list_leaves_it_in_shadow_and_off_the_dashboard(
    held_list, moderator, django_capture_on_commit_callbacks
):
    from moderation.models import AuditEvent, HashList
    from profiles.models import Profile

    partner, copies = held_list

    response = decide_list(moderator, partner, "drop", django_capture_on_commit_callbacks)

    assert response.status_code == 302
    partner.refresh_from_db()
    assert partner.mode == HashList.Mode.SHADOW
    assert all(Profile.objects.get(pk=p.pk).photo for p in copies)
    drop = AuditEvent.objects.get(action=AuditEvent.Action.LIST_FLOOD_DROP)
    assert drop.get_action_display() == "Held hash list dropped (left in shadow)"
    assert 'id="flood-held-lists"' not in page(moderator)
    # Decided: a second click (another tab) changes nothing.
    decide_list(moderator, partner, "resume", django_capture_on_commit_callbacks)
    partner.refresh_from_db()
    assert partner.mode == HashList.Mode.SHADOW


def test_a_list_put_in_shadow_by_hand_is_not_shown_as_held(moderator):
    from moderation.models import HashList

    HashList.objects.create(name="trial", mode=HashList.Mode.SHADOW)

    assert 'id="flood-held-lists"' not in page(moderator)


def test_staff_who_may_not_change_lists_see_a_held_list_but_cannot_decide_it(
    held_list, django_user_model, django_capture_on_commit_callbacks
):
    from django.contrib.auth.models import Permission

    partner, _ = held_list
    viewer = django_user_model.objects.create_user(username="viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_refusedupload"))

    html = page(viewer)

    assert f'id="held-list-{partner.pk}"' in html
    assert reverse("admin:moderation_hashlist_flood", args=[partner.pk]) not in html
    response = decide_list(viewer, partner, "resume", django_capture_on_commit_callbacks)
    assert response.status_code == 403


def test_the_per_day_table_is_left_out_when_nothing_was_refused(moderator):
    html = page(moderator)
    assert '<svg id="refusals-chart"' in html and 'id="refusals-table"' not in html
