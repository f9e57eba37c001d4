"""The record in the admin: each flag's "Record" panel, the changelist's columns and precision
filter, keeping a flag after re-review (page and action), a hash list's summary, a list entry's
record, the dashboard's "Flags to re-review", and query counts that do not grow with rows."""

from __future__ import annotations

import re
from html import unescape

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from moderation import desk, precision
from moderation.admin.flags import FlaggedFingerprintAdmin
from moderation.models import AuditEvent, FlaggedFingerprint, HashList, SignalEntry
from tests import images
from tests.admin_pages import FINGERPRINTS, messages_of, run_action, submit_confirmation
from tests.helpers import ban
from tests.record_scenes import dismiss_near_misses, queue_near_miss

pytestmark = pytest.mark.django_db

DASHBOARD = "admin:moderation_dashboard"


def flag_page(client, flagged) -> str:
    response = client.get(reverse("admin:moderation_flaggedfingerprint_change", args=[flagged.pk]))
    assert response.status_code == 200
    return response.content.decode()


def text_of(html: str) -> str:
    """The page's words as a reader sees them: tags dropped, entities decoded, spaces
    collapsed (none before punctuation)."""
    words = " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())
    return re.sub(r" ([.,:;])", r"\1", words)


def listed(client, **params) -> list[FlaggedFingerprint]:
    response = client.get(reverse(FINGERPRINTS), params)
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


# --- a flag's page ---------------------------------------------------------------------------


def test_the_flag_page_shows_its_record_and_says_what_precision_means(moderator_client, poor_flag):
    page = text_of(flag_page(moderator_client, poor_flag.flagged))

    assert "Record" in page
    assert (
        "photos taken down by its sweeps and rechecks 3 1 appeal upheld 2 appeals overturned"
        in (page)
    )
    assert "uploads refused 1" in page
    assert "near misses queued for review 3 0 banned 3 dismissed" in page
    assert "judged decisions 6 1 5" in page
    assert "Precision: 16 % (1 of 6 judged right): poor" in page
    assert "Precision = judged right ÷ judged decisions." in page
    assert 'Rated after 5 judged decisions ("not enough data" before); poor below 80 %.' in page
    assert "Listed for re-review" in page


def test_a_flag_with_too_few_decisions_says_not_enough_data(moderator_client, quiet_flag):
    page = text_of(flag_page(moderator_client, quiet_flag))

    assert "Precision: not enough data (2 judged)" in page
    assert "Listed for re-review" not in page


def test_keeping_a_flag_from_its_page_is_audited_and_needs_a_reason(
    moderator_client, moderator, poor_flag
):
    flagged = poor_flag.flagged
    url = reverse("admin:moderation_flaggedfingerprint_rereview", args=[flagged.pk])

    refused = moderator_client.post(url, {"reason": ""}, follow=True)
    assert "Nothing marked: say why the flag stays." in messages_of(refused)
    assert not AuditEvent.objects.filter(action="rereview").exists()

    kept = moderator_client.post(url, {"reason": "the originals match"}, follow=True)

    assert kept.redirect_chain[-1][0] == reverse(
        "admin:moderation_flaggedfingerprint_change", args=[flagged.pk]
    )
    event = AuditEvent.objects.get(action="rereview")
    assert (event.actor, event.fingerprint_id) == (moderator, flagged.pk)
    page = text_of(kept.content.decode())
    assert "Re-reviewed and kept on" in page and "by mod" in page
    assert "Listed for re-review" not in page


def test_keeping_a_flag_needs_the_flag_permission(staff_with, poor_flag):
    viewer = staff_with("moderation.view_flaggedfingerprint")
    url = reverse("admin:moderation_flaggedfingerprint_rereview", args=[poor_flag.flagged.pk])

    assert "Keep it (mark re-reviewed)" not in flag_page(viewer, poor_flag.flagged)
    assert viewer.post(url, {"reason": "fine"}).status_code == 403
    assert viewer.get(url).status_code == 405
    assert not AuditEvent.objects.filter(action="rereview").exists()


# --- the changelist ----------------------------------------------------------------------------


def test_the_changelist_shows_matches_judged_and_precision(moderator_client, poor_flag, quiet_flag):
    page = text_of(moderator_client.get(reverse(FINGERPRINTS)).content.decode())

    assert "3 down, 1 refused, 3 queued" in page
    assert "1 right, 5 wrong" in page
    assert "16 % (poor)" in page
    assert "1 down, 0 refused, 1 queued" in page
    assert "not enough data" in page


def test_the_precision_filter_picks_poor_ok_and_not_enough_data(
    moderator_client, poor_flag, quiet_flag
):
    good = ban(images.photo(1705), keep_original=False)
    for n in range(5):
        queue_near_miss(good, n, status="banned")
    unjudged = ban(images.photo(1706), keep_original=False)

    assert listed(moderator_client, precision="poor") == [poor_flag.flagged]
    assert listed(moderator_client, precision="ok") == [good]
    assert set(listed(moderator_client, precision="not_enough")) == {quiet_flag, unjudged}
    assert listed(moderator_client, precision="rereview") == [poor_flag.flagged]
    with_counts = text_of(
        moderator_client.get(reverse(FINGERPRINTS), {"_facets": "1"}).content.decode()
    )
    assert "poor (1) ok (1) not enough data (2) poor, to re-review (1)" in with_counts


