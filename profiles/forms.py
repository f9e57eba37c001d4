from django import forms
from django.contrib.auth.forms import UserCreationForm
from django.core.files.uploadedfile import UploadedFile

from moderation.forms import ImageUploadField
from moderation.screening import ScreenedUpload, Screening
from moderation.validators import BannedImageValidator
from profiles.models import Profile
from profiles.photos import prepare_photo


class SignUpForm(UserCreationForm):
    class Meta(UserCreationForm.Meta):
        fields = ("username",)


class ProfileForm(forms.ModelForm):
    """Display name and photo. The model field's validators refuse banned images.

    A new photo is re-encoded and screened here (``profiles.photos.prepare_photo``), so the
    model's validator judges the file that will be stored by that screening, without decoding
    it again. ``screening`` is what was found, for the view to record a refusal.
    """

    screening: Screening | None = None

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
            BannedImageValidator().refuse_if_blocked(photo.screening)
        return photo
