"""Staff two-factor authentication: enrol a TOTP device, verify a code, revoke, reset.

Built on django-otp: a ``TOTPDevice`` (the authenticator app's key) and a ``StaticDevice`` named
"recovery" holding single-use recovery codes. A session counts as verified once
``django_otp.login`` has recorded the device that accepted a code; the admin opens only then
(config/admin_site.py). Every step is an ``AuditEvent``: enrolment, each verification (and each
wrong code), a user revoking their own devices, a superuser resetting someone else's.

An app's code is accepted from one time step (30 s) before the server's clock to one after,
at every login (``OTP_TOTP_SYNC`` is off, see settings): a code typed at second 29 and posted at
second 31 works, and a used one never works again (django-otp's ``last_t``).

Wrong codes are throttled twice: django-otp delays each device after a failure (1, 2, 4, …
seconds), and every wrong code counts as a failed login for django-axes, so the username and
the IP are locked out after ``AXES_FAILURE_LIMIT`` of them, exactly as for wrong passwords.
"""

from __future__ import annotations

from django.contrib.auth.signals import user_login_failed
from django.db import transaction
from django.http import HttpRequest
from django.urls import reverse
from django_otp import devices_for_user, user_has_device
from django_otp import login as otp_login
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from moderation.models import AuditEvent

RECOVERY_DEVICE_NAME = "recovery"
RECOVERY_CODE_COUNT = 10


def needs_two_factor(user) -> bool:
    """Whether the account can moderate: staff, superuser, or any moderation permission."""
    if not user.is_authenticated or not user.is_active:
        return False
    if user.is_staff or user.is_superuser:
        return True
    return any(perm.startswith("moderation.") for perm in user.get_all_permissions())


def is_enrolled(user) -> bool:
    return user_has_device(user, confirmed=True)


def step_url(user) -> str:
    """Where a password-only session goes next: verify a code, or enrol a device first."""
    return reverse(
        "moderation:two-factor-verify" if is_enrolled(user) else "moderation:two-factor-enrol"
    )


def _audit(action: str, *, actor, user, reason: str = "") -> None:
    AuditEvent.objects.create(
        action=action, actor=actor, target=f"user {user.get_username()}", reason=reason
    )


def pending_device(*, user) -> TOTPDevice:
    """The unconfirmed TOTP device an enrolment shows, made once and kept until confirmed."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("pk").first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="authenticator", confirmed=False)
    return device


def _new_recovery_codes(user) -> list[str]:
    device, _ = StaticDevice.objects.get_or_create(user=user, name=RECOVERY_DEVICE_NAME)
    device.token_set.all().delete()
    codes = [StaticToken.random_token() for _ in range(RECOVERY_CODE_COUNT)]
    StaticToken.objects.bulk_create(StaticToken(device=device, token=code) for code in codes)
    return codes


def _code_is_right(device, token: str) -> bool:
    """``device.verify_token``, in a window centred on the server's clock: a drift django-otp
    learned before ``OTP_TOTP_SYNC`` was turned off (see settings) is dropped, and saved as 0
    with the device when the code is right."""
    if isinstance(device, TOTPDevice) and device.drift:
        device.drift = 0
    return device.verify_token(token)


def confirm_enrolment(*, request: HttpRequest, token: str) -> list[str] | None:
    """Confirm the pending device with a code from the app; return fresh recovery codes.

    The session is verified with the new device. ``None`` (and nothing changes) when the code
    is wrong; the failure counts toward the lockout like a wrong password.
    """
    user = request.user
    with transaction.atomic():
        device = pending_device(user=user)
        device = TOTPDevice.objects.select_for_update().get(pk=device.pk)
        if not _code_is_right(device, token):
            _failed(request, reason="wrong code while enrolling")
            return None
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        codes = _new_recovery_codes(user)
        _audit(AuditEvent.Action.TWO_FACTOR_ENROL, actor=user, user=user)
    otp_login(request, device)
    return codes


def verify(*, request: HttpRequest, token: str) -> bool:
    """Check a TOTP or recovery code against the user's own devices; verify the session.

    A recovery code is spent by using it.
    """
    user = request.user
    token = token.strip().replace(" ", "")
    with transaction.atomic():
        for device in devices_for_user(user, for_verify=True):
            if _code_is_right(device, token):
                break
        else:
            device = None
    if device is None:
        _failed(request, reason="wrong code")
        return False
    otp_login(request, device)
    how = "recovery code" if isinstance(device, StaticDevice) else "authenticator code"
    _audit(AuditEvent.Action.TWO_FACTOR_VERIFY, actor=user, user=user, reason=how)
    return True


def _failed(request: HttpRequest, *, reason: str) -> None:
    user = request.user
    _audit(AuditEvent.Action.TWO_FACTOR_FAILED, actor=user, user=user, reason=reason)
    # django-axes counts it against this username and this IP, as a wrong password.
    user_login_failed.send(
        sender=__name__, credentials={"username": user.get_username()}, request=request
    )


def new_recovery_codes(*, user) -> list[str]:
    """Replace the user's recovery codes (the old ones stop working)."""
    with transaction.atomic():
        codes = _new_recovery_codes(user)
        _audit(AuditEvent.Action.TWO_FACTOR_RECOVERY, actor=user, user=user)
    return codes


def _remove_devices(user) -> int:
    removed = 0
    for device in devices_for_user(user, confirmed=None):
        device.delete()
        removed += 1
    return removed


def revoke(*, request: HttpRequest) -> None:
    """The user removes their own devices (a lost or replaced phone) and enrols again.

    The session stops being verified at once.
    """
    user = request.user
    with transaction.atomic():
        _remove_devices(user)
        _audit(AuditEvent.Action.TWO_FACTOR_REVOKE, actor=user, user=user)
    request.session.pop("otp_device_id", None)
    user.otp_device = None


def reset(*, actor, user) -> None:
    """A superuser removes another account's devices: it must enrol again at its next login."""
    with transaction.atomic():
        _remove_devices(user)
        _audit(AuditEvent.Action.TWO_FACTOR_RESET, actor=actor, user=user)
