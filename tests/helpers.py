"""Small actions many test files need: ban an image, upload a photo as a user, run a command,
log a moderator in, make the files the hashing tests feed in."""

from __future__ import annotations

import io
import re
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from PIL import Image

from moderation import flagging
from moderation.hashing import Fingerprint, fingerprint
from moderation.models import FlaggedFingerprint, HashList
from tests import images


def ban(
    img,
    reason: str = "test ban",
    source: str = FlaggedFingerprint.Source.COMMAND,
    actor=None,
    keep_original: bool = True,
) -> FlaggedFingerprint:
    """Flag a drawn image through the real flag service; return its fingerprint row."""
    return flagging.flag_image(
        file=images.upload(img, "banned.png", "PNG"),
        reason=reason,
        source=source,
        actor=actor,
        keep_original=keep_original,
    ).fingerprint


def fp_of(img) -> Fingerprint:
    """The fingerprint of ``img`` uploaded as a JPEG copy."""
    return fingerprint(images.upload(img, "copy.jpg"))


def post_photo(client, img, name: str = "me.jpg", fmt: str = "JPEG", **params):
    """Upload ``img`` (an image, or a file's bytes as they are) through the real profile form,
    as the logged-in user of ``client``."""
    if isinstance(img, bytes):
        photo = SimpleUploadedFile(name, img, "image/jpeg")
    else:
        photo = images.upload(img, name, fmt, **params)
    return client.post(reverse("profile-edit"), {"display_name": "Alice", "photo": photo})


def ban_into_list(
    img, hash_list: HashList | None = None, reason: str = "known bad"
) -> FlaggedFingerprint:
    """Flag a drawn image into ``hash_list`` (default: the default list), keeping no original."""
    return flagging.flag_image(
        file=images.upload(img, "banned.png", "PNG"),
        reason=reason,
        source=FlaggedFingerprint.Source.ADMIN_UPLOAD,
        keep_original=False,
        hash_list=hash_list,
    ).fingerprint


def flag_file(img, *, reason="test ban", actor=None, name="banned.png"):
    """Flag a drawn image as the admin's "Flag an image" page does; return the ``FlagResult``."""
    return flagging.flag_image(
        file=images.upload(img, name, "PNG"),
        reason=reason,
        source=FlaggedFingerprint.Source.ADMIN_UPLOAD,
        actor=actor,
    )


def run_command(name: str, *args, **options) -> str:
    """Run a management command; return what it printed."""
    out, err = StringIO(), StringIO()
    call_command(name, *args, stdout=out, stderr=err, **options)
    return out.getvalue()


def moderator_client(moderator) -> Client:
    client = Client()
    client.force_login(moderator)
    return client


def encoded(img: Image.Image, fmt: str = "PNG", **params) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **params)
    return out.getvalue()


def as_upload(data: bytes, name: str = "photo.jpg", content_type: str = "image/jpeg"):
    """What a browser posts: the name and content type are the client's claims, nothing more."""
    return SimpleUploadedFile(name, data, content_type)


def error_code(call) -> str:
    with pytest.raises(ValidationError) as info:
        call()
    return info.value.code


_NONCE = re.compile(r"""\snonce=["'][^"']*["']""")


def without_nonces(html: str) -> str:
    """``html`` without its CSP nonce attributes: a nonce is random URL-safe text, so a test
    that says a word never appears on a page ("held", "hash") must not read the nonces."""
    return _NONCE.sub("", html)
