"""The user side: sign up, edit your own profile, see anyone's public profile, read the notices
about your photo and appeal them."""

import logging

from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_lockout_response
from django.contrib import messages
from django.contrib.auth import get_user_model, login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from moderation import appeals, notices, probing, ratelimit, reports
from moderation.models import Notice, ReportFiling
from moderation.screening import record_refused_upload
from profiles import photos, services
from profiles.forms import AppealForm, EmailChangeForm, ProfileForm, ReportForm, SignUpForm
from profiles.models import Profile

logger = logging.getLogger(__name__)

STORAGE_RETRY_MESSAGE = _("We couldn't save your photo just now. Please try again in a moment.")


def home(request):
    recent = (
        Profile.objects.exclude(photo="")
        .filter(photo_missing_since__isnull=True)
        .exclude(probing.held_image(Profile))  # held for review: not shown yet
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
        if form.cleaned_data.get("email"):
            try:
                services.email_verification_send(user=user, email=form.cleaned_data["email"])
            except Exception:  # noqa: BLE001 - the account exists; the address can wait
                logger.exception("could not send the verification email of user %s", user.pk)
                messages.error(request, _("We couldn't send the email to check your address."))
            else:
                messages.success(request, _("Check your email: we sent a link to confirm it."))
        return redirect("profile-edit")
    return render(request, "registration/signup.html", {"form": form})


def _rate_limited(request, limited: ratelimit.RateLimited, template: str = "429.html"):
    minutes = max(1, round(limited.retry_after / 60))
    response = render(request, template, {"minutes": minutes}, status=429)
    response["Retry-After"] = str(limited.retry_after)
    return response


def _record_refusal(request, form: ProfileForm) -> Notice | None:
    """A refused photo goes on the moderators' record (never on the page); a refusal because
    of a banned image also gets a notice the person can appeal."""
    errors = form.errors.as_data().get("photo")
    if not errors or request.FILES.get("photo") is None:
        return None
    refused = record_refused_upload(
        user=request.user,
        ip=ratelimit.client_ip(request),
        code=errors[0].code or "invalid",
        screening=form.screening,
        thumbnail=form.thumbnail,
    )
    screening = form.screening
    if refused.code != "banned_image" or screening is None or not screening.blocked:
        return None
    return notices.notify_refusal(
        user=request.user,
        refused=refused,
        dhash=screening.fingerprint.signed,
        flagged_id=refused.nearest_id,
    )


@login_required
def profile_edit(request):
    profile = services.profile_for(user=request.user)
    refusal = None
    if request.method == "POST":
        if request.FILES.get("photo") is not None:
            # Counted before anything is decoded, refused or accepted alike.
            limited = ratelimit.check_upload_rate(request)
            if limited is not None:
                return _rate_limited(request, limited)
        as_stored = {"display_name": profile.display_name, "photo": profile.photo.name}
        form = ProfileForm(request.POST, request.FILES, instance=profile)
        if form.is_valid():
            # The form has already put its values (the upload too) on `profile`; the services
            # make the changes and store a re-encoded copy, so they start from the row as it is.
            for field, value in as_stored.items():
                setattr(profile, field, value)
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
                    refusal = _record_refusal(request, form)
            if not form.errors:
                messages.success(request, _("Your profile was saved."))
                return redirect("profile-edit")
        else:
            refusal = _record_refusal(request, form)
        # A refused upload must not replace the photo shown on the page.
        profile.refresh_from_db()
    else:
        form = ProfileForm(instance=profile)
    return _edit_page(request, profile=profile, form=form, refusal=refusal)


def _edit_page(request, *, profile, form=None, email_form=None, refusal=None, status=200):
    context = {
        "form": form or ProfileForm(instance=profile),
        "email_form": email_form or EmailChangeForm(),
        "profile": profile,
        "refusal": refusal,
        "notices": Notice.objects.for_user(request.user)
        .filter(kind=Notice.Kind.TAKEDOWN)
        .select_related("appeal")[:10],
        "my_reports": ReportFiling.objects.filter(reporter=request.user)
        .select_related("report")
        .order_by("-created_at")[:10],
    }
    return render(request, "profiles/edit.html", context, status=status)


@login_required
@require_POST
def profile_email(request):
    """A new address for notices: a link goes to it, and the current address stays in use
    until the link is followed. Bad input is shown on the profile page, as is the rate limit
    (429); nothing is sent then."""
    form = EmailChangeForm(request.POST)
    retry_after = None
    if form.is_valid():
        try:
            email = services.email_change_request(
                user=request.user,
                email=form.cleaned_data["email"],
                ip=ratelimit.client_ip(request),
            )
        except ValidationError as e:
            form.add_error("email", e)
        except services.TooManyEmails as e:
            form.add_error(None, e.message)
            retry_after = e.limited.retry_after
        except Exception:  # noqa: BLE001 - the mail server; nothing was written
            logger.exception("could not send the verification email of user %s", request.user.pk)
            form.add_error(None, _("We couldn't send the email just now. Please try again."))
        else:
            messages.success(
                request,
                _(
                    "We sent a link to %(email)s. Follow it to start using that address; "
                    "until then we keep using the one we have."
                )
                % {"email": email},
            )
            return redirect("profile-edit")
    profile = services.profile_for(user=request.user)
    if retry_after is None:
        return _edit_page(request, profile=profile, email_form=form, status=400)
    response = _edit_page(request, profile=profile, email_form=form, status=429)
    response["Retry-After"] = str(retry_after)
    return response


@login_required
@require_POST
def profile_remove_photo(request):
    profile = services.profile_for(user=request.user)
    if photos.profile_remove_photo(profile=profile):
        messages.success(request, _("Your photo was removed."))
    return redirect("profile-edit")


def profile_detail(request, username: str, report_form: ReportForm | None = None, status=200):
    user = get_object_or_404(get_user_model(), username=username, is_active=True)
    profile = Profile.objects.filter(user=user).first()
    # A photo held for review (its uploader is escalated as a prober) is not shown yet.
    held = profile is not None and probing.is_held(profile)
    can_report = (
        request.user.is_authenticated
        and request.user != user
        and profile is not None
        and profile.photo_visible
        and not held
    )
    context = {
        "profile": profile,
        "shown_user": user,
        "photo_held": held,
        "report_form": (report_form or ReportForm()) if can_report else None,
    }
    return render(request, "profiles/detail.html", context, status=status)


@login_required
@require_POST
def profile_report(request, username: str):
    """Report the photo shown on ``username``'s page (as it is now: the form names no file)."""
    user = get_object_or_404(get_user_model(), username=username, is_active=True)
    profile = get_object_or_404(Profile, user=user)
    form = ReportForm(request.POST)
    if not form.is_valid():
        return profile_detail(request, username, report_form=form, status=400)
    limited = ratelimit.check_report_rate(request.user)
    if limited is not None:
        return _rate_limited(request, limited, template="429_reports.html")
    try:
        reports.file_report(
            instance=profile,
            reporter=request.user,
            reason=form.cleaned_data["reason"],
            text=form.cleaned_data["text"],
        )
    except ValidationError as e:
        messages.error(request, " ".join(e.messages))
        status = 409 if e.code == "already_reported" else 400
        return profile_detail(request, username, status=status)
    messages.success(request, _("Thank you. A moderator will look at this photo."))
    return redirect("profile-detail", username=username)


@login_required
def notice_detail(request, pk: int):
    """A statement of reasons about the person's own photo, and its appeal (form or status).
    Someone else's notice is not found (404), so its existence is not told either."""
    notice = get_object_or_404(Notice.objects.select_related("appeal"), pk=pk, user=request.user)
    appeal = getattr(notice, "appeal", None)
    form = AppealForm(request.POST or None) if appeal is None else None
    status = 200
    if request.method == "POST":
        if appeal is not None:
            messages.error(request, _("You have already appealed this decision."))
            status = 409
        elif form.is_valid():
            limited = ratelimit.check_appeal_rate(request.user)
            if limited is not None:
                return _rate_limited(request, limited, template="429_appeals.html")
            try:
                appeals.file_appeal(
                    notice=notice, user=request.user, text=form.cleaned_data["text"]
                )
            except ValidationError as e:
                form.add_error("text", e)
                status = 409 if e.code == "already_appealed" else 400
            else:
                messages.success(
                    request, _("Your appeal was sent. A moderator will look at it and tell you.")
                )
                return redirect("notice-detail", pk=notice.pk)
        else:
            status = 400
    return render(
        request,
        "profiles/notice.html",
        {"notice": notice, "appeal": appeal, "form": form},
        status=status,
    )


def verify_email(request, token: str):
    """Follow the link of a verification email: the address becomes the account's."""
    user = services.email_verify(token=token)
    if user is None:
        messages.error(request, _("That link is not valid or has expired."))
    else:
        messages.success(request, _("Your email address is confirmed."))
    if not request.user.is_authenticated:
        return redirect("home")
    return redirect("admin:my_account" if request.user.is_staff else "profile-edit")
