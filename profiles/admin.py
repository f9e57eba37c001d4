"""Profiles in the admin: thumbnails, and the moderator's "Flag selected photos" action."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.template.response import TemplateResponse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from moderation.admin.base import FitsTheScreenMixin, PlainRelationsMixin, truncated
from moderation.admin.operations import sweeps_summary
from moderation.flagging import flag_stored_image
from moderation.sweeping import preview_flag_impact
from moderation.templatetags.moderation_wellness import reviewed_img
from profiles.models import Profile


class FlagReasonForm(forms.Form):
    reason = forms.CharField(label=_("Reason"), max_length=500)

    allow_low_information = forms.BooleanField(
        label=_("Flag even if low-information"),
        required=False,
        help_text=_(
            "Superusers only. Near-flat photos (fog, sky, a plain wall) are refused because "
            "they look alike to the matcher; flagged anyway, a match with one sends an upload "
            "to review instead of blocking it."
        ),
    )

    def __init__(self, *args, superuser: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not superuser:
            del self.fields["allow_low_information"]


@admin.register(Profile)
class ProfileAdmin(FitsTheScreenMixin, PlainRelationsMixin, admin.ModelAdmin):
    class Media:
        css = {"all": ["moderation/admin.css"]}  # thumbnails, no inline style

    # Narrow enough for a 1280 px screen: names cut to one line (in full on the profile's page).
    list_display = [
        "thumbnail", "user_cell", "display_name_cell", "photo_hash", "photo_checked_at",
        "updated_at",
    ]
    list_display_links = ["user_cell"]
    list_select_related = ["user"]
    search_fields = ["user__username", "display_name"]
    list_filter = ["photo_checked_at"]
    readonly_fields = [
        "user", "thumbnail", "photo_hash", "photo_pipeline_version", "photo_checked_at",
    ]
    fields = [
        "user", "display_name", "thumbnail", "photo_hash", "photo_pipeline_version",
        "photo_checked_at",
    ]
    actions = ["flag_selected_photos"]

    @admin.display(description=_("photo"))
    def thumbnail(self, obj: Profile) -> str:
        if not obj.photo:
            return "—"
        if obj.photo_missing_since is not None:
            return format_html("<em>{}</em>", _("file missing"))
        return reviewed_img(obj.photo.url, size=64)

    @admin.display(description=_("user"), ordering="user__username")
    def user_cell(self, obj: Profile) -> str:
        return truncated(obj.user.get_username())

    @admin.display(description=_("display name"), ordering="display_name")
    def display_name_cell(self, obj: Profile) -> str:
        return truncated(obj.display_name)

    @admin.display(description=_("photo dHash"), ordering="photo_dhash")
    def photo_hash(self, obj: Profile) -> str:
        return format_html("<code>{}</code>", obj.photo_hex) if obj.photo_hex else "—"

    def has_add_permission(self, request) -> bool:
        return False  # profiles are created by signing up

    def has_flag_permission(self, request) -> bool:
        return request.user.has_perm("moderation.flag_image")

    @admin.action(description=_("Flag selected photos"), permissions=["flag"])
    def flag_selected_photos(self, request, queryset):
        """Ban the selected profiles' photos, take them down, and sweep for copies.

        Shows a confirmation page first; the moderator must give a reason.
        """
        with_photo = queryset.exclude(photo="")
        form = FlagReasonForm(
            request.POST if "confirm" in request.POST else None,
            superuser=request.user.is_superuser,
        )
        if "confirm" in request.POST and form.is_valid():
            flagged = failed = changed = 0
            flag_ids: list[int] = []
            low_information: list[str] = []
            for profile in with_photo:
                # Only the photo the moderator was shown: one the user replaced after the
                # confirmation page was rendered has not been looked at by anyone.
                shown = request.POST.get(f"photo-{profile.pk}", "")
                try:
                    result = shown and flag_stored_image(
                        instance=profile,
                        reason=form.cleaned_data["reason"],
                        actor=request.user,
                        expected_name=shown,
                        allow_low_information=form.cleaned_data.get(
                            "allow_low_information", False
                        ),
                    )
                except ValidationError as e:
                    if e.code == "low_information":
                        low_information.append(profile.user.get_username())
                    else:
                        failed += 1
                    continue
                except OSError:
                    failed += 1
                    continue
                if result:
                    flagged += 1
                    flag_ids.append(result.fingerprint.pk)
                elif Profile.objects.filter(pk=profile.pk).exclude(photo="").exists():
                    changed += 1  # a photo gone meanwhile (e.g. swept by this flag) is no news
            self.message_user(
                request,
                ngettext(
                    "Flagged %(n)d photo; sweep of stored photos: %(sweeps)s.",
                    "Flagged %(n)d photos; sweeps of stored photos: %(sweeps)s.",
                    flagged,
                )
                % {"n": flagged, "sweeps": sweeps_summary(flag_ids)},
                messages.SUCCESS,
            )
            if failed:
                self.message_user(
                    request,
                    ngettext(
                        "%d photo could not be read and was not flagged.",
                        "%d photos could not be read and were not flagged.",
                        failed,
                    )
                    % failed,
                    messages.WARNING,
                )
            if low_information:
                self.message_user(
                    request,
                    ngettext(
                        "%(count)d photo was not flagged because it carries too little detail "
                        "to be recognised reliably (near-flat images look alike and would block "
                        "innocent photos): %(names)s. A superuser can flag it anyway.",
                        "%(count)d photos were not flagged because they carry too little detail "
                        "to be recognised reliably (near-flat images look alike and would block "
                        "innocent photos): %(names)s. A superuser can flag them anyway.",
                        len(low_information),
                    )
                    % {"count": len(low_information), "names": ", ".join(low_information)},
                    messages.WARNING,
                )
            if changed:
                self.message_user(
                    request,
                    ngettext(
                        "%d photo changed after you confirmed and was not flagged.",
                        "%d photos changed after you confirmed and were not flagged.",
                        changed,
                    )
                    % changed,
                    messages.WARNING,
                )
            return None
        return TemplateResponse(
            request,
            "admin/profiles/profile/flag_confirmation.html",
            {
                **self.admin_site.each_context(request),
                "title": _("Flag photos"),
                "opts": self.model._meta,
                "profiles": with_photo,
                "impact": preview_flag_impact(instances=with_photo),
                "without_photo": queryset.filter(photo="").count(),
                "queryset": queryset,
                "form": form,
                "action": "flag_selected_photos",
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            },
        )
