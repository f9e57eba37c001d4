"""Staff two-factor: a password alone never opens the admin; codes are real TOTP codes
computed from the device's key; every step is audited; nobody reaches another's devices.

These tests log staff in with ``password_only`` sessions (tests/two_factor.py) and go through
the real two-factor pages.
"""

from __future__ import annotations

import base64
import re
import time

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from moderation.models import AuditEvent
from tests.admin_pages import run_action
from tests.test_access_matrix import MODERATORS, PAGES
from tests.two_factor import enrolled_device, fresh_totp_code, totp_code

pytestmark = [pytest.mark.django_db, pytest.mark.password_only]

ENROL = "moderation:two-factor-enrol"
VERIFY = "moderation:two-factor-verify"
MANAGE = "moderation:two-factor-manage"


def password_session(user) -> Client:
    """What the login form leaves behind: a logged-in session, no second factor yet."""
    client = Client()
    client.force_login(user)
    return client


def audit_actions(user) -> list[str]:
    return sorted(
        AuditEvent.objects.filter(target=f"user {user.username}").values_list("action", flat=True)
    )


def with_recovery_codes(user) -> list[str]:
    device = StaticDevice.objects.create(user=user, name="recovery")
    codes = ["alpha111", "bravo222"]
    for code in codes:
        StaticToken.objects.create(device=device, token=code)
    return codes


def test_a_password_only_moderator_is_sent_to_two_factor_from_every_admin_page_and_quarantine(
    moderator, world
):
    client = password_session(moderator)
    moderator_pages = {
        name: url(world) for name, (url, by_role) in PAGES.items() if by_role == MODERATORS
    }
    assert "quarantined original" in moderator_pages and "flag an image" in moderator_pages
    for name, url in moderator_pages.items():
        response = client.get(url)
        assert response.status_code == 302, name
        assert response["Location"].startswith(reverse("admin:login")), name
    # The admin's login page then sends the moderator to enrol (no device yet).
    response = client.get(reverse("admin:login"), {"next": "/admin/"})
    assert response.status_code == 302
    assert response["Location"].startswith(reverse(ENROL))


def test_enrolling_with_the_apps_code_opens_the_admin_and_shows_ten_recovery_codes(moderator):
    client = password_session(moderator)
    page = client.get(reverse(ENROL)).content.decode()
    secret = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', page).group(1)
    device = TOTPDevice.objects.get(user=moderator, confirmed=False)
    assert base64.b32decode(secret.replace(" ", "")) == device.bin_key
    assert "<svg" in page  # the QR code the app scans

    response = client.post(reverse(ENROL), {"code": totp_code(device)})

    assert response.status_code == 200
    codes = re.findall(r"<li><code>([a-z0-9]+)</code></li>", response.content.decode())
    assert len(codes) == 10 and len(set(codes)) == 10
    device.refresh_from_db()
    assert device.confirmed
    assert client.get(reverse("admin:index")).status_code == 200
    assert audit_actions(moderator) == ["2fa_enrol"]


def test_a_wrong_code_at_enrolment_confirms_nothing_and_the_admin_stays_shut(moderator):
    client = password_session(moderator)
    client.get(reverse(ENROL))
    device = TOTPDevice.objects.get(user=moderator)
    wrong = str((int(totp_code(device)) + 1) % 1_000_000).zfill(6)

    response = client.post(reverse(ENROL), {"code": wrong})

    assert "That code is not right" in response.content.decode()
    device.refresh_from_db()
    assert not device.confirmed
    assert client.get(reverse("admin:index")).status_code == 302
    assert audit_actions(moderator) == ["2fa_failed"]


def test_the_apps_code_verifies_the_session_and_returns_to_the_page_asked_for(moderator):
    device = enrolled_device(moderator)
    client = password_session(moderator)
    wanted = reverse("admin:moderation_flaggedfingerprint_changelist")
    assert client.get(reverse("admin:login"), {"next": wanted})["Location"].startswith(
        reverse(VERIFY)
    )

    response = client.post(reverse(VERIFY), {"code": fresh_totp_code(device), "next": wanted})

    assert response.status_code == 302 and response["Location"] == wanted
    assert client.get(wanted).status_code == 200
    assert audit_actions(moderator) == ["2fa_verify"]


def test_a_used_code_is_not_accepted_twice(moderator):
    device = enrolled_device(moderator)
    code = fresh_totp_code(device)
    assert password_session(moderator).post(reverse(VERIFY), {"code": code}).status_code == 302

    replay = password_session(moderator)
    response = replay.post(reverse(VERIFY), {"code": code})

    assert response.status_code == 200 and "That code is not right" in response.content.decode()
    assert replay.get(reverse("admin:index")).status_code == 302


def test_a_recovery_code_opens_the_admin_once(moderator):
    enrolled_device(moderator)
    first, _second = with_recovery_codes(moderator)
    client = password_session(moderator)

    assert client.post(reverse(VERIFY), {"code": first}).status_code == 302
    assert client.get(reverse("admin:index")).status_code == 200

    again = password_session(moderator)
    time.sleep(1.1)  # past django-otp's hold-back after the failed TOTP try of that code
    assert again.post(reverse(VERIFY), {"code": first}).status_code == 200
    assert again.get(reverse("admin:index")).status_code == 302


