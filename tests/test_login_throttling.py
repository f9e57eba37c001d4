"""Guessed passwords are throttled per username and per client IP on both login pages
(django-axes); a superuser lifts a lockout; sign-up checks Django's password validators and
gets the same limits."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from tests.admin_pages import run_action
from tests.two_factor import verify_session

pytestmark = [pytest.mark.django_db, pytest.mark.password_only]

LOGIN_PAGES = ["login", "admin:login"]


def attempt(url_name: str, username: str, password: str, ip: str = "198.51.100.7"):
    return Client(REMOTE_ADDR=ip).post(
        reverse(url_name), {"username": username, "password": password}
    )


def logged_in(response) -> bool:
    return response.status_code == 302 and response.wsgi_request.user.is_authenticated


@pytest.mark.parametrize("url_name", LOGIN_PAGES)
def test_guesses_at_one_username_from_many_ips_lock_that_username_out(
    url_name, moderator, settings
):
    for n in range(settings.AXES_FAILURE_LIMIT - 1):
        assert attempt(url_name, "mod", f"guess-{n}", ip=f"203.0.113.{n}").status_code == 200

    last_guess = attempt(url_name, "mod", "guess-last", ip="203.0.113.99")
    right = attempt(url_name, "mod", "pw-mod-123", ip="203.0.113.100")

    assert last_guess.status_code == 429
    assert right.status_code == 429 and not right.wsgi_request.user.is_authenticated
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    assert f"Please wait {minutes} minutes" in " ".join(right.content.decode().split())
    assert right["Retry-After"] == str(minutes * 60)


@pytest.mark.parametrize("url_name", LOGIN_PAGES)
def test_one_ip_guessing_many_usernames_is_locked_out_and_other_ips_are_not(
    url_name, moderator, settings
):
    for n in range(settings.AXES_FAILURE_LIMIT):
        attempt(url_name, f"someone{n}", "123456", ip="192.0.2.50")

    from_that_ip = attempt(url_name, "mod", "pw-mod-123", ip="192.0.2.50")
    from_elsewhere = attempt(url_name, "mod", "pw-mod-123", ip="192.0.2.51")

    assert from_that_ip.status_code == 429
    assert logged_in(from_elsewhere)


def test_a_few_mistakes_do_not_lock_out_and_a_success_starts_the_count_again(user, settings):
    for _ in range(2):
        for n in range(settings.AXES_FAILURE_LIMIT - 1):
            assert attempt("login", "alice", f"typo-{n}").status_code == 200
        assert logged_in(attempt("login", "alice", "pw-alice-123"))


def test_a_superuser_lifts_a_lockout_from_the_admin(moderator, admin_client, admin_user, settings):
    from axes.models import AccessAttempt

    verify_session(admin_client, admin_user)

    for n in range(settings.AXES_FAILURE_LIMIT):
        attempt("login", "mod", f"guess-{n}", ip="203.0.113.9")
    assert attempt("login", "mod", "pw-mod-123", ip="203.0.113.10").status_code == 429

    run_action(
        admin_client,
        "admin:axes_accessattempt_changelist",
        "delete_selected",
        AccessAttempt.objects.all(),
        post="yes",
    )

    assert not AccessAttempt.objects.exists()
    assert logged_in(attempt("login", "mod", "pw-mod-123", ip="203.0.113.10"))


def signup(username: str, password: str, ip: str = "198.51.100.20"):
    return Client(REMOTE_ADDR=ip).post(
        reverse("signup"), {"username": username, "password1": password, "password2": password}
    )


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("password123", "This password is too common."),
        ("short7!", "This password is too short."),
        ("84920571937", "This password is entirely numeric."),
        ("brigitte-b", "The password is too similar to the username."),
    ],
)
def test_sign_up_refuses_weak_passwords_with_djangos_validators(
    password, message, django_user_model
):
    response = signup("brigitte", password)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not django_user_model.objects.filter(username="brigitte").exists()


def test_sign_up_accepts_a_good_password(django_user_model):
    assert signup("brigitte", "a-long-pass-phrase-42").status_code == 302
    assert django_user_model.objects.filter(username="brigitte").exists()


def test_sign_up_attempts_from_one_ip_stop_at_the_login_limit(settings, django_user_model):
    for n in range(settings.AXES_FAILURE_LIMIT):
        assert signup(f"bulk{n}", "a-long-pass-phrase-42").status_code == 302

    over = signup("bulk-over", "a-long-pass-phrase-42")
    elsewhere = signup("elsewhere", "a-long-pass-phrase-42", ip="198.51.100.21")

    assert over.status_code == 429
    assert not django_user_model.objects.filter(username="bulk-over").exists()
    assert elsewhere.status_code == 302


def test_an_ip_locked_out_of_logging_in_cannot_sign_up(settings, django_user_model):
    for n in range(settings.AXES_FAILURE_LIMIT):
        attempt("login", f"someone{n}", "123456", ip="192.0.2.60")

    response = signup("newcomer", "a-long-pass-phrase-42", ip="192.0.2.60")

    assert response.status_code == 429
    assert not django_user_model.objects.filter(username="newcomer").exists()