def test_the_changelist_sorts_by_precision_with_unjudged_flags_last(
    moderator_client, poor_flag, quiet_flag
):
    unjudged = ban(images.photo(1706), keep_original=False)
    # The admin numbers its columns with the action checkbox first.
    column = FlaggedFingerprintAdmin.list_display.index("record_precision") + 1

    ascending = listed(moderator_client, o=str(column))

    assert ascending == [poor_flag.flagged, quiet_flag, unjudged]


def test_keeping_selected_flags_asks_a_reason_then_takes_them_off_the_re_review_list(
    moderator_client, poor_flag
):
    page = run_action(moderator_client, FINGERPRINTS, "rereview_selected", [poor_flag.flagged])
    assert "16 % (1 of 6 judged right): poor" in text_of(page.content.decode())

    done = submit_confirmation(moderator_client, FINGERPRINTS, page, "originals checked")

    assert "Marked 1 flag re-reviewed (kept)." in messages_of(done)
    assert AuditEvent.objects.filter(action="rereview", reason__startswith="originals").count() == 1
    assert listed(moderator_client, precision="rereview") == []
    assert listed(moderator_client, precision="poor") == [poor_flag.flagged]


def test_the_changelist_query_count_does_not_grow_with_flags_or_their_records(
    moderator_client, moderator
):
    def add_flags(seeds):
        for seed in seeds:
            flagged = ban(images.photo(seed), keep_original=False)
            queue_near_miss(flagged, 0)
            dismiss_near_misses(flagged, 2, moderator, first=1)

    def queries(**params) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert moderator_client.get(reverse(FINGERPRINTS), params).status_code == 200
        return len(captured)

    add_flags([1710])
    few = {p: queries(precision=p) for p in ("", "poor", "rereview")}
    add_flags([1711, 1712, 1713, 1714])
    assert {p: queries(precision=p) for p in ("", "poor", "rereview")} == few


# --- a hash list, a list entry -----------------------------------------------------------------


def test_the_hash_list_page_summarises_its_flags_records(moderator_client, poor_flag, quiet_flag):
    hash_list = poor_flag.flagged.hash_list
    response = moderator_client.get(
        reverse("admin:moderation_hashlist_change", args=[hash_list.pk])
    )
    html = response.content.decode()
    page = text_of(html)

    assert "flags 9 2 6 8 25 % (2 of 8 judged right): poor" in page
    assert "Its flags by precision: 1 poor, 0 ok, 1 not enough data" in page
    flags_url = reverse(FINGERPRINTS)
    assert f'href="{flags_url}?hash_list__id__exact={hash_list.pk}&amp;precision=poor"' in html
    assert "Precision = right ÷ judged, pooled over the list" in page


def test_a_list_entry_page_shows_its_record(moderator_client):
    entry = SignalEntry.objects.create(
        hash_list=HashList.objects.create(name="partner"),
        signal_type="pdq",
        value="e" * 64,
        times_matched=4,
        times_dismissed=1,
    )
    response = moderator_client.get(reverse("admin:moderation_signalentry_change", args=[entry.pk]))
    page = text_of(response.content.decode())

    assert "Matched 4 uploads: 0 refused, 0 queued for review (0 banned, 1 dismissed)." in page
    assert "Precision: not enough data (1 judged)" in page


# --- the dashboard -----------------------------------------------------------------------------


def rereview_block(client) -> str:
    """The dashboard's "Flags to re-review" section."""
    html = client.get(reverse(DASHBOARD)).content.decode()
    block = html[html.index('<section id="rereview-flags">') :]
    return block[: block.index("</section>")]


def test_the_dashboard_lists_flags_to_re_review_with_a_link_to_the_filtered_list(
    moderator_client, moderator, poor_flag, quiet_flag
):
    block = rereview_block(moderator_client)

    assert f'href="{reverse(FINGERPRINTS)}?precision=rereview"' in block
    assert "1 flag with poor precision:" in text_of(block)
    assert f'id="rereview-flag-{poor_flag.flagged.pk}"' in block
    assert poor_flag.flagged.hex in block and quiet_flag.hex not in block
    assert "16 %" in block and "1 right of 6" in text_of(block)

    desk.flag_rereview(flagged=poor_flag.flagged, actor=moderator, reason="kept")
    after = rereview_block(moderator_client)
    assert "0 flags with poor precision." in text_of(after)
    assert poor_flag.flagged.hex not in after


def test_the_dashboard_query_count_does_not_grow_with_flags_to_re_review(
    moderator_client, moderator
):
    def add_poor_flags(seeds):
        for seed in seeds:
            flagged = ban(images.photo(seed), keep_original=False)
            dismiss_near_misses(flagged, 5, moderator)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert moderator_client.get(reverse(DASHBOARD)).status_code == 200
        return len(captured)

    add_poor_flags([1720])
    few = queries()
    add_poor_flags([1721, 1722, 1723])
    assert len(precision.to_rereview(FlaggedFingerprint.objects.all())) == 4
    assert queries() == few
