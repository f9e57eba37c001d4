"""Two-factor codes at the edge of a TOTP time step (30 s): a code the app showed a moment ago,
or a moment early, is accepted; an old one or a used one is not; and one login near a boundary
does not change which codes the next login accepts.

No sleeping and no faked clock: the device's own ``t0`` (the Unix time its steps count from)
puts "now" at a chosen second of a chosen step, for the site and the app alike, and the app's
code for a step is computed from the key (RFC 6238). "Second 31" is second 1 of the next step.
"""

from __future__ import annotations

import time

import pytest
from django.test import Client
from django.urls import reverse
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from moderation.models import AuditEvent
from tests.two_factor import enrolled_device

pytestmark = [pytest.mark.django_db, pytest.mark.password_only]

ENROL = "moderation:two-factor-enrol"
VERIFY = "moderation:two-factor-verify"
STEP = 1000  # "now" is in this time step (any step the device has not used yet)


def set_clock(device: TOTPDevice, *, step: int, second: int) -> None:
    """Make it ``second`` seconds into time step ``step`` for ``device`` (for a second or two:
    the real clock moves on; every position used here has that much room before a boundary).
    """
    device.t0 = int(time.time()) - (step * device.step + second)
    TOTPDevice.objects.filter(pk=device.pk).update(t0=device.t0)


def app_code(device: TOTPDevice, *, step: int) -> str:
    """What the authenticator app shows during time step ``step``: key and step only (the app
    knows nothing of the site's state)."""
    totp = TOTP(device.bin_key, device.step, 0, device.digits)
    totp.time = step * device.step
    return f"{totp.token():0{device.digits}d}"


def log_in_with(moderator, code: str) -> bool:
    """A fresh password-only session posts ``code`` to the two-factor page: is it accepted?"""
    client = Client()
    client.force_login(moderator)
    response = client.post(reverse(VERIFY), {"code": code})
    if response.status_code == 302:
        return True
    assert response.status_code == 200 and "That code is not right" in response.content.decode()
    return False


@pytest.fixture
def device(moderator) -> TOTPDevice:
    return enrolled_device(moderator)


def test_a_code_typed_at_second_29_and_posted_at_second_31_is_accepted(moderator, device):
    set_clock(device, step=STEP, second=1)
    assert log_in_with(moderator, app_code(device, step=STEP - 1))
    assert AuditEvent.objects.filter(action=AuditEvent.Action.TWO_FACTOR_VERIFY).count() == 1


def test_a_code_from_an_app_a_few_seconds_ahead_is_accepted_just_before_the_boundary(
    moderator, device
):
    set_clock(device, step=STEP, second=28)
    assert log_in_with(moderator, app_code(device, step=STEP + 1))


def test_a_code_two_steps_old_is_refused(moderator, device):
    set_clock(device, step=STEP, second=1)
    assert not log_in_with(moderator, app_code(device, step=STEP - 2))


def test_a_code_used_at_second_29_is_refused_when_posted_again_at_second_31(moderator, device):
    set_clock(device, step=STEP, second=28)
    code = app_code(device, step=STEP)
    assert log_in_with(moderator, code)
    set_clock(device, step=STEP + 1, second=1)
    assert not log_in_with(moderator, code)  # within the tolerance, but spent


def test_after_a_late_code_an_app_running_ahead_is_still_accepted_at_a_later_boundary(
    moderator, device
):
    set_clock(device, step=STEP, second=1)
    assert log_in_with(moderator, app_code(device, step=STEP - 1))  # typed at 29, posted at 31
    set_clock(device, step=STEP + 10, second=28)
    assert log_in_with(moderator, app_code(device, step=STEP + 11))  # the app is 3 s ahead


def test_after_an_app_ran_ahead_a_code_typed_at_29_and_posted_at_31_is_still_accepted(
    moderator, device
):
    set_clock(device, step=STEP, second=28)
    assert log_in_with(moderator, app_code(device, step=STEP + 1))  # the app is 3 s ahead
    set_clock(device, step=STEP + 10, second=1)
    assert log_in_with(moderator, app_code(device, step=STEP + 9))  # typed at 29, posted at 31


def test_one_login_near_a_boundary_leaves_the_window_centred_on_the_sites_clock(
    moderator, device
):
    set_clock(device, step=STEP, second=1)
    assert log_in_with(moderator, app_code(device, step=STEP - 1))
    device.refresh_from_db()
    assert device.drift == 0


def test_enrolling_with_a_code_typed_at_29_and_posted_at_31_confirms_the_device(moderator):
    client = Client()
    client.force_login(moderator)
    client.get(reverse(ENROL))
    pending = TOTPDevice.objects.get(user=moderator, confirmed=False)
    set_clock(pending, step=STEP, second=1)
    response = client.post(reverse(ENROL), {"code": app_code(pending, step=STEP - 1)})
    assert response.status_code == 200 and "recovery" in response.content.decode().lower()
    pending.refresh_from_db()
    assert pending.confirmed and pending.drift == 0
    # The next login, with the app a little ahead at the next boundary, works too.
    set_clock(pending, step=STEP + 10, second=28)
    assert log_in_with(moderator, app_code(pending, step=STEP + 11))


def test_a_drift_learned_before_is_dropped_so_the_window_is_centred_again(moderator, device):
    """A device a login near a boundary left with a drift (as django-otp's sync did)."""
    TOTPDevice.objects.filter(pk=device.pk).update(drift=1)
    set_clock(device, step=STEP, second=1)
    assert log_in_with(moderator, app_code(device, step=STEP - 1))  # typed at 29, posted at 31
    device.refresh_from_db()
    assert device.drift == 0
