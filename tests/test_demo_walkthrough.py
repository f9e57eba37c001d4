"""The first-run walkthrough that ``make run`` prints works as written: the sample photos are
drawn, the resized copy of a flagged sample is refused, and the demo moderator is shown how to
set up two-factor (or has it reset)."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command

from moderation.models import AuditEvent
from tests.two_factor import enrolled_device

pytestmark = pytest.mark.django_db


@pytest.fixture
def debug_on(settings):
    settings.DEBUG = True


def run(name: str, *args, **options) -> str:
    out = StringIO()
    call_command(name, *args, stdout=out, stderr=StringIO(), **options)
    return out.getvalue()


def test_demo_setup_draws_sample_photos_and_prints_what_to_try(debug_on, tmp_path):
    out = run("demo_setup", samples=str(tmp_path / "samples"), address="127.0.0.1:8001")

    photos = sorted(p.name for p in (tmp_path / "samples" / "photos").iterdir())
    copies = sorted(p.name for p in (tmp_path / "samples" / "copies").iterdir())
    assert photos == [f"sample-{n:02d}.jpg" for n in range(1, 13)]
    assert copies == [f"sample-{n:02d}-small.jpg" for n in range(1, 13)]
    assert "What to try" in out and "http://127.0.0.1:8001/signup/" in out
    assert str(tmp_path / "samples" / "copies" / "sample-01-small.jpg") in out
    assert "scan the QR code with an authenticator app" in out


def test_the_walkthroughs_copy_is_refused_once_its_sample_is_flagged(debug_on, tmp_path):
    run("demo_setup", samples=str(tmp_path))
    photo = tmp_path / "photos" / "sample-01.jpg"
    copy = tmp_path / "copies" / "sample-01-small.jpg"
    other = tmp_path / "photos" / "sample-02.jpg"

    run("flag_images", str(photo), reason="walkthrough")
    lines = run("check_image", str(copy), str(other), json=True).splitlines()

    decisions = {item["path"]: item["decision"] for item in map(json.loads, lines)}
    assert decisions == {str(copy): "block", str(other): "pass"}


def test_an_enrolled_demo_moderator_is_told_how_to_reset_and_the_reset_is_audited(
    debug_on, django_user_model
):
    run("demo_setup")
    moderator = django_user_model.objects.get(username="moderator")
    enrolled_device(moderator)
    assert "--reset-two-factor" in run("demo_setup")

    out = run("demo_setup", reset_two_factor=True)

    assert "scan the QR code" in out
    assert AuditEvent.objects.filter(action="2fa_reset", target="user moderator").exists()
