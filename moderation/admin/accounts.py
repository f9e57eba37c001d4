"""Staff accounts: a superuser resets someone's two-factor devices from the Users list.

django-otp's own device admins are taken out: they show a device's key (so anyone who can open
them could copy a moderator's second factor) and change devices without an audit row. A reset
removes every device, is audited, and the account enrols again at its next login.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from moderation import two_factor

for _model in (TOTPDevice, StaticDevice):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)

User = get_user_model()
_base_admin = (
    admin.site.get_model_admin(User).__class__ if admin.site.is_registered(User) else UserAdmin
)
if admin.site.is_registered(User):
    admin.site.unregister(User)


@admin.register(User)
class StaffUserAdmin(_base_admin):
    actions = [*(_base_admin.actions or []), "reset_two_factor"]

    @admin.action(description=_("Reset two-factor (they enrol again)"), permissions=["reset"])
    def reset_two_factor(self, request, queryset):
        """Remove the selected accounts' devices and recovery codes; audited per account."""
        for user in queryset:
            two_factor.reset(actor=request.user, user=user)
        count = queryset.count()
        self.message_user(
            request,
            ngettext(
                "Two-factor reset for %(count)d account.",
                "Two-factor reset for %(count)d accounts.",
                count,
            )
            % {"count": count},
            messages.SUCCESS,
        )

    def has_reset_permission(self, request) -> bool:
        return request.user.is_superuser
