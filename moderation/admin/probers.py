"""Uploaders escalated as probers, in the admin: the queue of escalations, each one's attempts
side by side with the banned image they circle, the uploads held meanwhile, and closing one.
Escalation and holding are ``probing``'s; this page only shows and closes."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from moderation import probing
from moderation.admin.base import PlainRelationsMixin, ReadOnlyAdminMixin, stored_image
from moderation.models import ProberEscalation, ReviewItem


@admin.register(ProberEscalation)
class ProberEscalationAdmin(PlainRelationsMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """Accounts and IPs whose uploads kept landing near banned images. Each page shows the
    attempts side by side (what each was near, how near, and the near misses' stored images,
    blurred) and the uploads held for review; a moderator closes the escalation."""

    list_display = ["who", "fingerprint", "attempts", "opened_at", "status", "held_count"]
    list_filter = ["status", "opened_at"]
    list_select_related = ["user", "fingerprint"]
    search_fields = ["user__username", "ip"]
    change_form_template = "admin/moderation/proberescalation/attempts.html"

    @admin.display(description=_("account or IP"))
    def who(self, obj: ProberEscalation) -> str:
        return obj.who

    @admin.display(description=_("uploads held"))
    def held_count(self, obj: ProberEscalation) -> int:
        return self._held(obj).count()

    def _held(self, obj: ProberEscalation):
        held = ReviewItem.objects.filter(found_by=ReviewItem.FoundBy.HELD)
        if obj.user_id:
            return held.filter(uploader_id=obj.user_id)
        users = probing.accounts_from_ip(obj.ip)
        return held.filter(uploader_id__in=users)

    def has_close_permission(self, request) -> bool:
        return request.user.has_perm("moderation.review_upload")

    def change_view(self, request, object_id, form_url="", extra_context=None):
        escalation = self.get_object(request, object_id)
        if escalation is None:
            raise Http404(_("No such escalation."))
        if not self.has_view_permission(request, escalation):
            raise PermissionDenied
        if request.method == "POST":
            if not self.has_close_permission(request):
                raise PermissionDenied
            if probing.close_escalation(escalation=escalation, actor=request.user):
                self.message_user(
                    request, _("Closed: the uploads are no longer held."), messages.SUCCESS
                )
            else:
                self.message_user(request, _("Already closed."), messages.WARNING)
            return redirect("admin:moderation_proberescalation_changelist")
        flagged = escalation.fingerprint
        can_see_original = request.user.has_perm("moderation.view_quarantine")
        original_url = (
            reverse("moderation:quarantined-file", args=[flagged.original.name])
            if flagged is not None and can_see_original and flagged.original
            else ""
        )
        attempts = probing.attempts(escalation)
        for row in attempts:
            row["upload"] = stored_image(row["item"]) if row["item"] is not None else None
            # A refusal's kept thumbnail, private as quarantine.
            row["thumbnail_url"] = (
                reverse("moderation:refusal-thumbnail", args=[row["refused_id"]])
                if can_see_original and row["refused_id"] is not None
                else ""
            )
        held = [
            {"item": item, "upload": stored_image(item)}
            for item in self._held(escalation).select_related("fingerprint")[:50]
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": _("Escalated prober: %(who)s") % {"who": escalation.who},
            "opts": self.model._meta,
            "escalation": escalation,
            "flagged": flagged,
            "original_url": original_url,
            "attempts": attempts,
            "held": held,
            "can_close": self.has_close_permission(request)
            and escalation.status == ProberEscalation.Status.OPEN,
        }
        return TemplateResponse(request, self.change_form_template, context)
