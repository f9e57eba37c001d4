"""Changing one's email address: people on their profile page, staff on "My account" in the
admin. A new address is used only once the link mailed to it is followed, the old one until
then; bad input gets a clear error and writes and sends nothing; every change is audited."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from moderation.models import AuditEvent
from profiles import services

pytestmark = pytest.mark.django_db


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def follow_link(client, message) -> object:
    path = re.search(r"https?://[^/]+(/verify-email/\S+/)", message.body).group(1)
    return client.get(path, follow=True)


def audited(action) -> int:
    return AuditEvent.objects.filter(action=action).count()


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user(
        "alice", email="old@example.com", password="pw-alice-123"
    )


@pytest.fixture
def staff_member(django_user_model):
    return django_user_model.objects.create_user("sam", password="pw-sam-123", is_staff=True)


# --- people, on their profile page ------------------------------------------------------------


def test_a_new_address_is_used_only_once_its_link_is_followed(alice):
    client = client_for(alice)
    response = client.post(reverse("profile-email"), {"email": "new@example.com"}, follow=True)
    assert "We sent a link to new@example.com" in response.content.decode()
    alice.refresh_from_db()
    assert alice.email == "old@example.com"  # notices still go to the confirmed address
    assert [m.to for m in mail.outbox] == [["new@example.com"]]
    page = follow_link(client, mail.outbox[0]).content.decode()
    assert "Your email address is confirmed." in page
    alice.refresh_from_db()
    assert alice.email == "new@example.com"
    assert (audited("email_request"), audited("email_confirm")) == (1, 1)
    event = AuditEvent.objects.get(action="email_confirm")
    assert event.actor == alice and "example.com" not in event.reason


def test_the_profile_page_shows_the_address_in_use(alice):
    page = client_for(alice).get(reverse("profile-edit")).content.decode()
    assert 'id="current-email">old@example.com<' in page
    assert 'action="/profile/email/"' in page


@pytest.mark.parametrize(
    ("given", "error"),
    [
        ("not-an-address", "Enter a valid email address, like name@example.com."),
        ("", "Enter the new address."),
        ("OLD@example.com", "That is already your address."),
        ("a" * 250 + "@example.com", "Ensure this value has at most 254 characters"),
    ],
)
def test_bad_input_is_refused_clearly_and_nothing_is_sent_or_written(alice, given, error):
    response = client_for(alice).post(reverse("profile-email"), {"email": given})
    assert response.status_code == 400
    assert error in response.content.decode().replace("&#x27;", "'")
    alice.refresh_from_db()
    assert alice.email == "old@example.com"
    assert mail.outbox == []
    assert audited("email_request") == 0


def test_when_the_mail_cannot_be_sent_nothing_is_written(alice, settings):
    # A real SMTP backend aimed at a port nobody listens on: the send fails.
    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": 9, "timeout": 2},
        }
    }
    response = client_for(alice).post(reverse("profile-email"), {"email": "new@example.com"})
    assert response.status_code == 400
    assert "couldn&#x27;t send the email" in response.content.decode()
    assert audited("email_request") == 0


def test_an_older_link_stops_working_once_a_newer_one_is_followed(alice):
    client = client_for(alice)
    client.post(reverse("profile-email"), {"email": "first@example.com"})
    client.post(reverse("profile-email"), {"email": "second@example.com"})
    first, second = mail.outbox
    follow_link(client, second)
    page = follow_link(client, first).content.decode()
    assert "not valid or has expired" in page
    alice.refresh_from_db()
    assert alice.email == "second@example.com"


def test_another_accounts_address_is_not_an_error_but_only_its_owner_can_confirm_it(
    alice, django_user_model
):
    """Addresses are not unique with Django's user model: the link decides, and it goes to
    the address's owner."""
    django_user_model.objects.create_user("bob", email="bob@example.com")
    response = client_for(alice).post(reverse("profile-email"), {"email": "bob@example.com"})
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.email == "old@example.com"
    assert [m.to for m in mail.outbox] == [["bob@example.com"]]


# --- how often confirmation emails may be asked for ---------------------------------------------

TOO_MANY = "You&#x27;ve asked for a lot of confirmation emails in a short time"


def test_confirmation_emails_are_limited_per_person_and_over_the_limit_nothing_is_sent(
    alice, settings
):
    settings.MODERATION_EMAIL_RATE_PER_USER = 2
    settings.MODERATION_EMAIL_RATE_WINDOW = 3600
    client = client_for(alice)
    for address in ("one@example.com", "two@example.com"):
        assert client.post(reverse("profile-email"), {"email": address}).status_code == 302
    response = client.post(reverse("profile-email"), {"email": "three@example.com"})
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 3600
    page = response.content.decode()
    assert TOO_MANY in page and "nothing was sent" in page
    assert [m.to for m in mail.outbox] == [["one@example.com"], ["two@example.com"]]
    assert audited("email_request") == 2
    alice.refresh_from_db()
    assert alice.email == "old@example.com"


