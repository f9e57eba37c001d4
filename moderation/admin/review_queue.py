"""The review queue in the admin: the queue, each item's side-by-side review page with its ban
and dismiss buttons, the moderation dashboard and the queue-email opt-in. Decisions go
through ``desk``; subscriptions through ``review``.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from moderation import desk, review
from moderation.admin.base import (
    FitsTheScreenMixin,
    PlainRelationsMixin,
    ReadOnlyAdminMixin,
    stored_image,
    truncated,
)
from moderation.admin.filters import DefaultStatusFilter
from moderation.conf import moderation_settings
from moderation.models import RefusedUpload, ReviewItem, ReviewSubscription
from moderation.templatetags.moderation_wellness import reviewed_img

# Near misses of the same flag listed (and decided together) on a review page.
GROUP_SHOWN = 50


class BanReasonForm(forms.Form):
    """Why a queued upload is banned: it becomes the flag's reason, read by every moderator
    who later meets the flag, so it is asked for, never made up."""

    reason = forms.CharField(label=_("Reason"), max_length=200, strip=True)


def suggested_ban_reason(item: ReviewItem) -> str:
    """What the ban prompt offers, for the moderator to keep or edit: what it was near, and
    the flag's own reason when it has one."""
    if item.fingerprint_id is None:
        return f"same picture as list entry {item.signal_entry}"[:200]
    flagged = item.fingerprint
    why = f": {flagged.reason}" if flagged.reason else ""
    return f"same picture as banned {flagged.hex}{why}"[:200]


class ReviewStatusFilter(DefaultStatusFilter):
    """The queue opens on what is waiting (pending). The parameter is the one ``status__exact``
    links (and the queue emails) use."""

    parameter_name = "status__exact"
    statuses = ReviewItem.Status
    default = ReviewItem.Status.PENDING


