"""The user side: sign up, edit your own profile, see anyone's public profile."""

from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_lockout_response
from django.contrib import messages
from django.contrib.auth import get_user_model, login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from moderation import ratelimit
from moderation.screening import record_refused_upload
from profiles import photos, services
from profiles.forms import ProfileForm, SignUpForm
from profiles.models import Profile

STORAGE_RETRY_MESSAGE = _("We couldn't save your photo just now. Please try again in a moment.")


def home(request):
    recent = (
        Profile.objects.exclude(photo="")
        .filter(photo_missing_since__isnull=True)
        .select_related("user")
        .order_by("-updated_at")[:12]
    )
    return render(request, "profiles/home.html", {"recent": recent})


def signup(request):
    if request.user.is_authenticated:
        return redirect("profile-edit")
    if request.method == "POST":
        # The login limits apply: an IP locked out of logging in can't sign up either, and each
        # IP has as many sign-up attempts per window as failed logins.
        limited = ratelimit.check_signup_rate(request)
        if limited is not None or AxesProxyHandler.is_locked(request):
            return get_lockout_response(request)
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        services.profile_for(user=user)
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, _("Welcome! Add a photo to your profile."))
        return redirect("profile-edit")
    return render(request, "registration/signup.html", {"form": form})


def _rate_limited(request, limited: ratelimit.RateLimited):
    minutes = max(1, round(limited.retry_after / 60))
    response = render(request, "429.html", {"minutes": minutes}, status=429)
    response["Retry-After"] = str(limited.retry_after)
    return response


def _record_refusal(request, form: ProfileForm) -> None:
    """A refused photo goes on the moderators' record (never on the page)."""
    errors = form.errors.as_data().get("photo")
    if not errors or request.FILES.get("photo") is None:
        return
    record_refused_upload(
        user=request.user,
        ip=ratelimit.client_ip(request),
        code=errors[0].code or "invalid",
        screening=form.screening,
    )


@login_required
def profile_edit(request):
    profile = services.profile_for(user=request.user)
    if request.method == "POST":
        if request.FILES.get("photo") is not None:
            # Counted before anything is decoded, refused or accepted alike.
            limited = ratelimit.check_upload_rate(request)
            if limited is not None:
                return _rate_limited(request, limited)
        form = ProfileForm(request.POST, request.FILES, instance=profile)
        if form.is_valid():
            # The form has already put the upload on `profile`; the services store a
            # re-encoded copy instead, so they work on a clean instance.
            profile = Profile.objects.get(pk=profile.pk)
            services.profile_update_details(
                profile=profile, display_name=form.cleaned_data["display_name"]
            )
            if "photo" in form.changed_data and form.cleaned_data.get("photo"):
                try:
                    photos.profile_set_photo(profile=profile, upload=form.cleaned_data["photo"])
                except photos.PhotoStorageError:
                    form.add_error("photo", STORAGE_RETRY_MESSAGE)
                except ValidationError as e:
                    # The validator accepted the file, the full decode for storing did not.
                    form.add_error("photo", e)
                    _record_refusal(request, form)
            if not form.errors:
                messages.success(request, _("Your profile was saved."))
                return redirect("profile-edit")
        else:
            _record_refusal(request, form)
        # A refused upload must not replace the photo shown on the page.
        profile.refresh_from_db()
    else:
        form = ProfileForm(instance=profile)
    return render(request, "profiles/edit.html", {"form": form, "profile": profile})


@login_required
@require_POST
def profile_remove_photo(request):
    profile = services.profile_for(user=request.user)
    if photos.profile_remove_photo(profile=profile):
        messages.success(request, _("Your photo was removed."))
    return redirect("profile-edit")


def profile_detail(request, username: str):
    user = get_object_or_404(get_user_model(), username=username, is_active=True)
    profile = Profile.objects.filter(user=user).first()
    return render(request, "profiles/detail.html", {"profile": profile, "shown_user": user})
