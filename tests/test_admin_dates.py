"""Every admin and moderator page writes a date one way: the site's format module
(``config/formats``), never a format string of a template's or a view's own."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import formats

from moderation.models import AuditEvent, RefusedUpload
from tests.helpers import moderator_client

ROOT = Path(__file__).resolve().parent.parent
WHEN = datetime(2026, 3, 4, 5, 6, tzinfo=UTC)
SHOWN = "2026-03-04 05:06"


def test_the_named_formats_all_give_the_one_date_and_time_form():
    assert formats.date_format(WHEN, "DATETIME_FORMAT") == SHOWN
    assert formats.date_format(WHEN, "SHORT_DATETIME_FORMAT") == SHOWN
    assert formats.date_format(WHEN.date(), "DATE_FORMAT") == "2026-03-04"
    assert formats.date_format(WHEN.date(), "SHORT_DATE_FORMAT") == "2026-03-04"


def test_no_admin_template_spells_out_a_date_format_of_its_own():
    own = re.compile(r"""\|date:["'](?![A-Z_]+_FORMAT["'])""")
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in (ROOT / "templates" / "admin").rglob("*.html")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if own.search(line)
    ]
    assert offenders == []


def test_no_admin_or_model_code_formats_a_date_by_hand():
    own = re.compile(r"strftime\(|:%Y-%m-%d|:%H:%M")
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for folder in ("moderation/admin", "moderation/models", "profiles")
        for path in (ROOT / folder).rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if own.search(line)
    ]
    assert offenders == []


@pytest.mark.django_db
def test_a_list_a_record_page_and_a_records_name_show_the_same_date(moderator):
    event = AuditEvent.objects.create(action="flag", target="profile of x", created_at=WHEN)
    refused = RefusedUpload.objects.create(code="banned_image", created_at=WHEN)
    client = moderator_client(moderator)

    trail = client.get(reverse("admin:moderation_auditevent_changelist")).content.decode()
    page = client.get(
        reverse("admin:moderation_refusedupload_change", args=[refused.pk])
    ).content.decode()

    assert SHOWN in trail and SHOWN in page and str(event).endswith(SHOWN)
    assert "March 4, 2026" not in trail + page and "5:06 a.m." not in trail + page
