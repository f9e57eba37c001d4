"""API tokens in the admin: issuing shows the secret once (and it works over HTTP at once),
revoking asks for confirmation and the token's next call is refused; both are audited, and a
token is never deleted. The ``issue_api_token`` command does the same without a browser."""

from __future__ import annotations

import io
import re

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from moderation.api import tokens
from moderation.models import ApiToken, AuditEvent
from tests.api_client import call

pytestmark = pytest.mark.django_db(transaction=True)

SECRET_ON_PAGE = re.compile(r'id="api-token-secret"[^>]*>([^<]+)</code>')


def test_issuing_a_token_shows_its_secret_once_and_it_works_over_http(admin_client, live_server):
    page = admin_client.post(
        reverse("admin:moderation_apitoken_add"), {"name": "chat-attachments", "rate_limit": 100}
    )

    assert page.status_code == 200 and "no-store" in page["Cache-Control"]
    secret = SECRET_ON_PAGE.search(page.content.decode()).group(1)
    token = ApiToken.objects.get()
    assert (token.name, token.rate_limit, token.created_by.username) == (
        "chat-attachments",
        100,
        "admin",
    )
    assert token.key_digest == tokens.digest_of(secret) and secret.startswith(token.prefix)
    event = AuditEvent.objects.get(action=AuditEvent.Action.TOKEN_ISSUE)
    assert event.actor.username == "admin" and token.prefix in event.target
    reply = call(live_server.url + "/api", "GET", "/m/index/status", token=secret)
    assert reply.status == 200
    change = admin_client.get(reverse("admin:moderation_apitoken_change", args=[token.pk]))
    assert change.status_code == 200 and secret not in change.content.decode()


def test_the_issue_form_refuses_a_token_without_a_name(admin_client):
    page = admin_client.post(reverse("admin:moderation_apitoken_add"), {"rate_limit": 100})
    assert page.status_code == 200 and not ApiToken.objects.exists()
    assert SECRET_ON_PAGE.search(page.content.decode()) is None


def test_revoking_asks_for_confirmation_then_the_tokens_next_call_is_401(admin_client, live_server):
    issued = tokens.token_issue(name="old-service", actor=None)
    changelist = reverse("admin:moderation_apitoken_changelist")
    selected = {"action": "revoke_selected", ACTION_CHECKBOX_NAME: [issued.token.pk]}

    confirm = admin_client.post(changelist, selected)
    assert confirm.status_code == 200 and issued.token.prefix in confirm.content.decode()
    assert ApiToken.objects.active().exists()

    done = admin_client.post(changelist, {**selected, "confirm": "yes", "reason": "leaked"})

    assert done.status_code == 302
    revoked = ApiToken.objects.get()
    assert revoked.revoked_at is not None and revoked.revoked_by.username == "admin"
    event = AuditEvent.objects.get(action=AuditEvent.Action.TOKEN_REVOKE)
    assert (event.actor.username, event.reason) == ("admin", "leaked")
    reply = call(live_server.url + "/api", "GET", "/m/index/status", token=issued.secret)
    assert reply.status == 401


def test_revoking_a_revoked_token_again_changes_and_audits_nothing():
    issued = tokens.token_issue(name="old-service", actor=None)
    assert tokens.tokens_revoke(tokens=[issued.token], actor=None) == 1
    assert tokens.tokens_revoke(tokens=[issued.token], actor=None) == 0
    assert AuditEvent.objects.filter(action=AuditEvent.Action.TOKEN_REVOKE).count() == 1


def test_a_token_cannot_be_deleted_even_by_a_superuser(admin_client):
    issued = tokens.token_issue(name="svc", actor=None)
    page = admin_client.get(reverse("admin:moderation_apitoken_delete", args=[issued.token.pk]))
    assert page.status_code == 403
    assert ApiToken.objects.count() == 1


def test_a_revoked_tokens_rate_limit_can_no_longer_be_changed(admin_client):
    issued = tokens.token_issue(name="svc", actor=None, rate_limit=10)
    url = reverse("admin:moderation_apitoken_change", args=[issued.token.pk])
    admin_client.post(url, {"rate_limit": 20})
    assert ApiToken.objects.get().rate_limit == 20
    tokens.tokens_revoke(tokens=[issued.token], actor=None)
    admin_client.post(url, {"rate_limit": 30})
    assert ApiToken.objects.get().rate_limit == 20


def test_the_command_prints_a_working_secret_and_revokes_by_prefix(live_server):
    out, err = io.StringIO(), io.StringIO()
    call_command("issue_api_token", "deploy-check", "--rate-limit", "5", stdout=out, stderr=err)
    secret = out.getvalue().strip()
    token = ApiToken.objects.get()
    assert token.key_digest == tokens.digest_of(secret) and token.rate_limit == 5
    base = live_server.url + "/api"
    assert call(base, "GET", "/m/index/status", token=secret).status == 200

    call_command("issue_api_token", token.prefix, "--revoke", stdout=out, stderr=err)

    assert call(base, "GET", "/m/index/status", token=secret).status == 401
    with pytest.raises(CommandError, match="No active token"):
        call_command("issue_api_token", token.prefix, "--revoke", stdout=out, stderr=err)
