from django import forms
from django.contrib.auth.forms import UserCreationForm
from django.core.files.uploadedfile import UploadedFile

from moderation.forms import ImageUploadField
from profiles.models import Profile
from profiles.photos import is_prepared, prepare_photo


class SignUpForm(UserCreationForm):
    class Meta(UserCreationForm.Meta):
        fields = ("username",)


class ProfileForm(forms.ModelForm):
    """Display name and photo. The model field's validators refuse banned images.

    A new photo is re-encoded here, before the model's validators run, so they check the file
    that will be stored (``profiles.photos.prepare_photo``).
    """

    class Meta:
        model = Profile
        fields = ["display_name", "photo"]
        field_classes = {"photo": ImageUploadField}
        widgets = {
            "photo": forms.FileInput(attrs={"accept": "image/jpeg,image/png,image/gif,image/webp"})
        }

    def clean_photo(self):
        photo = self.cleaned_data.get("photo")
        if isinstance(photo, UploadedFile) and not is_prepared(photo):
            return prepare_photo(photo)
        return photo
