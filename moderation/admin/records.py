"""Read-only records in the admin: the audit trail and the refused uploads."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Count, OuterRef, Subquery
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from moderation.admin.base import PlainRelationsMixin, ReadOnlyAdminMixin, quarantine_link
from moderation.models import AuditEvent, RefusedUpload
from moderation.templatetags.moderation_wellness import reviewed_img


@admin.register(AuditEvent)
class AuditEventAdmin(PlainRelationsMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """The audit trail: read-only, append-only."""

    list_display = [
        "created_at",
        "action",
        "actor",
        "target",
        "fingerprint",
        "distance",
        "evidence_link",
    ]
    list_filter = ["action", "created_at"]
    list_select_related = ["actor", "fingerprint"]
    search_fields = ["target", "reason", "actor__username"]
    date_hierarchy = "created_at"
    # The evidence goes through the permission-checked quarantine view: the default display of
    # a FileField would link the storage URL, which for quarantine must never be built.
    fields = [
        "created_at",
        "action",
        "actor",
        "target",
        "fingerprint",
        "distance",
        "reason",
        "evidence_link",
        "evidence_image",
    ]
    readonly_fields = fields

    @admin.display(description=_("evidence"))
    def evidence_link(self, obj: AuditEvent) -> str:
        return quarantine_link(obj.evidence)

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        if not request.user.has_perm("moderation.view_quarantine"):
            fields = [f for f in fields if f != "evidence_image"]
        return fields

    @admin.display(description=_("evidence image"))
    def evidence_image(self, obj: AuditEvent) -> str:
        """The evidence on its event's page, blurred until clicked (opening the link above is
        a full-size view, counted as one)."""
        if not obj.evidence:
            return "—"
        url = reverse("moderation:quarantined-file", args=[obj.evidence.name])
        return reviewed_img(url, size=240)


@admin.register(RefusedUpload)
class RefusedUploadAdmin(PlainRelationsMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """Uploads the site refused, with the nearest banned fingerprint: staff-only, read-only.

    A user with many ``banned_image`` refusals is probably editing a banned picture until it
    passes; the per-user count links to that user's refusals.
    """

    list_display = [
        "created_at",
        "user",
        "refusals_by_user",
        "ip",
        "code",
        "hex_hash",
        "nearest",
        "signal_entry",
        "distance",
        "found_by",
    ]
    list_filter = ["code", "created_at"]
    list_select_related = ["user", "nearest", "signal_entry"]
    search_fields = ["user__username", "ip"]
    date_hierarchy = "created_at"
    fields = [
        "created_at",
        "user",
        "ip",
        "code",
        "hex_hash",
        "nearest",
        "signal_entry",
        "distance",
        "found_by",
    ]
    readonly_fields = fields

    def get_queryset(self, request):
        per_user = (
            RefusedUpload.objects.filter(user=OuterRef("user"))
            .order_by()
            .values("user")
            .annotate(n=Count("pk"))
            .values("n")
        )
        return super().get_queryset(request).annotate(user_refusals=Subquery(per_user))

    @admin.display(description=_("refusals by this user"), ordering="user_refusals")
    def refusals_by_user(self, obj: RefusedUpload) -> str:
        if obj.user_id is None:
            return "—"
        url = reverse("admin:moderation_refusedupload_changelist")
        return format_html(
            '<a href="{}?user__id__exact={}">{}</a>', url, obj.user_id, obj.user_refusals
        )

    @admin.display(description=_("dHash"), ordering="dhash")
    def hex_hash(self, obj: RefusedUpload) -> str:
        return format_html("<code>{}</code>", obj.hex) if obj.hex else "—"
