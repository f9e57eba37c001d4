"""Staff sessions in tests: a device enrolled and the session verified through django-otp.

The admin opens only to a session that verified a second factor. Tests about something else
log staff in with ``Client.force_login``; the autouse fixture ``verified_staff_sessions``
(tests/conftest.py) then enrols a confirmed TOTP device for that user and records it in the
session with ``django_otp.login``, the call the real two-factor page makes after a correct code.
The production checks are untouched: a test marked ``password_only`` gets the bare
password-only session, and the two-factor tests go through the real pages with real codes.
"""

from __future__ import annotations

import time

import django_otp
from django.http import HttpRequest
from django.test import Client
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice


def enrolled_device(user) -> TOTPDevice:
    """The user's confirmed TOTP device, enrolled now if there is none."""
    device = TOTPDevice.objects.filter(user=user, confirmed=True).order_by("pk").first()
    return device or TOTPDevice.objects.create(user=user, name="test phone", confirmed=True)


def verify_session(client: Client, user) -> TOTPDevice:
    """Mark ``client``'s (already logged-in) session as verified with the user's device."""
    device = enrolled_device(user)
    request = HttpRequest()
    request.session = client.session
    request.user = user
    django_otp.login(request, device)
    request.session.save()
    return device


def totp_code(device: TOTPDevice, *, at: float | None = None) -> str:
    """The code the authenticator app shows now for ``device``, from its key (RFC 6238): the
    app knows the key and the clock, never the site's state such as ``device.drift``."""
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits)
    totp.time = time.time() if at is None else at
    return f"{totp.token():0{device.digits}d}"


def fresh_totp_code(device: TOTPDevice) -> str:
    """A code the device has not accepted yet, as an authenticator app would show it.

    A used code is refused (no replay). When this time step's code is spent, the next step's
    is what a phone whose clock runs a few seconds ahead shows, and django-otp accepts it
    within its tolerance (``device.tolerance`` steps around the server's clock, 1 by default;
    no drift is learned, ``OTP_TOTP_SYNC`` is off); only when that is spent too does this wait
    for the clock.
    """
    while True:
        device.refresh_from_db()
        now = time.time()
        real_t = int((now - device.t0) // device.step)
        for ahead in range(device.tolerance + 1):
            t = real_t + ahead
            if t > device.last_t:
                return totp_code(device, at=now + ahead * device.step)
        time.sleep(device.step - (now - device.t0) % device.step + 0.05)
