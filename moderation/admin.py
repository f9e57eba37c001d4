"""Staff-facing moderation: the banned set, the "Flag an image" page and the audit trail."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, OuterRef, Q, Subquery
from django.http import Http404, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from moderation import desk, exchange, flagging, hash_lists, review
from moderation.conf import moderation_settings
from moderation.files import StorageUnavailable
from moderation.hashing import Fingerprint
from moderation.models import (
    AllowedMatch,
    AuditEvent,
    FingerprintVariant,
    FlaggedFingerprint,
    HashList,
    RefusedUpload,
    ReviewItem,
    ReviewSubscription,
    ShadowHit,
)


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


class FlagImageForm(forms.Form):
    image = forms.FileField(label=_("Image"), help_text=_("JPEG, PNG, GIF or WebP."))
    reason = forms.CharField(
        label=_("Reason"),
        max_length=500,
        help_text=_("Shown to other moderators and in the audit."),
    )

    allow_low_information = forms.BooleanField(
        label=_("Flag even if low-information"),
        required=False,
        help_text=_(
            "Superusers only. Near-flat images (fog, sky, a plain wall) are refused because they "
            "look alike to the matcher; flagged anyway, a match with one sends an upload to "
            "review instead of blocking it."
        ),
    )

    def __init__(self, *args, superuser: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not superuser:
            del self.fields["allow_low_information"]


class UnflagReasonForm(forms.Form):
    reason = forms.CharField(label=_("Reason for unflagging"), max_length=500)


@admin.register(FlaggedFingerprint)
class FlaggedFingerprintAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "hex_hash",
        "hash_list",
        "source",
        "short_reason",
        "flagged_by",
        "flagged_at",
        "active",
        "suspended",
        "original_link",
    ]
    list_filter = ["active", "suspended", "hash_list", "source", "flagged_at"]
    list_select_related = ["flagged_by", "hash_list"]
    search_fields = ["reason"]
    search_help_text = _("Search by the 16-digit hex hash or by words in the reason.")
    readonly_fields = [
        "hex_hash",
        "hash_list",
        "pipeline_version",
        "information",
        "reason",
        "source",
        "flagged_by",
        "flagged_at",
        "active",
        "suspended",
        "unflagged_by",
        "unflagged_at",
        "original_link",
        "variant_table",
    ]
    fields = readonly_fields
    actions = ["unflag_selected", "export_selected"]
    change_list_template = "admin/moderation/flaggedfingerprint/change_list.html"

    @admin.display(description=_("dHash"), ordering="dhash")
    def hex_hash(self, obj: FlaggedFingerprint) -> str:
        return format_html("<code>{}</code>", obj.hex)

    @admin.display(description=_("reason"))
    def short_reason(self, obj: FlaggedFingerprint) -> str:
        return obj.reason if len(obj.reason) <= 60 else obj.reason[:57] + "…"

    @admin.display(description=_("original"))
    def original_link(self, obj: FlaggedFingerprint) -> str:
        return quarantine_link(obj.original)

    @admin.display(description=_("fingerprints matched"))
    def variant_table(self, obj: FlaggedFingerprint) -> str:
        """Every stored variant (orientations and crops): what an upload is compared with."""
        variants: list[FingerprintVariant] = list(obj.variants.all())
        if not variants:
            return "—"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td><code>{}</code></td><td><code>{}</code></td></tr>",
            (
                (
                    v.get_variant_display(),
                    v.hex,
                    "—" if v.fingerprint.phash is None else f"{v.fingerprint.phash:016x}",
                )
                for v in variants
            ),
        )
        return format_html(
            "<table><thead><tr><th>{}</th><th>dHash</th><th>pHash</th></tr></thead>"
            "<tbody>{}</tbody></table>",
            _("variant"),
            rows,
        )

    def get_search_results(self, request, queryset, search_term):
        """A 16-digit hex term finds the fingerprint with that hash; anything else the reason."""
        term = search_term.strip()
        try:
            signed = Fingerprint.from_hex(term).signed
        except ValueError:
            return super().get_search_results(request, queryset, search_term)
        return queryset.filter(Q(dhash=signed) | Q(reason__icontains=term)), False

    # The banned set only changes through the flows: no add, edit or delete here.

    def has_flag_permission(self, request) -> bool:
        return request.user.has_perm("moderation.flag_image")

    def has_unflag_permission(self, request) -> bool:
        return request.user.has_perm("moderation.unflag_image")

    @admin.action(description=_("Unflag selected fingerprints"), permissions=["unflag"])
    def unflag_selected(self, request, queryset):
        """Deactivate the selected fingerprints after the moderator gives a reason."""
        form = UnflagReasonForm(request.POST if "confirm" in request.POST else None)
        if "confirm" in request.POST and form.is_valid():
            count = sum(
                flagging.unflag_fingerprint(
                    flagged=flagged, actor=request.user, reason=form.cleaned_data["reason"]
                )
                for flagged in queryset
            )
            self.message_user(
                request,
                ngettext("Unflagged %d fingerprint.", "Unflagged %d fingerprints.", count) % count,
                messages.SUCCESS,
            )
            return None
        return TemplateResponse(
            request,
            "admin/moderation/unflag_confirmation.html",
            {
                **self.admin_site.each_context(request),
                "title": _("Unflag fingerprints"),
                "opts": self.model._meta,
                "queryset": queryset,
                "form": form,
                "action": "unflag_selected",
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            },
        )

    @admin.action(description=_("Export selected (CSV)"), permissions=["view"])
    def export_selected(self, request, queryset):
        """Download the selected active fingerprints in the exchange format
        (``moderation.exchange``, the same CSV as ``manage.py export_fingerprints``)."""
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="fingerprints.csv"'
        exchange.write(exchange.fingerprint_records(queryset), response, "csv")
        return response

    def get_urls(self):
        urls = [
            path(
                "flag-image/",
                self.admin_site.admin_view(self.flag_image_view),
                name="moderation_flaggedfingerprint_flag_image",
            )
        ]
        return urls + super().get_urls()

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "can_flag": self.has_flag_permission(request)}
        return super().changelist_view(request, extra_context)

    def flag_image_view(self, request):
        """Upload a file straight into the banned set (its original is kept privately)."""
        if not self.has_flag_permission(request):
            raise PermissionDenied
        form = FlagImageForm(
            request.POST or None, request.FILES or None, superuser=request.user.is_superuser
        )
        if request.method == "POST" and form.is_valid():
            try:
                result = flagging.flag_image(
                    file=form.cleaned_data["image"],
                    reason=form.cleaned_data["reason"],
                    source=FlaggedFingerprint.Source.ADMIN_UPLOAD,
                    actor=request.user,
                    allow_low_information=form.cleaned_data.get("allow_low_information", False),
                )
            except ValidationError as e:
                form.add_error("image", e)
            except StorageUnavailable:
                form.add_error(
                    None,
                    _("File storage is unavailable right now, so nothing was flagged. Try again."),
                )
            else:
                if result.created:
                    text = _("Flagged %(hex)s. Matching profile photos are being taken down.")
                else:
                    text = _("%(hex)s was already banned; your flag was added to its audit trail.")
                self.message_user(request, text % {"hex": result.fingerprint.hex}, messages.SUCCESS)
                return redirect("admin:moderation_flaggedfingerprint_changelist")
        context = {
            **self.admin_site.each_context(request),
            "title": _("Flag an image"),
            "opts": self.model._meta,
            "form": form,
        }
        return TemplateResponse(request, "admin/moderation/flag_image.html", context)


class HashListForm(forms.ModelForm):
    class Meta:
        model = HashList
        fields = ["name", "description", "max_distance", "enabled", "mode"]

    def clean_max_distance(self):
        value = self.cleaned_data["max_distance"]
        if value is not None and value > moderation_settings.REVIEW_DISTANCE:
            raise ValidationError(
                _("At most %(max)s (MODERATION_REVIEW_DISTANCE)."),
                params={"max": moderation_settings.REVIEW_DISTANCE},
            )
        return value


class TrialDistanceForm(forms.Form):
    distance = forms.IntegerField(
        label=_("Proposed dHash distance"),
        min_value=0,
        max_value=64,
        help_text=_("Bits (<=). At most MODERATION_REVIEW_DISTANCE."),
    )


@admin.register(HashList)
class HashListAdmin(admin.ModelAdmin):
    """Named lists, each with its own distance, switch and mode. Saving a change to the
    matching policy goes through ``hash_lists.hash_list_update`` so every process follows."""

    form = HashListForm
    list_display = [
        "name", "max_distance", "enabled", "mode", "trial", "flag_count", "created_at",
    ]
    list_filter = ["enabled", "mode"]
    search_fields = ["name"]
    readonly_fields = ["trial"]
    change_form_template = "admin/moderation/hashlist/change_form.html"

    @admin.display(description=_("distance on trial"))
    def trial(self, obj: HashList) -> str:
        if obj.pk is None:
            return "—"
        url = reverse("admin:moderation_hashlist_trial", args=[obj.pk])
        if obj.proposed_distance is None:
            return format_html('<a href="{}">{}</a>', url, _("none — try a distance"))
        hits = ShadowHit.objects.filter(
            hash_list=obj, kind=ShadowHit.Kind.DISTANCE, created_at__gte=obj.proposed_at
        ).count()
        return format_html(
            '<a href="{}">{}</a>',
            url,
            ngettext(
                "%(d)s (enforced %(e)s): %(n)s upload would be caught",
                "%(d)s (enforced %(e)s): %(n)s uploads would be caught",
                hits,
            )
            % {"d": obj.proposed_distance, "e": obj.effective_distance, "n": hits},
        )

    def get_urls(self):
        urls = [
            path(
                "<int:object_id>/trial/",
                self.admin_site.admin_view(self.trial_view),
                name="moderation_hashlist_trial",
            )
        ]
        return urls + super().get_urls()

    def trial_view(self, request, object_id: int):
        """Try a distance on this list (shadow-test it), then promote or discard it.

        Anyone who may view lists sees the trial and its hits; proposing, promoting and
        discarding need ``moderation.change_hashlist`` and go through ``hash_lists`` (audited,
        every process follows from its next lookup)."""
        hash_list = HashList.objects.filter(pk=object_id).first()
        if hash_list is None:
            raise Http404(_("No such hash list."))
        if not self.has_view_permission(request, hash_list):
            raise PermissionDenied
        can_change = self.has_change_permission(request, hash_list)
        form = TrialDistanceForm(
            request.POST if request.POST.get("do") == "propose" else None,
            initial={"distance": hash_list.proposed_distance},
        )
        if request.method == "POST":
            if not can_change:
                raise PermissionDenied
            action = request.POST.get("do")
            try:
                if action == "propose":
                    if form.is_valid():
                        hash_lists.hash_list_propose_distance(
                            hash_list=hash_list,
                            distance=form.cleaned_data["distance"],
                            actor=request.user,
                        )
                        self.message_user(
                            request,
                            _(
                                "Distance %(d)s is on trial: uploads it would catch are "
                                "recorded; nothing changes for users."
                            )
                            % {"d": hash_list.proposed_distance},
                            messages.SUCCESS,
                        )
                        return redirect(request.path)
                elif action == "promote":
                    hash_lists.hash_list_promote_distance(hash_list=hash_list, actor=request.user)
                    self.message_user(
                        request,
                        _("Distance %(d)s is enforced from now on.")
                        % {"d": hash_list.max_distance},
                        messages.SUCCESS,
                    )
                    return redirect(request.path)
                elif action == "discard":
                    hash_lists.hash_list_discard_distance(hash_list=hash_list, actor=request.user)
                    self.message_user(
                        request,
                        _("Trial discarded; the list still enforces %(d)s.")
                        % {"d": hash_list.effective_distance},
                        messages.SUCCESS,
                    )
                    return redirect(request.path)
                else:
                    return HttpResponse(_("Unknown action."), status=400)
            except ValidationError as e:
                if action == "propose":
                    form.add_error("distance", e)
                else:
                    self.message_user(request, " ".join(e.messages), messages.ERROR)
                    return redirect(request.path)
        hits = ShadowHit.objects.filter(hash_list=hash_list, kind=ShadowHit.Kind.DISTANCE)
        if hash_list.proposed_at is not None and hash_list.proposed_distance is not None:
            current = hits.filter(created_at__gte=hash_list.proposed_at)
        else:
            current = hits.none()
        context = {
            **self.admin_site.each_context(request),
            "title": _("Try a distance on %(name)s") % {"name": hash_list.name},
            "opts": self.model._meta,
            "hash_list": hash_list,
            "form": form,
            "can_change": can_change,
            "enforcing": hash_list.enabled and not hash_list.shadow,
            "hits": current.select_related("uploader", "fingerprint")[:50],
            "hit_count": current.count(),
            "all_hit_count": hits.count(),
            "blocked_count": current.filter(outcome=ShadowHit.Outcome.BLOCK).count(),
            "hits_url": reverse("admin:moderation_shadowhit_changelist")
            + f"?hash_list__id__exact={hash_list.pk}&kind__exact=distance",
            "max_distance": moderation_settings.REVIEW_DISTANCE,
        }
        return TemplateResponse(request, "admin/moderation/hashlist/trial.html", context)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(active_flags=Count("fingerprints", filter=Q(fingerprints__active=True)))
        )

    @admin.display(description=_("active flags"), ordering="active_flags")
    def flag_count(self, obj: HashList) -> int:
        return obj.active_flags

    def save_model(self, request, obj, form, change):
        policy = {k: form.cleaned_data[k] for k in ("max_distance", "enabled", "mode")}
        if not change:
            super().save_model(request, obj, form, change)  # no flags yet: nothing to log
            return
        HashList.objects.filter(pk=obj.pk).update(name=obj.name, description=obj.description)
        hash_lists.hash_list_update(hash_list=obj, actor=request.user, **policy)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # flags point at their list; switch a list off instead


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The audit trail: read-only, append-only."""

    list_display = [
        "created_at",
        "action",
        "actor",
        "target",
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
    ]
    readonly_fields = fields

    @admin.display(description=_("evidence"))
    def evidence_link(self, obj: AuditEvent) -> str:
        return quarantine_link(obj.evidence)


