"""The lookup API's tokens in the admin: issue one per calling service (the secret shown
once, on the page that issues it), and revoke (``moderation.api.tokens``, audited)."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.utils.formats import date_format
from django.utils.timezone import localtime
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from moderation.admin.base import PlainRelationsMixin, confirm_with_reason
from moderation.api import tokens
from moderation.models import ApiToken


class IssueTokenForm(forms.ModelForm):
    class Meta:
        model = ApiToken
        fields = ["name", "rate_limit"]


class RevokeTokenForm(forms.Form):
    reason = forms.CharField(label=_("Reason for revoking"), max_length=500, required=False)


@admin.register(ApiToken)
class ApiTokenAdmin(PlainRelationsMixin, admin.ModelAdmin):
    """Tokens of the services that call the lookup API. Issuing shows the secret once (only a
    digest is kept); a token is revoked, never deleted, so the audit trail keeps its name. The
    rate limit of an active token can be changed."""

    list_display = ["name", "prefix", "rate_limit", "created_at", "last_used_at", "state"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter), "created_at"]
    list_select_related = ["created_by", "revoked_by"]
    search_fields = ["name", "prefix"]
    actions = ["revoke_selected"]
    fields = [
        "name",
        "prefix",
        "rate_limit",
        "created_at",
        "created_by",
        "last_used_at",
        "revoked_at",
        "revoked_by",
    ]

    @admin.display(description=_("state"), ordering="revoked_at")
    def state(self, obj: ApiToken) -> str:
        if obj.revoked_at is None:
            return _("active")
        return _("revoked %(when)s by %(who)s") % {
            "when": date_format(localtime(obj.revoked_at), "SHORT_DATETIME_FORMAT"),
            "who": obj.revoked_by or _("unknown"),
        }

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.revoked:
            return self.fields
        return [name for name in self.fields if name != "rate_limit"]

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def add_view(self, request, form_url="", extra_context=None):
        """Issue a token (``tokens.token_issue``) and show its secret on this one page."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = IssueTokenForm(request.POST or None)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Issue an API token"),
            "form": form,
        }
        if request.method == "POST" and form.is_valid():
            issued = tokens.token_issue(
                name=form.cleaned_data["name"],
                rate_limit=form.cleaned_data["rate_limit"],
                actor=request.user,
            )
            context.update(title=_("API token issued"), issued=issued)
        # The page may carry a secret: admin_view's never_cache keeps it out of caches.
        return TemplateResponse(request, "admin/moderation/apitoken/issue.html", context)

    @admin.action(description=_("Revoke selected API tokens"), permissions=["change"])
    def revoke_selected(self, request, queryset):
        """Revoke the selected tokens after a confirmation: their next call is a 401."""
        return confirm_with_reason(
            self,
            request,
            form_class=RevokeTokenForm,
            act=lambda reason: tokens.tokens_revoke(
                tokens=list(queryset), actor=request.user, reason=reason
            ),
            done=lambda count: ngettext(
                "Revoked %d token: its next call is refused.",
                "Revoked %d tokens: their next calls are refused.",
                count,
            )
            % count,
            template="admin/moderation/apitoken/revoke_confirmation.html",
            title=_("Revoke API tokens"),
            action="revoke_selected",
            context={"queryset": queryset},
        )
