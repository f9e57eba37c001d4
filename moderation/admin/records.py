"""Read-only records in the admin: the audit trail and the refused uploads."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Count, OuterRef, Subquery
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from moderation.admin.base import (
    FitsTheScreenMixin,
    PlainRelationsMixin,
    ReadOnlyAdminMixin,
    quarantine_link,
    refused_picture,
    truncated,
)
from moderation.models import AuditEvent, RefusedUpload
from moderation.templatetags.moderation_wellness import reviewed_img


@admin.register(AuditEvent)
class AuditEventAdmin(
    FitsTheScreenMixin, PlainRelationsMixin, ReadOnlyAdminMixin, admin.ModelAdmin
):
    """The audit trail: read-only, append-only."""

    # Narrow enough for a 1280 px screen: names and targets cut to one line (the full text,
    # and the reason, on the event's page).
    list_display = [
        "created_at",
        "action",
        "actor_cell",
        "target_cell",
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

    @admin.display(description=_("actor"), ordering="actor__username")
    def actor_cell(self, obj: AuditEvent) -> str:
        return truncated(obj.actor.get_username() if obj.actor_id else "")

    @admin.display(description=_("target"), ordering="target")
    def target_cell(self, obj: AuditEvent) -> str:
        return truncated(obj.target)

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
class RefusedUploadAdmin(
    FitsTheScreenMixin, PlainRelationsMixin, ReadOnlyAdminMixin, admin.ModelAdmin
):
    """Uploads the site refused, with the nearest banned fingerprint: staff-only, read-only.

    A user with many ``banned_image`` refusals is probably editing a banned picture until it
    passes; the per-user count links to that user's refusals.
    """

    # Narrow enough for a 1280 px screen: the IP, the hash and the list entry are on the
    # refusal's page (the IP stays searchable), long names are cut to one line.
    list_display = [
        "created_at",
        "user_cell",
        "refusals_by_user",
        "code",
        "matched",
        "distance",
        "variant_cell",
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
        "variant_name",
        "pictures",
    ]
    readonly_fields = fields

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        if not request.user.has_perm("moderation.view_quarantine"):
            fields = [f for f in fields if f != "pictures"]
        return fields

    @admin.display(description=_("user"), ordering="user__username")
    def user_cell(self, obj: RefusedUpload) -> str:
        return truncated(obj.user.get_username() if obj.user_id else "")

    @admin.display(description=_("matched"))
    def matched(self, obj: RefusedUpload) -> str:
        """The banned fingerprint (its hex) or the list entry that refused it."""
        if obj.nearest_id is not None:
            return format_html("<code>{}</code>", obj.nearest.hex)
        return truncated(str(obj.signal_entry) if obj.signal_entry_id else "")

    @admin.display(description=_("variant matched"), ordering="found_by")
    def variant_cell(self, obj: RefusedUpload) -> str:
        return truncated(obj.variant_name)

    @admin.display(description=_("variant matched"))
    def variant_name(self, obj: RefusedUpload) -> str:
        return obj.variant_name or "—"

    @admin.display(description=_("refused picture and what it matched"))
    def pictures(self, obj: RefusedUpload) -> str:
        """The refused picture (the thumbnail its row keeps; the upload itself wrote nothing to
        storage) beside the flag's original, each blurred until clicked."""
        flagged = obj.nearest
        if flagged is None and obj.signal_entry_id is None:
            return "—"  # refused as unreadable: nothing matched, no picture
        if flagged is None:
            why = _("A list entry is a hash: no picture to show.")
        elif not flagged.original:
            why = _("No original was kept for this flag.")
        original = (
            reviewed_img(
                reverse("moderation:quarantined-file", args=[flagged.original.name]),
                alt=_("the banned original"),
                size=240,
            )
            if flagged is not None and flagged.original
            else format_html("<p><em>{}</em></p>", why)
        )
        return format_html(
            '<div class="side-by-side refusal-pictures">'
            '<figure id="refused-picture">{}<figcaption>{}</figcaption></figure>'
            '<figure id="matched-original">{}<figcaption>{}</figcaption></figure></div>',
            refused_picture(obj, size=240),
            _("Refused upload (thumbnail)"),
            original,
            _("Banned picture it matched") if flagged is not None else _("Matched list entry"),
        )

    def get_queryset(self, request):
        per_user = (
            RefusedUpload.objects.filter(user=OuterRef("user"))
            .order_by()
            .values("user")
            .annotate(n=Count("pk"))
            .values("n")
        )
        # The thumbnail is read on the refusal's own page only, not for every row listed.
        queryset = super().get_queryset(request).defer("thumbnail")
        return queryset.annotate(user_refusals=Subquery(per_user))

    @admin.display(description=_("refusals"), ordering="user_refusals")
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
