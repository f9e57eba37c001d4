"""The allowlist in the admin: every dismissal, and revoking exceptions given by mistake
(through ``desk``, audited)."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.urls import reverse
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.timezone import localtime
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from moderation import desk
from moderation.admin.base import (
    PlainRelationsMixin,
    ReadOnlyAdminMixin,
    confirm_with_reason,
    quarantine_link,
    stored_image,
)
from moderation.hashing import Fingerprint
from moderation.models import AllowedMatch
from moderation.templatetags.moderation_wellness import reviewed_img


class RevokeReasonForm(forms.Form):
    reason = forms.CharField(label=_("Reason for revoking"), max_length=500)


class AllowedStateFilter(admin.SimpleListFilter):
    title = _("state")
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("in_force", _("in force")), ("revoked", _("revoked"))]

    def queryset(self, request, queryset):
        if self.value() == "in_force":
            return queryset.in_force()
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(AllowedMatch)
class AllowedMatchAdmin(PlainRelationsMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """The allowlist: every dismissal (who, when, which fingerprint, which image), newest first,
    with an action to revoke exceptions given by mistake. Revoking needs the same permissions
    as dismissing (``moderation.review_upload`` and ``moderation.flag_image``), is audited, and
    applies from the next lookup in every process (the allowlist is never cached)."""

    class Media:
        css = {"all": ["moderation/admin.css"]}  # thumbnails, no inline style

    list_display = [
        "allowed_image",
        "allowed_hex",
        "fingerprint_link",
        "original_link",
        "allowed",
        "state",
    ]
    list_filter = [AllowedStateFilter, "created_at"]
    list_select_related = ["fingerprint", "created_by", "revoked_by", "review_item"]
    search_fields = ["created_by__username", "review_item__target"]
    search_help_text = _("Search by who allowed it or by the profile it was found on.")
    date_hierarchy = "created_at"
    actions = ["revoke_selected"]
    fields = [
        "allowed_image",
        "allowed_hex",
        "fingerprint_link",
        "original_link",
        "review_link",
        "created_by",
        "created_at",
        "state",
        "revoked_by",
        "revoked_at",
    ]
    readonly_fields = fields

    @admin.display(description=_("allowed image"))
    def allowed_image(self, obj: AllowedMatch) -> str:
        image = stored_image(obj.review_item) if obj.review_item else None
        if image is None:
            return format_html("<em>{}</em>", _("no longer stored"))
        return format_html(
            "{}<br>{}", reviewed_img(image.url, size=64), obj.review_item.target
        )

    @admin.display(description=_("allowed dHash"), ordering="dhash")
    def allowed_hex(self, obj: AllowedMatch) -> str:
        return format_html("<code>{}</code>", Fingerprint.from_signed(obj.dhash).hex)

    @admin.display(description=_("for banned fingerprint"), ordering="fingerprint")
    def fingerprint_link(self, obj: AllowedMatch) -> str:
        url = reverse("admin:moderation_flaggedfingerprint_change", args=[obj.fingerprint_id])
        return format_html(
            '<a href="{}"><code>{}</code></a><br>{}',
            url,
            obj.fingerprint.hex,
            obj.fingerprint.reason[:60],
        )

    @admin.display(description=_("flagged original"))
    def original_link(self, obj: AllowedMatch) -> str:
        return quarantine_link(obj.fingerprint.original)

    def get_list_display(self, request):
        """The flagged original only for staff who may see quarantined files."""
        shown = super().get_list_display(request)
        if request.user.has_perm("moderation.view_quarantine"):
            return shown
        return [name for name in shown if name != "original_link"]

    def get_fields(self, request, obj=None):
        return [
            name
            for name in super().get_fields(request, obj)
            if name != "original_link" or request.user.has_perm("moderation.view_quarantine")
        ]

    def get_readonly_fields(self, request, obj=None):
        return self.get_fields(request, obj)

    @admin.display(description=_("review item"))
    def review_link(self, obj: AllowedMatch) -> str:
        if obj.review_item_id is None:
            return "—"
        url = reverse("admin:moderation_reviewitem_change", args=[obj.review_item_id])
        return format_html('<a href="{}">#{}</a>', url, obj.review_item_id)

    @admin.display(description=_("allowed by, when"), ordering="created_at")
    def allowed(self, obj: AllowedMatch) -> str:
        return format_html(
            "{}<br>{}",
            obj.created_by or "—",
            date_format(localtime(obj.created_at), "SHORT_DATETIME_FORMAT"),
        )

    @admin.display(description=_("state"), ordering="revoked_at")
    def state(self, obj: AllowedMatch) -> str:
        if obj.revoked_at is None:
            return _("in force")
        return format_html(
            "{}<br>{}, {}",
            _("revoked"),
            obj.revoked_by or _("unknown"),
            date_format(localtime(obj.revoked_at), "SHORT_DATETIME_FORMAT"),
        )

    def has_revoke_permission(self, request) -> bool:
        return request.user.has_perm("moderation.review_upload") and request.user.has_perm(
            "moderation.flag_image"
        )

    @admin.action(description=_("Revoke selected exceptions"), permissions=["revoke"])
    def revoke_selected(self, request, queryset):
        """Revoke the selected allowlist exceptions after the moderator gives a reason."""
        return confirm_with_reason(
            self,
            request,
            form_class=RevokeReasonForm,
            act=lambda reason: sum(
                desk.allowed_match_revoke(allowed=allowed, actor=request.user, reason=reason)
                for allowed in queryset
            ),
            done=lambda count: ngettext(
                "Revoked %d exception: that image is matched again from the next upload.",
                "Revoked %d exceptions: those images are matched again from the next upload.",
                count,
            )
            % count,
            template="admin/moderation/revoke_confirmation.html",
            title=_("Revoke allowlist exceptions"),
            action="revoke_selected",
            context={"queryset": queryset.select_related("fingerprint", "created_by")},
        )