def test_confirmation_emails_are_limited_per_client_ip_across_accounts(
    alice, django_user_model, settings
):
    settings.MODERATION_EMAIL_RATE_PER_USER = 0  # off: only the IP counts here
    settings.MODERATION_EMAIL_RATE_PER_IP = 2
    bob = django_user_model.objects.create_user("bob", password="pw-bob-123")
    ip = {"REMOTE_ADDR": "203.0.113.9"}
    url = reverse("profile-email")
    assert client_for(alice).post(url, {"email": "a@example.com"}, **ip).status_code == 302
    assert client_for(bob).post(url, {"email": "b@example.com"}, **ip).status_code == 302
    third = client_for(bob).post(url, {"email": "c@example.com"}, **ip)
    assert third.status_code == 429 and TOO_MANY in third.content.decode()
    elsewhere = client_for(bob).post(url, {"email": "c@example.com"}, REMOTE_ADDR="198.51.100.7")
    assert elsewhere.status_code == 302
    assert [m.to for m in mail.outbox] == [["a@example.com"], ["b@example.com"], ["c@example.com"]]
    assert audited("email_request") == 3


def test_a_refused_address_does_not_use_up_the_allowance(alice, settings):
    settings.MODERATION_EMAIL_RATE_PER_USER = 1
    client = client_for(alice)
    assert client.post(reverse("profile-email"), {"email": "typo@"}).status_code == 400
    assert client.post(reverse("profile-email"), {"email": "OLD@example.com"}).status_code == 400
    assert client.post(reverse("profile-email"), {"email": "new@example.com"}).status_code == 302
    assert [m.to for m in mail.outbox] == [["new@example.com"]]


def test_changing_the_address_needs_a_login(client):
    response = client.post(reverse("profile-email"), {"email": "new@example.com"})
    assert response.status_code == 302 and "/login/" in response["Location"]
    assert mail.outbox == []


# --- staff, on "My account" -------------------------------------------------------------------


def test_the_admin_user_tools_link_to_my_account(staff_member):
    page = client_for(staff_member).get(reverse("admin:index")).content.decode()
    assert f'href="{reverse("admin:my_account")}"' in page


def test_staff_set_their_name_and_a_verified_email_and_can_then_get_queue_emails(
    moderator,
):
    client = client_for(moderator)
    response = client.post(
        reverse("admin:my_account"),
        {"first_name": "Mo", "last_name": "Derator", "email": "mo@example.com"},
        follow=True,
    )
    page = response.content.decode()
    assert "Your name was saved." in page and "We sent a link to mo@example.com" in page
    moderator.refresh_from_db()
    assert (moderator.first_name, moderator.last_name, moderator.email) == ("Mo", "Derator", "")
    landed = follow_link(client, mail.outbox[0])
    assert landed.redirect_chain[-1][0] == reverse("admin:my_account")
    moderator.refresh_from_db()
    assert moderator.email == "mo@example.com"
    assert [audited(a) for a in ("name_change", "email_request", "email_confirm")] == [1, 1, 1]
    subscribed = client.post(
        reverse("admin:moderation_review_subscription"), {"subscribe": "1"}, follow=True
    ).content.decode()
    assert "You will get an email when the queue grows." in subscribed


def test_subscribing_without_an_address_points_to_my_account(moderator):
    page = (
        client_for(moderator)
        .post(reverse("admin:moderation_review_subscription"), {"subscribe": "1"}, follow=True)
        .content.decode()
    )
    assert "no email address yet" in page and reverse("admin:my_account") in page


def test_an_invalid_address_on_my_account_writes_nothing_not_even_the_name(staff_member):
    response = client_for(staff_member).post(
        reverse("admin:my_account"),
        {"first_name": "Sam", "last_name": "", "email": "sam@"},
    )
    assert response.status_code == 400
    assert "Enter a valid email address" in response.content.decode()
    staff_member.refresh_from_db()
    assert (staff_member.first_name, staff_member.email) == ("", "")
    assert mail.outbox == [] and not AuditEvent.objects.exists()


def test_my_account_limits_confirmation_emails_and_over_the_limit_writes_nothing(
    staff_member, settings
):
    settings.MODERATION_EMAIL_RATE_PER_USER = 1
    client = client_for(staff_member)
    url = reverse("admin:my_account")
    first = client.post(url, {"first_name": "", "last_name": "", "email": "sam@example.com"})
    assert first.status_code == 302
    response = client.post(url, {"first_name": "Sam", "last_name": "", "email": "s@example.com"})
    assert response.status_code == 429 and int(response["Retry-After"]) > 0
    assert TOO_MANY in response.content.decode()
    staff_member.refresh_from_db()
    assert (staff_member.first_name, staff_member.email) == ("", "")  # not even the name
    assert [m.to for m in mail.outbox] == [["sam@example.com"]]
    assert audited("email_request") == 1 and audited("name_change") == 0


def test_saving_my_account_unchanged_writes_nothing(staff_member):
    services.account_update_name(user=staff_member, first_name="Sam", last_name="S")
    before = AuditEvent.objects.count()
    client_for(staff_member).post(
        reverse("admin:my_account"), {"first_name": "Sam", "last_name": "S", "email": ""}
    )
    assert mail.outbox == [] and AuditEvent.objects.count() == before


def test_my_account_is_not_open_to_people_who_are_not_staff(alice):
    response = client_for(alice).get(reverse("admin:my_account"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


@pytest.mark.password_only
def test_my_account_needs_the_second_factor(staff_member):
    client = Client()
    client.force_login(staff_member)
    response = client.get(reverse("admin:my_account"))
    assert response.status_code == 302
    assert reverse("admin:my_account") not in response["Location"].split("?")[0]
