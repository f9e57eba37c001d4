"""What the moderation admin pages share: the read-only base, the link to a quarantined file
(never a storage URL), the lookup of a queued image's stored file and a record's precision cell.
"""

from __future__ import annotations

from django.urls import reverse
from django.utils.html import format_html

from moderation.models import ReviewItem
from moderation.precision import NOT_ENOUGH, Record


def quarantine_link(fieldfile, label: str = "view") -> str:
    """A link to the permission-checked quarantine view (never a storage URL)."""
    if not fieldfile:
        return "—"
    url = reverse("moderation:quarantined-file", args=[fieldfile.name])
    return format_html('<a href="{}" target="_blank" rel="noopener">{}</a>', url, label)


class ReadOnlyAdminMixin:
    """Records that change only through the flows (or never): no add, edit or delete."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


def stored_image(item: ReviewItem):
    """The queued image's file, or None when it has been replaced or removed since."""
    from moderation import registry

    try:
        target = registry.target_by_key(item.target_key)
    except KeyError:
        return None
    instance = target.model._default_manager.filter(pk=item.object_id).first()
    image = getattr(instance, target.file_field, None) if instance is not None else None
    return image if image and image.name == item.file_name else None


def precision_cell(record: Record) -> str:
    """The precision cell of a list, e.g. "17 % (poor)" or "not enough data", marked with the
    rating's class (admin.css)."""
    if record.rating == NOT_ENOUGH:
        return format_html('<span class="record-not-enough">{}</span>', record.rating_label)
    return format_html(
        '<span class="record-{}">{} ({})</span>', record.rating, record.percent, record.rating_label
    )