@admin.register(RefusedUpload)
class RefusedUploadAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Uploads the site refused, with the nearest banned fingerprint: staff-only, read-only.

    A user with many ``banned_image`` refusals is probably editing a banned picture until it
    passes; the per-user count links to that user's refusals.
    """

    list_display = [
        "created_at",
        "user",
        "refusals_by_user",
        "ip",
        "code",
        "hex_hash",
        "nearest",
        "distance",
        "found_by",
    ]
    list_filter = ["code", "created_at"]
    list_select_related = ["user", "nearest"]
    search_fields = ["user__username", "ip"]
    date_hierarchy = "created_at"
    fields = ["created_at", "user", "ip", "code", "hex_hash", "nearest", "distance", "found_by"]
    readonly_fields = fields

    def get_queryset(self, request):
        per_user = (
            RefusedUpload.objects.filter(user=OuterRef("user"))
            .order_by()
            .values("user")
            .annotate(n=Count("pk"))
            .values("n")
        )
        return super().get_queryset(request).annotate(user_refusals=Subquery(per_user))

    @admin.display(description=_("refusals by this user"), ordering="user_refusals")
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


def _stored_image(item: ReviewItem):
    """The queued image's file, or None when it has been replaced or removed since."""
    from moderation import registry

    try:
        target = registry.target_by_key(item.target_key)
    except KeyError:
        return None
    instance = target.model._default_manager.filter(pk=item.object_id).first()
    image = getattr(instance, target.file_field, None) if instance is not None else None
    return image if image and image.name == item.file_name else None


