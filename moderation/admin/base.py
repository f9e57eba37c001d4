"""What the moderation admin pages share: the read-only base, relations shown as text to whom
their page would refuse, the link to a quarantined file (never a storage URL), a refusal's kept
thumbnail, the lookup of a queued image's stored file, the truncated cell and a record's
precision cell.
"""

from __future__ import annotations

from datetime import timedelta
from functools import cached_property

from django.contrib import admin, messages
from django.db import models
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext as _

from moderation.conf import moderation_settings
from moderation.models import RefusedUpload, ReviewItem
from moderation.precision import NOT_ENOUGH, Record
from moderation.templatetags.moderation_wellness import reviewed_img


def quarantine_link(fieldfile, label: str = "view") -> str:
    """A link to the permission-checked quarantine view (never a storage URL)."""
    if not fieldfile:
        return "—"
    url = reverse("moderation:quarantined-file", args=[fieldfile.name])
    return format_html('<a href="{}" target="_blank" rel="noopener">{}</a>', url, label)


def refused_picture(refused: RefusedUpload, *, size: int = 240) -> str:
    """The thumbnail a refusal keeps of the refused picture, blurred until clicked, through the
    permission-checked ``refusal_thumbnail`` view (the caller has checked
    ``moderation.view_quarantine``); else why there is none."""
    if refused.thumbnail is not None:
        url = reverse("moderation:refusal-thumbnail", args=[refused.pk])
        return reviewed_img(url, alt=_("the refused upload"), size=size)
    if refused.code != "banned_image":
        why = _("Refused as unreadable: no picture to keep.")
    elif refused.created_at < timezone.now() - timedelta(
        days=moderation_settings.TAKEDOWN_KEEP_DAYS
    ):
        why = _("No thumbnail is kept any more (its keep period is over).")
    else:
        why = _("No thumbnail was kept of this refusal.")
    return format_html("<p><em>{}</em></p>", why)


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


class PlainRelationsMixin:
    """Read-only relations ("Flagged by", "User", "Actor"…) as plain text to a viewer who may
    not open the related record's admin page.

    Django links every read-only foreign key to the related change page whatever the viewer
    may see there, so a moderator without the users' view permission would follow "Flagged
    by: alice" to a bare 403. For such a viewer each of those fields is swapped, in the
    fieldsets and the read-only fields alike, for a display of the related record's name; a
    viewer who may open the page keeps Django's link. Every admin of these apps uses it (a
    test checks each registered admin)."""

    @cached_property
    def _plain_displays(self) -> dict[str, object]:
        return {}  # one display per field, so fieldsets and read-only fields name the same one

    def _plain_display(self, field: models.Field):
        if field.name not in self._plain_displays:

            @admin.display(description=field.verbose_name)
            def show(obj):
                value = getattr(obj, field.name, None)
                return "—" if value is None else str(value)

            show.__name__ = field.name
            self._plain_displays[field.name] = show
        return self._plain_displays[field.name]

    def _may_open(self, request, model) -> bool:
        if not self.admin_site.is_registered(model):
            return True  # no page to link to: Django shows the name already
        return self.admin_site.get_model_admin(model).has_view_or_change_permission(request)

    def _plain_swaps(self, request, obj, readonly) -> dict:
        # Without change permission every field of a change page is read-only (Django's rule).
        all_readonly = obj is not None and not self.has_change_permission(request, obj)
        return {
            field.name: self._plain_display(field)
            for field in self.model._meta.concrete_fields
            if field.is_relation
            and (all_readonly or field.name in readonly)
            and not self._may_open(request, field.related_model)
        }

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        swaps = self._plain_swaps(request, obj, readonly)
        return [swaps.get(f, f) for f in readonly]

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        readonly = super().get_readonly_fields(request, obj)
        swaps = self._plain_swaps(request, obj, readonly)
        if not swaps:
            return fieldsets
        return [
            (name, {**options, "fields": _swapped(options["fields"], swaps)})
            for name, options in fieldsets
        ]


def _swapped(fields, swaps: dict):
    return [
        _swapped(f, swaps) if isinstance(f, (list, tuple)) else swaps.get(f, f) for f in fields
    ]


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


def confirm_with_reason(
    modeladmin: admin.ModelAdmin,
    request,
    *,
    form_class,
    act,
    done,
    template: str,
    title: str,
    action: str,
    context: dict,
):
    """An admin action that asks why before it acts, as every staff decision here does.

    The first call shows ``template`` (the selected rows in ``context``, the reason form);
    posted back with ``confirm`` and a valid reason, ``act(reason)`` does the work and returns
    how many rows it changed, and ``done(count)`` is the success message. Returns what an
    admin action returns: None after acting (back to the list), else the confirmation page.
    """
    form = form_class(request.POST if "confirm" in request.POST else None)
    if "confirm" in request.POST and form.is_valid():
        count = act(form.cleaned_data["reason"])
        modeladmin.message_user(request, done(count), messages.SUCCESS)
        return None
    return TemplateResponse(
        request,
        template,
        {
            **modeladmin.admin_site.each_context(request),
            "title": title,
            "opts": modeladmin.model._meta,
            "form": form,
            "action": action,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            **context,
        },
    )
