from django import forms
from django.contrib.auth.forms import UserCreationForm
from django.core.files.uploadedfile import UploadedFile

from moderation.forms import ImageUploadField
from moderation.models import APPEAL_MAX_CHARS, REPORT_MAX_CHARS, ReportFiling
from moderation.screening import ScreenedUpload, Screening
from moderation.validators import BannedImageValidator
from profiles.models import Profile
from profiles.photos import prepare_photo


class SignUpForm(UserCreationForm):
    """Username and password; an email address is optional and only used once verified (for
    notices about your photo): it is not stored until its link is followed."""

    email = forms.EmailField(
        label="Email (optional)",
        required=False,
        help_text="Only to tell you if a moderator acts on your photo. We send a link to check it.",
    )

    class Meta(UserCreationForm.Meta):
        fields = ("username",)


class EmailChangeForm(forms.Form):
    """A new address for notices; it is used once its link is followed (``services``)."""

    email = forms.EmailField(
        label="New email address",
        max_length=254,
        error_messages={
            "required": "Enter the new address.",
            "invalid": "Enter a valid email address, like name@example.com.",
        },
    )


class StaffAccountForm(forms.Form):
    """A staff member's own name and email address (the address verified like anyone's)."""

    first_name = forms.CharField(label="First name", max_length=150, required=False)
    last_name = forms.CharField(label="Last name", max_length=150, required=False)
    email = forms.EmailField(
        label="Email address",
        max_length=254,
        required=False,
        help_text="Where review-queue emails go. A new address is used once you follow the link "
        "we send to it.",
        error_messages={"invalid": "Enter a valid email address, like name@example.com."},
    )


class AppealForm(forms.Form):
    """One short text: why the decision on your photo is wrong."""

    text = forms.CharField(
        label="Why is this decision wrong?",
        max_length=APPEAL_MAX_CHARS,
        widget=forms.Textarea(attrs={"rows": 5, "maxlength": APPEAL_MAX_CHARS}),
        error_messages={
            "required": "Say in a few words why the decision is wrong.",
            "max_length": "An appeal is at most %(limit_value)d characters "
            "(this one has %(show_value)d).",
        },
    )


class ProfileForm(forms.ModelForm):
    """Display name and photo. The model field's validators refuse banned images.

    A new photo is re-encoded and screened here (``profiles.photos.prepare_photo``), so the
    model's validator judges the file that will be stored by that screening, without decoding
    it again. ``screening`` is what was found and ``thumbnail`` (a refusal's) a small JPEG of
    the picture, for the view to record a refusal.
    """

    screening: Screening | None = None
    thumbnail: bytes = b""

    class Meta:
        model = Profile
        fields = ["display_name", "photo"]
        field_classes = {"photo": ImageUploadField}
        widgets = {
            "photo": forms.FileInput(attrs={"accept": "image/jpeg,image/png,image/gif,image/webp"})
        }

    def clean_photo(self):
        photo = self.cleaned_data.get("photo")
        if isinstance(photo, UploadedFile) and not isinstance(photo, ScreenedUpload):
            photo = prepare_photo(photo)
            self.screening = photo.screening
            self.thumbnail = photo.thumbnail
            BannedImageValidator().refuse_if_blocked(photo.screening)
        return photo


class ReportForm(forms.Form):
    """Report a profile photo: a reason and, optionally, a few words for the moderator."""

    reason = forms.ChoiceField(
        label="What is wrong with this photo?",
        choices=ReportFiling.Reason.choices,
        widget=forms.RadioSelect,
        error_messages={"required": "Choose a reason."},
    )
    text = forms.CharField(
        label="Anything a moderator should know (optional)",
        required=False,
        max_length=REPORT_MAX_CHARS,
        widget=forms.Textarea(attrs={"rows": 3, "maxlength": REPORT_MAX_CHARS}),
    )