@admin.register(ReviewItem)
class ReviewItemAdmin(
    FitsTheScreenMixin, PlainRelationsMixin, ReadOnlyAdminMixin, admin.ModelAdmin
):
    """The review queue: accepted uploads close to a banned fingerprint, oldest first.

    Each item's page shows the upload and the flagged original side by side (the original only
    to staff with ``moderation.view_quarantine``, through the quarantine view), both hashes,
    the distance, the uploader and their refused uploads, with one button to ban the upload
    (the flag service) and one to dismiss it (an allowlist exception).
    """

    class Media:
        css = {"all": ["moderation/admin.css"]}  # thumbnails, no inline style

    # Narrow enough for a 1280 px screen: the target and the uploader cut to one line.
    list_display = [
        "thumbnail",
        "target_cell",
        "uploader_cell",
        "flag_cell",
        "distance_cell",
        "status",
        "found_by_cell",
        "created_at",
    ]
    list_filter = [ReviewStatusFilter, "found_by", "created_at"]
    list_select_related = ["uploader", "fingerprint"]
    search_fields = ["target", "uploader__username"]
    change_form_template = "admin/moderation/reviewitem/review.html"

    def get_urls(self):
        urls = [
            path(
                "dashboard/",
                self.admin_site.admin_view(self.dashboard_view),
                name="moderation_dashboard",
            ),
            path(
                "notifications/",
                self.admin_site.admin_view(self.subscription_view),
                name="moderation_review_subscription",
            ),
        ]
        return urls + super().get_urls()

    def dashboard_view(self, request):
        """Staff dashboard: refusals per day (chart), the queue, top fingerprints, repeaters."""
        from moderation import dashboard, wellness

        if not dashboard.can_see(request.user):
            raise PermissionDenied

        context = {
            **self.admin_site.each_context(request),
            "title": _("Moderation dashboard"),
            "opts": self.model._meta,
            **dashboard.summary(),
            "images_today": wellness.views_today(request.user),
            "blur_images": wellness.blurs_images(request.user),
            # Admins see every moderator's count; each moderator sees their own.
            "views_per_moderator": wellness.views_per_moderator()
            if request.user.is_superuser
            else None,
            "can_resume": request.user.has_perm("moderation.flag_image"),
            "can_drop": request.user.has_perm("moderation.unflag_image"),
            "can_decide_lists": request.user.has_perm("moderation.change_hashlist"),
        }
        return TemplateResponse(request, "admin/moderation/dashboard.html", context)

    def subscription_view(self, request):
        """POST: opt the moderator in to (``subscribe=1``) or out of review-queue emails."""
        if request.method != "POST":
            return HttpResponse(status=405, headers={"Allow": "POST"})
        if not self.has_review_permission(request):
            raise PermissionDenied
        on = review.review_subscription_set(
            user=request.user, subscribed=request.POST.get("subscribe") == "1"
        )
        if on and not request.user.email:
            self.message_user(
                request,
                format_html(
                    '{} <a href="{}">{}</a>',
                    _("Subscribed, but your account has no email address yet."),
                    reverse("admin:my_account"),
                    _("Set it under My account."),
                ),
                messages.WARNING,
            )
        else:
            self.message_user(
                request,
                _("You will get an email when the queue grows.")
                if on
                else _("You will no longer get review-queue emails."),
                messages.SUCCESS,
            )
        return redirect("admin:moderation_reviewitem_changelist")

    def changelist_view(self, request, extra_context=None):
        dashboard_url = reverse("admin:moderation_dashboard")
        extra_context = {
            **(extra_context or {}),
            "dashboard_url": dashboard_url,
            "can_review": self.has_review_permission(request),
            "subscribed": ReviewSubscription.objects.filter(user=request.user).exists(),
            "notify_minutes": moderation_settings.REVIEW_NOTIFY_MINUTES,
        }
        return super().changelist_view(request, extra_context)

    def has_review_permission(self, request) -> bool:
        return request.user.has_perm("moderation.review_upload") and request.user.has_perm(
            "moderation.flag_image"
        )

    @admin.display(description=_("target"), ordering="target")
    def target_cell(self, obj: ReviewItem) -> str:
        return truncated(obj.target or obj.file_name)

    @admin.display(description=_("uploader"), ordering="uploader__username")
    def uploader_cell(self, obj: ReviewItem) -> str:
        return truncated(obj.uploader.get_username() if obj.uploader_id else "")

    def get_list_display(self, request):
        """Without the status column when one status is listed (the filter says it)."""
        shown = super().get_list_display(request)
        if request.GET.get(ReviewStatusFilter.parameter_name) != ReviewStatusFilter.ALL:
            shown = [name for name in shown if name != "status"]
        return shown

    @admin.display(description=_("flag"), ordering="fingerprint")
    def flag_cell(self, obj: ReviewItem) -> str:
        return truncated(str(obj.fingerprint or obj.signal_entry or ""))

    @admin.display(description=_("distance"), ordering="distance")
    def distance_cell(self, obj: ReviewItem) -> int:
        return obj.distance

    @admin.display(description=_("found by"), ordering="found_by")
    def found_by_cell(self, obj: ReviewItem) -> str:
        return truncated(obj.get_found_by_display())

    @admin.display(description=_("upload"))
    def thumbnail(self, obj: ReviewItem) -> str:
        image = stored_image(obj)
        if image is None:
            return "—"
        return reviewed_img(image.url, size=64)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        item = self.get_object(request, object_id)
        if item is None:
            raise Http404(_("No such review item."))
        if not self.has_view_permission(request, item):
            raise PermissionDenied
        if request.method == "POST":
            return self._decide(request, item)
        flagged = item.fingerprint
        can_see_original = request.user.has_perm("moderation.view_quarantine")
        original_url = (
            reverse("moderation:quarantined-file", args=[flagged.original.name])
            if can_see_original and flagged is not None and flagged.original
            else ""
        )
        refused = (
            RefusedUpload.objects.filter(user=item.uploader)
            .select_related("nearest")
            .defer("thumbnail")[:50]
            if item.uploader_id
            else []
        )
        context = {
            **self.admin_site.each_context(request),
            "title": _("Review an upload"),
            "opts": self.model._meta,
            "item": item,
            "flagged": flagged,
            "entry": item.signal_entry,
            "upload": stored_image(item),
            "original_url": original_url,
            "can_see_original": can_see_original,
            "refused": refused,
            "can_review": self.has_review_permission(request) and item.status == "pending",
            # Near misses of the same flag, decided together if the moderator wants.
            "group": [
                {"item": other, "upload": stored_image(other)}
                for other in desk.same_flag_pending(item)[:GROUP_SHOWN]
            ]
            if item.status == "pending"
            else [],
            "next_url": self._next_url(item),
            "ban_reason": suggested_ban_reason(item),
        }
        return TemplateResponse(request, self.change_form_template, context)

    def _next_url(self, item: ReviewItem) -> str:
        """The review page of the next pending item (the oldest other one), or ''."""
        following = ReviewItem.objects.pending().exclude(pk=item.pk).first()
        if following is None:
            return ""
        return reverse("admin:moderation_reviewitem_change", args=[following.pk])

    def _decide(self, request, item: ReviewItem):
        if not self.has_review_permission(request):
            raise PermissionDenied
        decision = request.POST.get("decision")
        if decision not in ("ban", "dismiss"):
            return HttpResponse(status=400)
        reason = ""
        if decision == "ban":
            form = BanReasonForm(request.POST)
            if not form.is_valid():
                self.message_user(
                    request,
                    _("Nothing banned: give the reason for the ban (at most 200 characters)."),
                    messages.ERROR,
                )
                return redirect(request.path)
            reason = form.cleaned_data["reason"]
        if request.POST.get("group") == "1":
            done = desk.review_group(
                item=item, decision=decision, actor=request.user, reason=reason
            )
            self.message_user(
                request,
                ngettext(
                    "%(n)d item decided (%(decision)s).",
                    "%(n)d items decided (%(decision)s).",
                    done,
                )
                % {"n": done, "decision": decision},
                messages.SUCCESS if done else messages.WARNING,
            )
            return self._after_decision(item)
        if decision == "ban":
            try:
                done = desk.review_ban(item=item, actor=request.user, reason=reason)
            except ValidationError as e:
                self.message_user(request, " ".join(e.messages), messages.ERROR)
                return redirect(request.path)
            if done:
                self.message_user(request, _("Banned; the photo was taken down."), messages.SUCCESS)
            else:
                self.message_user(
                    request,
                    _("Nothing banned: the item was already decided or the image is gone."),
                    messages.WARNING,
                )
        elif desk.review_dismiss(item=item, actor=request.user):
            self.message_user(
                request,
                _("Dismissed; this image is allowed for that fingerprint from now on."),
                messages.SUCCESS,
            )
        else:
            self.message_user(request, _("Already decided."), messages.WARNING)
        return self._after_decision(item)

    def _after_decision(self, item: ReviewItem):
        """Straight on to the next pending item; the queue when none is left."""
        return redirect(self._next_url(item) or "admin:moderation_reviewitem_changelist")
