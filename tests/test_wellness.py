"""Reviewer wellness: images in the admin are blurred until clicked unless the moderator turned
that off; views are counted per moderator and day and shown to them and to admins; near misses
of one flag are decided together; after a decision the next item opens."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from moderation import sweeping, wellness
from moderation.models import AllowedMatch, AuditEvent, ImageViewDay, ReviewItem
from tests import images
from tests.helpers import ban, flag_file, moderator_client

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("narrow_distances")]


def body_classes(html: str) -> list[str]:
    return re.search(r'<body class="([^"]*)"', html).group(1).split()


@pytest.fixture
def three_near_misses(make_profile, django_capture_on_commit_callbacks):
    """Three profiles whose photos are near misses of one flag, queued for review."""
    original = images.photo(870)
    flagged = ban(original)
    with django_capture_on_commit_callbacks(execute=True):
        for i in range(3):
            make_profile(f"near{i}", images.near_miss(original, seed=20 + i))
    items = list(ReviewItem.objects.pending())
    assert len(items) == 3
    return flagged, items


def test_review_page_images_are_blurred_by_default_by_a_static_script(three_near_misses, moderator):
    _, items = three_near_misses
    page = moderator_client(moderator).get(
        reverse("admin:moderation_reviewitem_change", args=[items[0].pk])
    )
    html = page.content.decode()
    assert "blur-images" in body_classes(html)
    assert html.count('class="mod-img') >= 2  # the upload, the original, the group's
    assert "moderation/wellness.js" in html and "moderation/wellness.css" in html
    # No inline script (a strict Content-Security-Policy stays possible): every <script> has src.
    assert all("src=" in tag for tag in re.findall(r"<script[^>]*>", html))
    assert re.search(r'<img(?![^>]*class="mod-img[" ])[^>]*src="[^"]*/photos/', html) is None


def test_a_moderator_who_turns_blurring_off_sees_images_as_they_are(three_near_misses, moderator):
    _, items = three_near_misses
    client = moderator_client(moderator)
    response = client.post(reverse("moderation:image-preference"), {"blur": "0"})
    assert response.status_code == 302
    assert not wellness.blurs_images(moderator)
    html = client.get(reverse("admin:moderation_reviewitem_changelist")).content.decode()
    assert "blur-images" not in body_classes(html)

    client.post(reverse("moderation:image-preference"), {"blur": "1"})
    html = client.get(reverse("admin:moderation_reviewitem_changelist")).content.decode()
    assert "blur-images" in body_classes(html)


def test_reveals_are_counted_per_moderator_and_day(moderator, django_user_model):
    client = moderator_client(moderator)
    url = reverse("moderation:image-viewed")
    assert client.post(url).json() == {"today": 1}
    assert client.post(url, {"views": "3"}).json() == {"today": 4}
    assert client.post(url, {"views": "-5"}).json() == {"today": 4}  # never counts down
    assert client.post(url, {"views": "lots"}).status_code == 400
    assert client.get(url).status_code == 405
    assert ImageViewDay.objects.get(user=moderator).views == 4


def test_only_staff_can_count_views(client, user):
    client.force_login(user)
    response = client.post(reverse("moderation:image-viewed"))
    assert response.status_code == 302 and "/admin/login/" in response.url
    assert not ImageViewDay.objects.exists()


def test_a_full_size_view_of_quarantined_evidence_counts_and_an_embedded_one_does_not(
    moderator,
):
    flagged = ban(images.photo(871))
    client = moderator_client(moderator)
    url = reverse("moderation:quarantined-file", args=[flagged.original.name])
    assert client.get(url, headers={"Sec-Fetch-Dest": "image"}).status_code == 200
    assert wellness.views_today(moderator) == 0
    assert client.get(url, headers={"Sec-Fetch-Dest": "document"}).status_code == 200
    assert wellness.views_today(moderator) == 1


def test_the_dashboard_shows_each_moderator_their_count_and_admins_everyones(
    moderator, admin_client, admin_user
):
    wellness.count_views(user=moderator, views=7)
    wellness.count_views(user=admin_user, views=2)
    mine = moderator_client(moderator).get(reverse("admin:moderation_dashboard")).content.decode()
    assert re.search(r'id="dashboard-images-today">7<', mine)
    assert "views-per-moderator" not in mine

    everyone = admin_client.get(reverse("admin:moderation_dashboard")).content.decode()
    table = everyone[everyone.index('id="views-per-moderator"') :]
    assert re.search(r"<td>mod</td><td>7</td><td>7</td>", table)
    assert re.search(r"<td>admin</td><td>2</td><td>2</td>", table)


def test_one_decision_dismisses_every_pending_near_miss_of_the_flag(three_near_misses, moderator):
    flagged, items = three_near_misses
    client = moderator_client(moderator)
    url = reverse("admin:moderation_reviewitem_change", args=[items[0].pk])
    page = client.get(url).content.decode()
    assert "2 other pending near misses of this flag" in page

    response = client.post(url, {"decision": "dismiss", "group": "1"})

    assert response.status_code == 302
    assert set(ReviewItem.objects.values_list("status", flat=True)) == {"dismissed"}
    assert AllowedMatch.objects.filter(fingerprint=flagged).count() == 3


def test_after_a_decision_the_next_pending_item_opens(three_near_misses, moderator):
    _, items = three_near_misses
    client = moderator_client(moderator)
    first = reverse("admin:moderation_reviewitem_change", args=[items[0].pk])
    second = reverse("admin:moderation_reviewitem_change", args=[items[1].pk])
    page = client.get(first).content.decode()
    assert f'href="{second}" data-shortcut="n"' in page
    assert 'data-shortcut="b"' in page and 'data-shortcut="d"' in page

    assert client.post(first, {"decision": "dismiss"}).url == second
    client.post(second, {"decision": "dismiss"})
    last = reverse("admin:moderation_reviewitem_change", args=[items[2].pk])
    assert client.post(last, {"decision": "dismiss"}).url == reverse(
        "admin:moderation_reviewitem_changelist"
    )


def test_takedown_evidence_is_shown_blurred_on_its_audit_page(moderator, make_profile):
    picture = images.photo(872)
    flagged = flag_file(picture).fingerprint  # its sweep is not run here: the takedown below is
    profile = make_profile("copy", picture)
    assert sweeping.take_down_image(instance=profile, flagged=flagged, distance=0)
    event = AuditEvent.objects.get(action=AuditEvent.Action.TAKEDOWN)

    page = moderator_client(moderator).get(
        reverse("admin:moderation_auditevent_change", args=[event.pk])
    )

    evidence = reverse("moderation:quarantined-file", args=[event.evidence.name])
    shown = rf'<img class="mod-img[^"]*" src="{re.escape(evidence)}"'
    assert re.search(shown, page.content.decode())