@admin.register(ReviewItem)
class ReviewItemAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The review queue: accepted uploads close to a banned fingerprint, oldest first.

    Each item's page shows the upload and the flagged original side by side (the original only
    to staff with ``moderation.view_quarantine``, through the quarantine view), both hashes,
    the distance, the uploader and their refused uploads, with one button to ban the upload
    (the flag service) and one to dismiss it (an allowlist exception).
    """

    list_display = [
        "thumbnail",
        "target",
        "uploader",
        "fingerprint",
        "distance",
        "status",
        "found_by",
        "created_at",
    ]
    list_filter = ["status", "found_by", "created_at"]
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
        if not request.user.has_perm("moderation.view_refusedupload"):
            raise PermissionDenied
        from moderation import dashboard

        context = {
            **self.admin_site.each_context(request),
            "title": _("Moderation dashboard"),
            "opts": self.model._meta,
            **dashboard.summary(),
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
                request, _("Subscribed, but your account has no email address."), messages.WARNING
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

    @admin.display(description=_("upload"))
    def thumbnail(self, obj: ReviewItem) -> str:
        image = _stored_image(obj)
        if image is None:
            return "—"
        return format_html(
            '<img src="{}" alt="" style="width:64px;height:64px;object-fit:cover">', image.url
        )

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
            if can_see_original and flagged.original
            else ""
        )
        refused = (
            RefusedUpload.objects.filter(user=item.uploader).select_related("nearest")[:50]
            if item.uploader_id
            else []
        )
        context = {
            **self.admin_site.each_context(request),
            "title": _("Review an upload"),
            "opts": self.model._meta,
            "item": item,
            "flagged": flagged,
            "upload": _stored_image(item),
            "original_url": original_url,
            "can_see_original": can_see_original,
            "refused": refused,
            "can_review": self.has_review_permission(request) and item.status == "pending",
        }
        return TemplateResponse(request, self.change_form_template, context)

    def _decide(self, request, item: ReviewItem):
        if not self.has_review_permission(request):
            raise PermissionDenied
        decision = request.POST.get("decision")
        if decision == "ban":
            try:
                done = desk.review_ban(item=item, actor=request.user)
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
        elif decision == "dismiss":
            if desk.review_dismiss(item=item, actor=request.user):
                self.message_user(
                    request,
                    _("Dismissed; this image is allowed for that fingerprint from now on."),
                    messages.SUCCESS,
                )
            else:
                self.message_user(request, _("Already decided."), messages.WARNING)
        else:
            return HttpResponse(status=400)
        return redirect("admin:moderation_reviewitem_changelist")


@admin.register(ShadowHit)
class ShadowHitAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """What trials would have done: shadow-mode lists (would be blocked) and proposed list
    distances (would be blocked or queued at proposed distance N). Read before enforcing."""

    list_display = [
        "created_at", "hash_list", "what", "target", "uploader", "fingerprint", "distance",
    ]
    list_filter = ["kind", "hash_list", "outcome", "created_at"]
    list_select_related = ["hash_list", "uploader", "fingerprint"]
    search_fields = ["target", "uploader__username"]
    date_hierarchy = "created_at"
    fields = [
        "created_at",
        "hash_list",
        "what",
        "target",
        "uploader",
        "fingerprint",
        "distance",
        "confirm_distance",
        "enforced_distance",
    ]
    readonly_fields = fields

    @admin.display(description=_("what the trial would do"), ordering="kind")
    def what(self, obj: ShadowHit) -> str:
        return obj.label


class RevokeReasonForm(forms.Form):
    reason = forms.CharField(label=_("Reason for revoking"), max_length=500)


class AllowedStateFilter(admin.SimpleListFilter):
    title = _("state")
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("in_force", _("in force")), ("revoked", _("revoked"))]

    def queryset(self, request, queryset):
        if self.value() == "in_force":
            return queryset.in_force()
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(AllowedMatch)
class AllowedMatchAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The allowlist: every dismissal (who, when, which fingerprint, which image), newest first,
    with an action to revoke exceptions given by mistake. Revoking needs the same permissions
    as dismissing (``moderation.review_upload`` and ``moderation.flag_image``), is audited, and
    applies from the next lookup in every process (the allowlist is never cached)."""

    list_display = [
        "allowed_image",
        "allowed_hex",
        "fingerprint_link",
        "original_link",
        "allowed",
        "state",
    ]
    list_filter = [AllowedStateFilter, "created_at"]
    list_select_related = ["fingerprint", "created_by", "revoked_by", "review_item"]
    search_fields = ["created_by__username", "review_item__target"]
    search_help_text = _("Search by who allowed it or by the profile it was found on.")
    date_hierarchy = "created_at"
    actions = ["revoke_selected"]
    fields = [
        "allowed_image",
        "allowed_hex",
        "fingerprint_link",
        "original_link",
        "review_link",
        "created_by",
        "created_at",
        "state",
        "revoked_by",
        "revoked_at",
    ]
    readonly_fields = fields

    @admin.display(description=_("allowed image"))
    def allowed_image(self, obj: AllowedMatch) -> str:
        image = _stored_image(obj.review_item) if obj.review_item else None
        if image is None:
            return format_html("<em>{}</em>", _("no longer stored"))
        return format_html(
            '<img src="{}" alt="" style="width:64px;height:64px;object-fit:cover">'
            "<br>{}",
            image.url,
            obj.review_item.target,
        )

    @admin.display(description=_("allowed dHash"), ordering="dhash")
    def allowed_hex(self, obj: AllowedMatch) -> str:
        return format_html("<code>{}</code>", Fingerprint.from_signed(obj.dhash).hex)

    @admin.display(description=_("for banned fingerprint"), ordering="fingerprint")
    def fingerprint_link(self, obj: AllowedMatch) -> str:
        url = reverse("admin:moderation_flaggedfingerprint_change", args=[obj.fingerprint_id])
        return format_html(
            '<a href="{}"><code>{}</code></a><br>{}',
            url,
            obj.fingerprint.hex,
            obj.fingerprint.reason[:60],
        )

    @admin.display(description=_("flagged original"))
    def original_link(self, obj: AllowedMatch) -> str:
        return quarantine_link(obj.fingerprint.original)

    def get_list_display(self, request):
        """The flagged original only for staff who may see quarantined files."""
        shown = super().get_list_display(request)
        if request.user.has_perm("moderation.view_quarantine"):
            return shown
        return [name for name in shown if name != "original_link"]

    def get_fields(self, request, obj=None):
        return [
            name
            for name in super().get_fields(request, obj)
            if name != "original_link" or request.user.has_perm("moderation.view_quarantine")
        ]

    def get_readonly_fields(self, request, obj=None):
        return self.get_fields(request, obj)

    @admin.display(description=_("review item"))
    def review_link(self, obj: AllowedMatch) -> str:
        if obj.review_item_id is None:
            return "—"
        url = reverse("admin:moderation_reviewitem_change", args=[obj.review_item_id])
        return format_html('<a href="{}">#{}</a>', url, obj.review_item_id)

    @admin.display(description=_("allowed by, when"), ordering="created_at")
    def allowed(self, obj: AllowedMatch) -> str:
        return format_html(
            "{}<br>{}", obj.created_by or "—", obj.created_at.strftime("%Y-%m-%d %H:%M")
        )

    @admin.display(description=_("state"), ordering="revoked_at")
    def state(self, obj: AllowedMatch) -> str:
        if obj.revoked_at is None:
            return _("in force")
        return format_html(
            "{}<br>{}, {}",
            _("revoked"),
            obj.revoked_by or _("unknown"),
            obj.revoked_at.strftime("%Y-%m-%d %H:%M"),
        )

    def has_revoke_permission(self, request) -> bool:
        return request.user.has_perm("moderation.review_upload") and request.user.has_perm(
            "moderation.flag_image"
        )

    @admin.action(description=_("Revoke selected exceptions"), permissions=["revoke"])
    def revoke_selected(self, request, queryset):
        """Revoke the selected allowlist exceptions after the moderator gives a reason."""
        form = RevokeReasonForm(request.POST if "confirm" in request.POST else None)
        if "confirm" in request.POST and form.is_valid():
            count = sum(
                desk.allowed_match_revoke(
                    allowed=allowed, actor=request.user, reason=form.cleaned_data["reason"]
                )
                for allowed in queryset
            )
            self.message_user(
                request,
                ngettext(
                    "Revoked %d exception: that image is matched again from the next upload.",
                    "Revoked %d exceptions: those images are matched again from the next upload.",
                    count,
                )
                % count,
                messages.SUCCESS,
            )
            return None
        return TemplateResponse(
            request,
            "admin/moderation/revoke_confirmation.html",
            {
                **self.admin_site.each_context(request),
                "title": _("Revoke allowlist exceptions"),
                "opts": self.model._meta,
                "queryset": queryset.select_related("fingerprint", "created_by"),
                "form": form,
                "action": "revoke_selected",
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            },
        )
