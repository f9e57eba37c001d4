"""What the moderation admin pages share: the read-only base, the link to a quarantined file
(never a storage URL), the lookup of a queued image's stored file and the truncated cell.
"""

from __future__ import annotations

from django.urls import reverse
from django.utils.html import format_html

from moderation.models import ReviewItem


def quarantine_link(fieldfile, label: str = "view") -> str:
    """A link to the permission-checked quarantine view (never a storage URL)."""
    if not fieldfile:
        return "—"
    url = reverse("moderation:quarantined-file", args=[fieldfile.name])
    return format_html('<a href="{}" target="_blank" rel="noopener">{}</a>', url, label)


def truncated(text) -> str:
    """A list cell that stays one short line (``mod-trunc`` in admin.css cuts it with an
    ellipsis), so a long name or target cannot push the list wider than the screen. The full
    text is in the tooltip and on the record's own page."""
    if text in (None, ""):
        return "—"
    return format_html('<span class="mod-trunc" title="{}">{}</span>', text, text)


class FitsTheScreenMixin:
    """A changelist with many columns, drawn without the navigation sidebar: on a 1280 px
    screen the sidebar and the filters leave the table about 600 px, too little for the
    columns a moderator reads side by side. The breadcrumbs and the index still lead
    everywhere the sidebar does."""

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "is_nav_sidebar_enabled": False}
        return super().changelist_view(request, extra_context)


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
