"""The admin site, opened only to a session that has verified a second factor.

Django's admin lets any active staff user in after a password. Here the password is the first
of two steps: a staff session that has not verified a TOTP code (or a recovery code) is sent to
the two-factor page, to enrol a device first if it has none (moderation/two_factor_views.py).
Installed through ``TwoFactorAdminConfig`` in INSTALLED_APPS, so ``admin.site`` and every
``@admin.register`` use it.
"""

from __future__ import annotations

from django.contrib.admin import AdminSite
from django.contrib.admin.apps import AdminConfig
from django.urls import path, reverse


class TwoFactorAdminSite(AdminSite):
    def has_permission(self, request) -> bool:
        user = request.user
        return super().has_permission(request) and user.is_verified()

    def get_urls(self):
        """Django's, plus each staff member's own "My account" page (name, verified email)."""
        from profiles.account_admin import my_account  # late: loaded before the models

        return [
            path("account/", self.admin_view(my_account), name="my_account"),
            *super().get_urls(),
        ]

    def each_context(self, request):
        """Django's context of every admin page, plus the moderators' dashboard link (empty
        for staff who may not see it), for the index and the top bar."""
        from moderation import dashboard

        context = super().each_context(request)
        user = getattr(request, "user", None)
        context["moderation_dashboard_url"] = (
            reverse("admin:moderation_dashboard", current_app=self.name)
            if user is not None and dashboard.can_see(user)
            else ""
        )
        return context

    def login(self, request, extra_context=None):
        """The password step as Django's; a staff user past it goes on to the second factor."""
        # Late imports: this module is loaded with the app registry, before any model.
        from django.contrib.auth.views import redirect_to_login

        from moderation import two_factor

        user = request.user
        if (
            request.method == "GET"
            and user.is_authenticated
            and user.is_active
            and user.is_staff
            and not user.is_verified()
        ):
            next_url = request.GET.get("next") or reverse("admin:index", current_app=self.name)
            return redirect_to_login(next_url, two_factor.step_url(user))
        return super().login(request, extra_context)


class TwoFactorAdminConfig(AdminConfig):
    default_site = "config.admin_site.TwoFactorAdminSite"
