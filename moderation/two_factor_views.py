"""The staff member's own two-factor pages: enrol, verify, manage (new recovery codes, revoke).

Every page acts on the logged-in user alone (no page takes a user id), and only an account that
can moderate reaches them; anyone else gets 403. A superuser resets someone else's devices from
the Users admin ("Reset two-factor"), never from here.
"""

from __future__ import annotations

import base64
import io

from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_lockout_response
from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from moderation import two_factor


class CodeForm(forms.Form):
    code = forms.CharField(
        label=gettext_lazy("Code"),
        max_length=16,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "autofocus": True}),
    )


def _moderator_only(view):
    def wrapped(request, *args, **kwargs):
        if not two_factor.needs_two_factor(request.user):
            raise PermissionDenied
        return view(request, *args, **kwargs)

    wrapped.__name__ = view.__name__
    wrapped.__doc__ = view.__doc__
    return login_required(wrapped)


def _next_url(request) -> str:
    wanted = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(
        wanted, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return wanted
    return reverse("admin:index")


def lockout_response(request, original_response=None, credentials=None):
    """The page a locked-out username or IP gets (``AXES_LOCKOUT_CALLABLE``): 429, in minutes."""
    from django.conf import settings

    minutes = max(1, round(settings.AXES_COOLOFF_TIME.total_seconds() / 60))
    response = render(request, "registration/locked_out.html", {"minutes": minutes}, status=429)
    response["Retry-After"] = str(minutes * 60)
    return response


def _locked_out(request):
    credentials = {"username": request.user.get_username()}
    if AxesProxyHandler.is_locked(request, credentials):
        return get_lockout_response(request, None, credentials)
    return None


def _qr_svg(url: str) -> str:
    import qrcode
    import qrcode.image.svg

    out = io.BytesIO()
    qrcode.make(url, image_factory=qrcode.image.svg.SvgPathImage, box_size=8).save(out)
    svg = out.getvalue().decode()
    return svg[svg.index("<svg") :]


@_moderator_only
def enrol(request):
    """Show the pending device's key (QR code and text); a correct code confirms it."""
    if two_factor.is_enrolled(request.user):
        return redirect("moderation:two-factor-manage")
    locked = _locked_out(request)
    if locked is not None:
        return locked
    device = two_factor.pending_device(user=request.user)
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        codes = two_factor.confirm_enrolment(request=request, token=form.cleaned_data["code"])
        if codes is not None:
            return render(
                request,
                "two_factor/recovery_codes.html",
                {"codes": codes, "next": _next_url(request)},
            )
        form.add_error("code", _("That code is not right. Check the clock on your phone."))
    secret = base64.b32encode(device.bin_key).decode()
    return render(
        request,
        "two_factor/enrol.html",
        {
            "form": form,
            "qr_svg": mark_safe(_qr_svg(device.config_url)),  # noqa: S308 - our own SVG
            "secret": " ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
            "next": _next_url(request),
        },
    )


@_moderator_only
def verify(request):
    """The second step of logging in: a code from the app, or one recovery code."""
    if not two_factor.is_enrolled(request.user):
        return redirect("moderation:two-factor-enrol")
    locked = _locked_out(request)
    if locked is not None:
        return locked
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if two_factor.verify(request=request, token=form.cleaned_data["code"]):
            return redirect(_next_url(request))
        locked = _locked_out(request)
        if locked is not None:
            return locked
        form.add_error("code", _("That code is not right."))
    return render(request, "two_factor/verify.html", {"form": form, "next": _next_url(request)})


def _verified_only(view):
    def wrapped(request, *args, **kwargs):
        if not request.user.is_verified():
            return redirect(two_factor.step_url(request.user))
        return view(request, *args, **kwargs)

    wrapped.__name__ = view.__name__
    wrapped.__doc__ = view.__doc__
    return _moderator_only(wrapped)


@_verified_only
def manage(request):
    return render(request, "two_factor/manage.html")


@require_POST
@_verified_only
def recovery_codes(request):
    """New recovery codes, shown once; the old ones stop working."""
    codes = two_factor.new_recovery_codes(user=request.user)
    return render(
        request, "two_factor/recovery_codes.html", {"codes": codes, "next": reverse("admin:index")}
    )


@require_POST
@_verified_only
def revoke(request):
    """Remove my devices (a lost phone): the admin stays closed until I enrol again."""
    two_factor.revoke(request=request)
    messages.success(request, _("Your two-factor devices are removed. Enrol a new one."))
    return redirect("moderation:two-factor-enrol")
