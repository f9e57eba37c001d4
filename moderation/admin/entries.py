"""Hash lists' PDQ, MD5 and SHA-256 entries and their imports in the admin: each entry's
provenance (list, source, import, when) and the feedback an exchange asks for (how often it
matched, how often its matches were dismissed). Entries change only through ``signal_lists``.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from moderation import signal_lists
from moderation.admin.base import PlainRelationsMixin, ReadOnlyAdminMixin
from moderation.models import SignalEntry, SignalImport


@admin.register(SignalEntry)
class SignalEntryAdmin(PlainRelationsMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "short_value",
        "signal_type",
        "hash_list",
        "source",
        "added_at",
        "imported_by",
        "active",
        "times_matched",
        "times_dismissed",
    ]
    list_filter = ["signal_type", "active", "hash_list", "source"]
    list_select_related = ["hash_list", "imported_by"]
    search_fields = ["value", "external_id", "tags"]
    date_hierarchy = "added_at"
    fields = [
        "signal_type",
        "value",
        "quality",
        "hash_list",
        "source",
        "external_id",
        "tags",
        "added_at",
        "imported_by",
        "active",
        "retracted_at",
        "retracted_by",
        "times_matched",
        "times_dismissed",
    ]
    readonly_fields = fields
    actions = ["retract"]

    @admin.display(description=_("hash"), ordering="value")
    def short_value(self, obj: SignalEntry) -> str:
        return f"{obj.value[:16]}…" if len(obj.value) > 16 else obj.value

    def has_retract_permission(self, request) -> bool:
        return request.user.has_perm("moderation.unflag_image")

    @admin.action(description=_("Retract selected entries"), permissions=["retract"])
    def retract(self, request, queryset):
        """Retract the selected entries (kept, inactive, audited; matched no more)."""
        done = sum(
            signal_lists.entry_retract(entry=entry, actor=request.user, reason="by a moderator")
            for entry in queryset.filter(active=True)
        )
        self.message_user(
            request,
            ngettext("%(n)d entry retracted.", "%(n)d entries retracted.", done) % {"n": done},
            messages.SUCCESS,
        )


@admin.register(SignalImport)
class SignalImportAdmin(PlainRelationsMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "pk",
        "file_name",
        "hash_list",
        "source",
        "state",
        "progress",
        "added",
        "unchanged",
        "retracted",
        "malformed",
        "created_at",
        "finished_at",
    ]
    list_filter = ["state", "hash_list", "source"]
    list_select_related = ["hash_list"]
    fields = [
        "file_name",
        "format",
        "hash_list",
        "source",
        "default_signal_type",
        "retract_missing",
        "state",
        "progress",
        "lines_done",
        "added",
        "unchanged",
        "retracted",
        "malformed",
        "errors",
        "last_error",
        "created_by",
        "created_at",
        "finished_at",
    ]
    readonly_fields = fields

    @admin.display(description=_("read"))
    def progress(self, obj: SignalImport) -> str:
        share = obj.bytes_done / obj.total_bytes if obj.total_bytes else 1
        return f"{share:.0%}"
