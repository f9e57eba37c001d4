"""Calls to the lookup API over real HTTP (``urllib``), as another service makes them."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


def multipart(files: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body of ``(field, filename, bytes)`` parts, and its content type."""
    boundary = uuid.uuid4().hex
    out = b""
    for field, filename, data in files:
        out += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
                f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
            ).encode()
            + data
            + b"\r\n"
        )
    out += f"--{boundary}--\r\n".encode()
    return out, f"multipart/form-data; boundary={boundary}"


def call(
    base: str,
    method: str,
    path: str,
    *,
    token: str | None = None,
    body: bytes | None = None,
    content_type: str | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """One HTTP request to ``base + path``; 4xx and 5xx are returned, not raised."""
    request = urllib.request.Request(base + path, data=body, method=method)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    if content_type is not None:
        request.add_header("Content-Type", content_type)
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - our server
            return Reply(
                response.status,
                {k.lower(): v for k, v in response.headers.items()},
                response.read(),
            )
    except urllib.error.HTTPError as e:
        return Reply(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())


def post_file(
    base: str, path: str, data: bytes, *, token: str, field: str = "photo", query: str = ""
) -> Reply:
    body, content_type = multipart([(field, "image.png", data)])
    return call(base, "POST", path + query, token=token, body=body, content_type=content_type)


def post_json(base: str, path: str, payload: Any, *, token: str) -> Reply:
    return call(
        base,
        "POST",
        path,
        token=token,
        body=json.dumps(payload).encode(),
        content_type="application/json",
    )
