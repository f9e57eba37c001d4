"""Appeals in the admin: the queue of open appeals and each appeal's page, with the person's
photo as it was taken down beside the flag's original, and uphold / overturn with a reason.
Decisions go through ``appeals``; they need the review queue's permissions."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from moderation import appeals
from moderation.admin.base import PlainRelationsMixin, ReadOnlyAdminMixin
from moderation.admin.filters import DefaultStatusFilter
from moderation.hashing import Fingerprint
from moderation.models import Appeal


class AppealStatusFilter(DefaultStatusFilter):
    """Open appeals by default: they are the queue; decided ones are a click away."""

    statuses = Appeal.Status
    default = Appeal.Status.OPEN


@admin.register(Appeal)
class AppealAdmin(PlainRelationsMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """Appeals against takedowns and refusals, oldest first. Each appeal's page shows the
    person's words, the photo as it was taken down (kept privately; of a refusal, the
    thumbnail its row keeps) and the flag's original side by side (both only to staff with
    ``moderation.view_quarantine``), with uphold and overturn buttons that need a reason."""

    list_display = ["__str__", "kind", "person", "flag", "status", "created_at", "decided_at"]
    list_filter = [AppealStatusFilter, "notice__kind", "created_at"]
    list_select_related = ["notice", "notice__user", "notice__fingerprint"]
    search_fields = ["notice__user__username", "notice__target"]
    change_form_template = "admin/moderation/appeal/decide.html"

    @admin.display(description=_("decision appealed"), ordering="notice__kind")
    def kind(self, obj: Appeal) -> str:
        return obj.notice.get_kind_display()

    @admin.display(description=_("person"), ordering="notice__user__username")
    def person(self, obj: Appeal) -> str:
        return str(obj.notice.user)

    @admin.display(description=_("flag"))
    def flag(self, obj: Appeal) -> str:
        notice = obj.notice
        if notice.fingerprint_id is None:
            entry = notice.signal_entry
            return f"{entry.signal_type} {entry.value[:16]}… ({entry.hash_list})" if entry else ""
        return notice.fingerprint.hex

    def has_decide_permission(self, request) -> bool:
        return request.user.has_perm("moderation.review_upload") and request.user.has_perm(
            "moderation.flag_image"
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        appeal = self.get_object(request, object_id)
        if appeal is None:
            raise Http404(_("No such appeal."))
        if not self.has_view_permission(request, appeal):
            raise PermissionDenied
        if request.method == "POST":
            return self._decide(request, appeal)
        notice = appeal.notice
        flagged = notice.fingerprint
        can_see = request.user.has_perm("moderation.view_quarantine")

        def private(name: str) -> str:
            return reverse("moderation:quarantined-file", args=[name]) if can_see and name else ""

        refused = notice.refused_upload
        if refused is not None:  # the refusal's own thumbnail (no file was stored)
            has_thumbnail = can_see and refused.thumbnail is not None
            photo_url = (
                reverse("moderation:refusal-thumbnail", args=[refused.pk]) if has_thumbnail else ""
            )
        else:
            photo_url = "" if notice.purged_at else private(notice.kept_file)
        context = {
            **self.admin_site.each_context(request),
            "title": _("Decide an appeal"),
            "opts": self.model._meta,
            "appeal": appeal,
            "notice": notice,
            "flagged": flagged,
            "photo_url": photo_url,
            "original_url": private(flagged.original.name if flagged and flagged.original else ""),
            "entry": notice.signal_entry,
            "can_see": can_see,
            "photo_hex": Fingerprint.from_signed(notice.dhash).hex,
            "refused": refused,
            "takedown": notice.takedown,
            "can_decide": self.has_decide_permission(request)
            and appeal.status == Appeal.Status.OPEN,
            "error": "",
        }
        return TemplateResponse(request, self.change_form_template, context)

    def _decide(self, request, appeal: Appeal):
        if not self.has_decide_permission(request):
            raise PermissionDenied
        decision = request.POST.get("decision")
        if decision not in ("uphold", "overturn"):
            return HttpResponse(status=400)
        try:
            result = appeals.decide_appeal(
                appeal=appeal,
                actor=request.user,
                overturn=decision == "overturn",
                reason=request.POST.get("reason", ""),
            )
        except ValidationError as e:
            self.message_user(request, " ".join(e.messages), messages.ERROR)
            return redirect(request.path)
        if not result.decided:
            self.message_user(request, _("Already decided."), messages.WARNING)
        elif not result.overturned:
            self.message_user(request, _("Upheld: the decision stands."), messages.SUCCESS)
        elif result.restored and appeal.notice.fingerprint_id is None:
            self.message_user(
                request,
                _("Overturned: the photo is back on the profile; list sweeps leave it alone."),
                messages.SUCCESS,
            )
        elif result.restored:
            self.message_user(
                request,
                _("Overturned: the photo is back on the profile and allowed for that flag."),
                messages.SUCCESS,
            )
        else:
            self.message_user(
                request,
                _("Overturned: the image is allowed for that flag (no photo to put back)."),
                messages.SUCCESS,
            )
        return redirect("admin:moderation_appeal_changelist")