def test_wrong_codes_lock_the_account_out_even_for_the_right_code(moderator, settings):
    device = enrolled_device(moderator)
    client = password_session(moderator)
    right = fresh_totp_code(device)
    wrong = str((int(right) + 1) % 1_000_000).zfill(6)

    statuses = [
        client.post(reverse(VERIFY), {"code": wrong}).status_code
        for _ in range(settings.AXES_FAILURE_LIMIT)
    ]
    time.sleep(1.1)
    locked = client.post(reverse(VERIFY), {"code": right})

    assert statuses == [200] * (settings.AXES_FAILURE_LIMIT - 1) + [429]
    assert locked.status_code == 429
    assert "Too many failed attempts" in locked.content.decode()
    assert client.get(reverse("admin:index")).status_code == 302


def test_wrong_codes_are_held_back_by_the_device_between_tries(moderator):
    """django-otp's own throttle: right after a wrong code even the right one is refused."""
    device = enrolled_device(moderator)
    client = password_session(moderator)
    right = fresh_totp_code(device)
    client.post(reverse(VERIFY), {"code": str((int(right) + 1) % 1_000_000).zfill(6)})

    assert client.post(reverse(VERIFY), {"code": right}).status_code == 200
    time.sleep(1.1)
    assert client.post(reverse(VERIFY), {"code": fresh_totp_code(device)}).status_code == 302


def test_a_user_who_cannot_moderate_never_reaches_any_two_factor_page(user, moderator):
    client = password_session(user)
    enrolled_device(moderator)
    for name in (ENROL, VERIFY, MANAGE):
        assert client.get(reverse(name)).status_code == 403, name
    for name in ("moderation:two-factor-recovery-codes", "moderation:two-factor-revoke"):
        assert client.post(reverse(name)).status_code == 403, name
    # No page takes another account's id, and django-otp's device admin (which shows keys)
    # is not installed.
    assert not TOTPDevice.objects.filter(user=user).exists()
    from django.contrib import admin

    assert not admin.site.is_registered(TOTPDevice)
    assert not admin.site.is_registered(StaticDevice)


def test_a_user_given_a_moderation_permission_without_staff_must_enrol_too(user):
    user.user_permissions.add(Permission.objects.get(codename="view_quarantine"))
    client = password_session(user)
    assert client.get(reverse(ENROL)).status_code == 200


def test_revoking_my_devices_shuts_the_admin_until_i_enrol_again(moderator):
    device = enrolled_device(moderator)
    with_recovery_codes(moderator)
    client = password_session(moderator)
    client.post(reverse(VERIFY), {"code": fresh_totp_code(device)})

    response = client.post(reverse("moderation:two-factor-revoke"))

    assert response["Location"] == reverse(ENROL)
    assert not TOTPDevice.objects.filter(user=moderator).exists()
    assert not StaticDevice.objects.filter(user=moderator).exists()
    assert client.get(reverse("admin:index")).status_code == 302
    assert audit_actions(moderator) == ["2fa_revoke", "2fa_verify"]


def test_new_recovery_codes_replace_the_old_ones(moderator):
    device = enrolled_device(moderator)
    old, _ = with_recovery_codes(moderator)
    client = password_session(moderator)
    client.post(reverse(VERIFY), {"code": fresh_totp_code(device)})

    page = client.post(reverse("moderation:two-factor-recovery-codes")).content.decode()

    new = re.findall(r"<li><code>([a-z0-9]+)</code></li>", page)
    assert len(new) == 10 and old not in new
    assert set(StaticToken.objects.values_list("token", flat=True)) == set(new)
    assert "2fa_recovery" in audit_actions(moderator)


def test_a_superuser_resets_a_moderators_two_factor_and_the_moderator_must_enrol_again(
    moderator, admin_user
):
    device = enrolled_device(moderator)
    mod_client = password_session(moderator)
    mod_client.post(reverse(VERIFY), {"code": fresh_totp_code(device)})
    assert mod_client.get(reverse("admin:index")).status_code == 200
    superuser = password_session(admin_user)
    superuser.post(reverse(VERIFY), {"code": fresh_totp_code(enrolled_device(admin_user))})

    response = run_action(superuser, "admin:auth_user_changelist", "reset_two_factor", [moderator])

    assert response.status_code == 302
    assert not TOTPDevice.objects.filter(user=moderator).exists()
    event = AuditEvent.objects.get(action="2fa_reset")
    assert event.actor == admin_user and event.target == "user mod"
    # The moderator's verified session is verified no more.
    assert mod_client.get(reverse("admin:index")).status_code == 302
    assert mod_client.get(reverse("admin:login"))["Location"].startswith(reverse(ENROL))


def test_only_a_superuser_is_offered_the_reset(moderator):
    from django.contrib.auth.models import Permission as P

    moderator.user_permissions.add(*P.objects.filter(content_type__app_label="auth"))
    device = enrolled_device(moderator)
    client = password_session(moderator)
    client.post(reverse(VERIFY), {"code": fresh_totp_code(device)})
    page = client.get(reverse("admin:auth_user_changelist"))
    assert page.status_code == 200
    actions = [c[0] for c in page.context["action_form"].fields["action"].choices]
    assert "reset_two_factor" not in actions
    run_action(client, "admin:auth_user_changelist", "reset_two_factor", [moderator])
    assert TOTPDevice.objects.filter(user=moderator).exists()
