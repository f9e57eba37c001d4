"""``/ready`` answers for the hash lists too: a web process is ready once its PDQ entries have
applied every committed change, so an upload it checks meets the lists as they stand."""

from __future__ import annotations

import pytest
from django.db.models import Max
from django.test import Client

from moderation import signal_set
from moderation.models import HashList, SignalChange, SignalType
from tests.test_signals import add_entry

pytestmark = pytest.mark.django_db


def test_ready_brings_this_process_to_the_newest_list_change_and_says_so(settings):
    settings.TASKS = {"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}}
    partner = HashList.objects.create(name="partner")
    Client().get("/ready")  # this process's PDQ entries loaded, before the entry below
    add_entry(partner, SignalType.PDQ, "ab" * 32, source="exchange")
    newest = SignalChange.objects.aggregate(last=Max("id"))["last"]

    response = Client().get("/ready")

    assert response.status_code == 200, response.json()
    assert response.json()["checks"]["hash_lists"] == "OK"
    assert signal_set.current().last_change_id == newest
    assert [key for key, _ in signal_set.current().candidates("ab" * 32)] != []
