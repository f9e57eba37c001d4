from django import forms
from django.contrib.auth.forms import UserCreationForm

from moderation.forms import ImageUploadField
from profiles.models import Profile


class SignUpForm(UserCreationForm):
    class Meta(UserCreationForm.Meta):
        fields = ("username",)


class ProfileForm(forms.ModelForm):
    """Display name and photo. The model field's validators refuse banned images."""

    class Meta:
        model = Profile
        fields = ["display_name", "photo"]
        field_classes = {"photo": ImageUploadField}
        widgets = {
            "photo": forms.FileInput(attrs={"accept": "image/jpeg,image/png,image/gif,image/webp"})
        }
