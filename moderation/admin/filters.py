"""List filters the moderation admin shares."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.db import models
from django.utils.translation import gettext_lazy as _


class DefaultStatusFilter(admin.SimpleListFilter):
    """A status filter that opens on the status that is the queue (open appeals, open reports,
    pending uploads): every other status, and all of them, one click away.

    A list sets ``statuses`` (its model's ``Status`` choices) and ``default``, and may keep the
    parameter its links already use (``parameter_name``). An unknown status is an error the
    admin reports (``IncorrectLookupParameters``), never an empty list that looks like an
    empty queue.
    """

    title = _("status")
    parameter_name = "status"
    ALL = "all"
    statuses: type[models.TextChoices]
    default: str

    def lookups(self, request, model_admin):
        return [*self.statuses.choices, (self.ALL, _("All"))]

    def value(self):
        value = super().value() or self.default
        if value not in {str(code) for code, _label in self.lookup_choices}:
            raise IncorrectLookupParameters(f"unknown status {value!r}")
        return value

    def choices(self, changelist):
        # No "All" of Django's own (it would mean the default): ours is in lookups.
        for code, label in self.lookup_choices:
            yield {
                "selected": self.value() == str(code),
                "query_string": changelist.get_query_string({self.parameter_name: code}),
                "display": label,
            }

    def queryset(self, request, queryset):
        value = self.value()
        return queryset if value == self.ALL else queryset.filter(status=value)
