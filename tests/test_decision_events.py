"""Every moderation decision is also a structured log event: operators follow flags, takedowns
and refusals in their log tools without querying the database, and nothing of the image (no
bytes, no hash of a refused upload) or of the uploader's address goes into the line."""

from __future__ import annotations

import json
import logging

import pytest

from config.jsonlog import JSONFormatter, RequestContextFilter
from moderation import flagging
from tests import images
from tests.helpers import ban, post_photo


class Lines(logging.Handler):
    """Formats records as production does (JSON) and keeps the lines."""

    def __init__(self):
        super().__init__()
        self.setFormatter(JSONFormatter())
        self.addFilter(RequestContextFilter())
        self.lines: list[dict] = []

    def emit(self, record):
        self.lines.append(json.loads(self.format(record)))

    def events(self, name: str) -> list[dict]:
        return [line for line in self.lines if line.get("event") == name]


@pytest.fixture
def log_lines():
    """The decision events, at the level production logs them (INFO; see settings)."""
    handler = Lines()
    logger = logging.getLogger("moderation")
    decisions = logging.getLogger("moderation.decisions")
    level = decisions.level
    decisions.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    decisions.setLevel(level)


def test_a_flag_is_logged_once_it_commits(moderator, log_lines, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        flagged = ban(images.photo(1), reason="known bad", actor=moderator)
        assert log_lines.events("moderation.flag") == []  # not before the commit

    for callback in callbacks:
        callback()
    [event] = log_lines.events("moderation.flag")
    assert event["logger"] == "moderation.decisions" and event["level"] == "INFO"
    assert event["message"] == f"Flagged fingerprint #{flagged.pk}"
    assert (event["fingerprint_id"], event["actor_id"]) == (flagged.pk, moderator.pk)
    assert event["reason"] == "known bad"


def test_an_unflag_is_logged(moderator, log_lines, django_capture_on_commit_callbacks):
    flagged = ban(images.photo(2))
    with django_capture_on_commit_callbacks(execute=True):
        flagging.unflag_fingerprint(flagged=flagged, actor=moderator, reason="mistake")

    [event] = log_lines.events("moderation.unflag")
    assert (event["fingerprint_id"], event["actor_id"]) == (flagged.pk, moderator.pk)


def test_a_refused_upload_is_logged_with_the_request_and_user_and_no_address(
    client, user, log_lines
):
    flagged = ban(images.photo(3))
    client.force_login(user)

    response = post_photo(client, images.photo(3))

    assert response.status_code == 200  # the form again, with the generic message
    [event] = log_lines.events("moderation.upload_refused")
    assert event["logger"] == "moderation.decisions"
    assert event["code"] == "banned_image"
    assert (event["fingerprint_id"], event["uploader_id"]) == (flagged.pk, user.pk)
    assert event["user_id"] == user.pk
    assert event["request_id"] == response.headers["X-Request-ID"]
    assert "127.0.0.1" not in json.dumps(event)
