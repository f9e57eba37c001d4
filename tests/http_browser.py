"""A person's browser over plain HTTP (urllib and a cookie jar), for tests against real servers.

``tests/cluster.py`` starts gunicorn with the production settings, where TLS ends at a reverse
proxy. This client plays the browser *and* that proxy: every request carries
``X-Forwarded-Proto: https`` (what the proxy adds, so ``SECURE_SSL_REDIRECT`` lets it through),
and the cookie jar sends ``Secure`` cookies over the loopback HTTP hop, as the browser sends
them over its HTTPS connection to the proxy. Forms are posted as a browser posts them: the
page's hidden fields (the CSRF token among them) come back, with the ``Origin`` and
``Referer`` of the page the form was on, which Django's CSRF check compares with the host on
a secure request. Like a browser, one jar serves every server on 127.0.0.1 (cookies do not
depend on the port), so a session opened on one web server is the same session on another.

Redirects are not followed: a test wants to see the 302 a successful form post answers.
"""

from __future__ import annotations

import http.cookiejar
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from html.parser import HTMLParser

# A POST that could not reach its server within this is a failure, not a hang.
REQUEST_TIMEOUT = 30


@dataclass
class Page:
    url: str
    status: int
    text: str
    headers: dict[str, str]

    @property
    def location(self) -> str:
        return self.headers.get("Location", "")

    def hidden_fields(self, form_id: str | None = None) -> dict[str, list[str]]:
        """The hidden inputs of the page's forms (or of the form with ``form_id``)."""
        parser = _HiddenInputs(form_id)
        parser.feed(self.text)
        return parser.fields


class _HiddenInputs(HTMLParser):
    def __init__(self, form_id: str | None) -> None:
        super().__init__()
        self.form_id = form_id
        self.inside = form_id is None
        self.fields: dict[str, list[str]] = {}

    def handle_starttag(self, tag, attrs) -> None:
        a = dict(attrs)
        if tag == "form" and self.form_id is not None:
            self.inside = a.get("id") == self.form_id
        if self.inside and tag == "input" and a.get("type") == "hidden" and a.get("name"):
            self.fields.setdefault(a["name"], []).append(a.get("value") or "")

    def handle_endtag(self, tag) -> None:
        if tag == "form" and self.form_id is not None:
            self.inside = False


class _SecureBehindProxy(http.cookiejar.DefaultCookiePolicy):
    """Send ``Secure`` cookies on the loopback hop: the browser's side of it is HTTPS."""

    def return_ok_secure(self, cookie, request) -> bool:
        return True


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # urllib then raises HTTPError with the 3xx, which ``_open`` returns


class Browser:
    """One person's browser: their cookies, and forms posted back as a browser does."""

    def __init__(self, name: str = "browser") -> None:
        self.name = name
        self.jar = http.cookiejar.CookieJar(policy=_SecureBehindProxy())
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), _NoRedirects()
        )

    def get(self, url: str) -> Page:
        return self._open(urllib.request.Request(url, method="GET"))

    def post(
        self,
        url: str,
        fields: dict[str, str | list[str]],
        files: dict[str, tuple[str, bytes, str]] | None = None,
        *,
        referer: str | None = None,
    ) -> Page:
        """POST a form (multipart when ``files`` is given: name -> (filename, data, type))."""
        if files:
            body, content_type = _multipart(fields, files)
        else:
            body = urllib.parse.urlencode(fields, doseq=True).encode()
            content_type = "application/x-www-form-urlencoded"
        split = urllib.parse.urlsplit(url)
        request = urllib.request.Request(url, data=body, method="POST")
        request.add_header("Content-Type", content_type)
        # What a browser sends with a same-origin form post, as seen behind the TLS proxy.
        request.add_header("Origin", f"https://{split.netloc}")
        request.add_header("Referer", _as_https(referer or url))
        return self._open(request)

    def submit(
        self,
        page: Page,
        fields: dict[str, str | list[str]] | None = None,
        files: dict[str, tuple[str, bytes, str]] | None = None,
        *,
        form_id: str | None = None,
        action: str | None = None,
    ) -> Page:
        """Post a form of ``page`` back to ``action`` (default: the page's own URL) with its
        hidden fields (CSRF token included) plus ``fields`` and ``files``."""
        data: dict[str, str | list[str]] = dict(page.hidden_fields(form_id))
        data.update(fields or {})
        target = urllib.parse.urljoin(page.url, action) if action else page.url
        return self.post(target, data, files, referer=page.url)

    def log_in(self, login_url: str, username: str, password: str) -> Page:
        """Open a login page (the site's or the admin's) and submit it; fail unless it
        redirects (a wrong password re-renders the form with 200)."""
        page = self.get(login_url)
        assert page.status == 200, f"{login_url} answered {page.status}"
        done = self.submit(page, {"username": username, "password": password})
        assert done.status == 302, (
            f"{self.name}: logging in at {login_url} answered {done.status}:\n{done.text[:2000]}"
        )
        return done

    def _open(self, request: urllib.request.Request) -> Page:
        request.add_header("X-Forwarded-Proto", "https")
        try:
            with self.opener.open(request, timeout=REQUEST_TIMEOUT) as response:
                return Page(
                    response.url,
                    response.status,
                    response.read().decode("utf-8", "replace"),
                    dict(response.headers),
                )
        except urllib.error.HTTPError as e:
            return Page(
                request.full_url, e.code, e.read().decode("utf-8", "replace"), dict(e.headers)
            )


def _as_https(url: str) -> str:
    return urllib.parse.urlunsplit(urllib.parse.urlsplit(url)._replace(scheme="https"))


def _multipart(
    fields: dict[str, str | list[str]], files: dict[str, tuple[str, bytes, str]]
) -> tuple[bytes, str]:
    boundary = f"----moderation-tests-{uuid.uuid4().hex}"
    parts: list[bytes] = []
    for name, values in fields.items():
        for value in [values] if isinstance(values, str) else values:
            parts.append(
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                f"{value}\r\n".encode()
            )
    for name, (filename, data, content_type) in files.items():
        parts.append(
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                f'filename="{filename}"\r\nContent-Type: {content_type}\r\n\r\n'
            ).encode()
            + data
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"
