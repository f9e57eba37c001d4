"""Hash lists' PDQ, MD5 and SHA-256 entries and their imports in the admin: each entry's
provenance (list, source, import, when) and the feedback an exchange asks for (how often it
matched, how often its matches were dismissed). Entries change only through ``signal_lists``.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import F
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from moderation import precision, signal_lists
from moderation.admin.base import PlainRelationsMixin, ReadOnlyAdminMixin, precision_cell
from moderation.conf import moderation_settings
from moderation.models import SignalEntry, SignalImport


class EntryPrecisionFilter(admin.SimpleListFilter):
    """Entries by the rating of their precision (``moderation.precision``)."""

    title = _("precision")
    parameter_name = "precision"

    def lookups(self, request, model_admin):
        return list(precision.RATINGS.items())

    def queryset(self, request, queryset):
        if self.value() in precision.RATINGS:
            return queryset.filter(record_rating=self.value())
        return queryset


def precision_help() -> str:
    return _(
        "Precision = judged right ÷ judged decisions (right: a queued match banned; wrong: a "
        "match dismissed). Rated after %(min)d judged decisions; poor below %(below)d %%."
    ) % {
        "min": moderation_settings.PRECISION_MIN_JUDGED,
        "below": moderation_settings.PRECISION_POOR_BELOW,
    }


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
        "record_precision",
    ]
    list_filter = ["signal_type", "active", "hash_list", "source", EntryPrecisionFilter]
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
        "record",
    ]
    readonly_fields = fields
    actions = ["retract"]

    def get_queryset(self, request):
        """Every entry with its record (``precision.entries_with_record``), in one query."""
        return precision.entries_with_record(super().get_queryset(request))

    @admin.display(description=_("precision"), ordering=F("record_precision").asc(nulls_last=True))
    def record_precision(self, obj: SignalEntry) -> str:
        return precision_cell(precision.Record.of(obj))

    @admin.display(description=_("record"))
    def record(self, obj: SignalEntry) -> str:
        """What the entry matched and how its queued matches were judged: right when banned,
        wrong when dismissed (a list entry's refusal gives no notice, so no appeals)."""
        record = precision.Record.of(obj)
        return format_html(
            '<p>{}</p><p><strong>{}</strong></p><p class="help">{}</p>',
            _(
                "Matched %(matched)d uploads: %(refused)d refused, %(queued)d queued for "
                "review (%(banned)d banned, %(dismissed)d dismissed)."
            )
            % {
                "matched": record.matched,
                "refused": record.refused,
                "queued": record.queued,
                "banned": record.banned,
                "dismissed": record.dismissed,
            },
            _("Precision: %(summary)s") % {"summary": record.summary},
            precision_help(),
        )

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
