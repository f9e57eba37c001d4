"""Migration 0030 relabels what list sweeps wrote before it: a list's flood hold and resume
(until then the flags' actions) and a list sweep's review items (until then "a sweep after a
flag"); a flag's own events and a flag sweep's items keep theirs. Back and forth."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("moderation", "0029_list_sweeps")]
AFTER = [("moderation", "0030_list_flood_labels")]


def migrate(target):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(target)
    return executor.loader.project_state(target).apps


def test_rows_written_before_0030_get_the_list_labels_and_get_them_back_when_unapplied():
    old = migrate(BEFORE)
    AuditEvent = old.get_model("moderation", "AuditEvent")
    HashList = old.get_model("moderation", "HashList")
    SignalEntry = old.get_model("moderation", "SignalEntry")
    ReviewItem = old.get_model("moderation", "ReviewItem")
    partner = HashList.objects.create(name="partner")
    entry = SignalEntry.objects.create(hash_list=partner, signal_type="pdq", value="a" * 64)
    hold = AuditEvent.objects.create(action="flood_hold", target="hash list partner")
    resume = AuditEvent.objects.create(action="flood_resume", target="hash list partner")
    other = AuditEvent.objects.create(action="flood_hold", target="profile alice (#1)")
    common = {"target_key": "profiles.profile.photo", "file_name": "p.jpg", "dhash": 1}
    by_list = ReviewItem.objects.create(
        object_id=1, signal_entry=entry, distance=0, found_by="sweep", **common
    )
    by_flag = ReviewItem.objects.create(object_id=2, distance=7, found_by="sweep", **common)

    new = migrate(AFTER)

    events = new.get_model("moderation", "AuditEvent").objects
    items = new.get_model("moderation", "ReviewItem").objects
    assert events.get(pk=hold.pk).action == "list_flood_hold"
    assert events.get(pk=resume.pk).action == "list_flood_resume"
    assert events.get(pk=other.pk).action == "flood_hold"
    assert items.get(pk=by_list.pk).found_by == "list_sweep"
    assert items.get(pk=by_flag.pk).found_by == "sweep"

    migrate(BEFORE)

    assert AuditEvent.objects.get(pk=hold.pk).action == "flood_hold"
    assert AuditEvent.objects.get(pk=resume.pk).action == "flood_resume"
    assert ReviewItem.objects.get(pk=by_list.pk).found_by == "sweep"
    migrate(AFTER)
