"""The staff member's own account page in the admin ("My account" in the user tools): their
name, and their email address, verified exactly as a person's is (``services``), so that
review-queue emails can reach them. It acts on the logged-in account alone; no page takes a
user id, so no one edits anyone else's account here."""

from __future__ import annotations

import logging

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _

from moderation import ratelimit
from profiles import services
from profiles.forms import StaffAccountForm

logger = logging.getLogger(__name__)


def my_account(request):
    """Name saved at once; a new email address gets a link and is used once it is followed.
    Bad input (an invalid address) or too many links asked for (429) writes nothing at all,
    name included."""
    user = request.user
    initial = {"first_name": user.first_name, "last_name": user.last_name, "email": user.email}
    form = StaffAccountForm(request.POST or None, initial=initial)
    retry_after = None
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        new_email = data["email"] if data["email"] and data["email"] != user.email else ""
        try:
            if new_email:
                new_email = services.email_change_request(
                    user=user, email=new_email, ip=ratelimit.client_ip(request)
                )
        except ValidationError as e:
            form.add_error("email", e)
        except services.TooManyEmails as e:
            form.add_error("email", e.message)
            retry_after = e.limited.retry_after
        except Exception:  # noqa: BLE001 - the mail server; nothing was written
            logger.exception("could not send the verification email of user %s", user.pk)
            form.add_error(None, _("We couldn't send the email just now. Please try again."))
        else:
            if services.account_update_name(
                user=user, first_name=data["first_name"], last_name=data["last_name"]
            ):
                messages.success(request, _("Your name was saved."))
            if new_email:
                messages.success(
                    request,
                    _(
                        "We sent a link to %(email)s. Follow it to start using that address; "
                        "until then emails go where they went before."
                    )
                    % {"email": new_email},
                )
            return redirect("admin:my_account")
    context = {
        **admin.site.each_context(request),
        "title": _("My account"),
        "form": form,
    }
    if retry_after is not None:
        response = TemplateResponse(request, "admin/my_account.html", context, status=429)
        response["Retry-After"] = str(retry_after)
        return response
    return TemplateResponse(
        request, "admin/my_account.html", context, status=400 if form.errors else 200
    )
