"""The headers every page carries for the browser's protection, beyond what ``check --deploy``
covers: a Content Security Policy whose nonce is the one on the page's inline style,
Referrer-Policy, Cross-Origin-Opener-Policy and Permissions-Policy. The browser's own verdict
on every page is tests/test_csp_browser.py."""

from __future__ import annotations

import re

import pytest

from tests.test_error_reports import run_production

pytestmark = pytest.mark.django_db


def directives(policy: str) -> dict[str, list[str]]:
    return {
        name: values
        for name, *values in (part.split() for part in policy.split(";") if part.strip())
    }


def test_a_page_carries_the_policy_and_its_inline_style_the_responses_nonce(client):
    response = client.get("/login/")

    policy = directives(response.headers["Content-Security-Policy"])
    [nonce] = re.findall(r'<style nonce="([^"]+)">', response.content.decode())
    assert policy["script-src"] == ["'self'", f"'nonce-{nonce}'"]
    assert policy["style-src"] == ["'self'", f"'nonce-{nonce}'"]
    assert policy["object-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"]
    assert "'unsafe-inline'" not in response.headers["Content-Security-Policy"]


def test_each_response_gets_a_new_nonce(client):
    first = client.get("/login/").headers["Content-Security-Policy"]
    second = client.get("/login/").headers["Content-Security-Policy"]

    assert first != second


def test_referrer_opener_and_permissions_policies(client):
    response = client.get("/")

    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"
    permissions = response.headers["Permissions-Policy"]
    for feature in ("camera", "microphone", "geolocation", "payment"):
        assert f"{feature}=()" in permissions


def test_photos_in_s3_are_allowed_as_images_from_the_public_endpoint_only():
    code = (
        "import django; django.setup(); from django.conf import settings; "
        "print(' '.join(settings.SECURE_CSP['img-src']))"
    )
    s3 = {
        "MODERATION_S3_BUCKET": "public",
        "MODERATION_S3_QUARANTINE_BUCKET": "private",
        "AWS_S3_ENDPOINT_URL": "https://s3.example.net:9000/",
        "AWS_S3_REGION_NAME": "us-east-1",
    }

    assert run_production(code, **s3).stdout.split() == ["'self'", "https://s3.example.net:9000"]
    assert run_production(code, **s3, AWS_S3_CUSTOM_DOMAIN="cdn.example.net").stdout.split() == [
        "'self'",
        "https://cdn.example.net",
    ]
    assert run_production(code).stdout.split() == ["'self'"]
