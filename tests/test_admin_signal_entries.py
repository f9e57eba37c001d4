"""Moderators see where each list entry came from and how it fared: list, source, import, when,
times matched and times dismissed; they can retract entries, which are kept."""

from __future__ import annotations

import io

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from moderation import signal_lists
from moderation.models import HashList, SignalEntry
from tests.helpers import moderator_client

pytestmark = pytest.mark.django_db

P1 = "4" * 64


@pytest.fixture
def imported():
    hash_list = HashList.objects.create(name="partner list")
    imp = signal_lists.import_start(
        hash_list=hash_list,
        file=io.BytesIO(f"{P1} csam\n".encode()),
        file_name="clearinghouse.txt",
        fmt="text",
        source="clearing house",
    )
    signal_lists.run_import(imp)
    entry = SignalEntry.objects.get()
    SignalEntry.objects.filter(pk=entry.pk).update(times_matched=7, times_dismissed=2)
    return entry


def test_the_entry_list_shows_provenance_and_feedback(moderator, imported):
    page = moderator_client(moderator).get(reverse("admin:moderation_signalentry_changelist"))
    html = page.content.decode()
    assert page.status_code == 200
    for shown in ("partner list", "clearing house", "clearinghouse.txt", P1[:16], ">7<", ">2<"):
        assert shown in html, shown


def test_an_entrys_page_shows_its_import_and_tags(moderator, imported):
    url = reverse("admin:moderation_signalentry_change", args=[imported.pk])
    html = moderator_client(moderator).get(url).content.decode()
    assert P1 in html and "csam" in html and "clearinghouse.txt" in html


def test_the_hash_list_page_counts_its_entries(moderator, imported):
    html = (
        moderator_client(moderator)
        .get(reverse("admin:moderation_hashlist_changelist"))
        .content.decode()
    )
    pk = imported.hash_list_id
    assert f'?hash_list__id__exact={pk}&active__exact=1">1</a>' in html


def test_retracting_from_the_admin_keeps_the_entry_and_stops_its_matches(moderator, imported):
    from moderation import signals

    response = moderator_client(moderator).post(
        reverse("admin:moderation_signalentry_changelist"),
        {"action": "retract", ACTION_CHECKBOX_NAME: [imported.pk]},
        follow=True,
    )
    assert "1 entry retracted." in response.content.decode()
    imported.refresh_from_db()
    assert (imported.active, imported.retracted_at is not None) == (False, True)
    assert signals.lookup("pdq", P1) == []
