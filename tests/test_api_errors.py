"""Bad input to the lookup API over real HTTP: every refusal is a 4xx with a JSON body that
says what was wrong (bad, missing or revoked token 401; over the rate limit 429 with
Retry-After; bad hash or signal type 400; oversized file 413; wrong method 405), never a 500.
A little fuzzing (hypothesis) sends the routes arbitrary parameters, bodies and files."""

from __future__ import annotations

import hashlib
import json
import urllib.parse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moderation.api import tokens
from moderation.models import ApiToken
from tests import images
from tests.api_client import Reply, call, multipart, post_file, post_json

pytestmark = pytest.mark.django_db(transaction=True)

PDQ = "facd8bcb2a49bcebdec1985298d5fe84bcd006c187c598c720c3c087b3fdb318"


@pytest.fixture
def api(live_server) -> str:
    return live_server.url + "/api"


@pytest.fixture
def secret() -> str:
    return tokens.token_issue(name="chat-attachments", actor=None).secret


def png(img) -> bytes:
    return images.upload(img, "me.png", "PNG").read()


def assert_json_error(reply: Reply, status: int, *words: str) -> None:
    """``reply`` is a ``status`` with HMA's JSON error body whose message has ``words``."""
    assert (reply.status, reply.content_type) == (status, "application/json"), reply.body[:300]
    message = reply.json["message"]
    for word in words:
        assert word in message, message


# --- tokens -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("authorization", "words"),
    [
        (None, ["missing token"]),
        ("Token abc", ["missing token"]),
        ("Bearer ", ["missing token"]),
        ("Bearer mdapi_not-a-token-we-issued", ["invalid or revoked"]),
        ("Bearer something-else-entirely", ["invalid or revoked"]),
    ],
)
def test_a_call_without_a_valid_token_is_401_json(api, secret, authorization, words):
    headers = {"Authorization": authorization} if authorization is not None else {}
    reply = call(api, "GET", "/m/index/status", headers=headers)
    assert_json_error(reply, 401, *words)
    assert reply.headers["www-authenticate"].startswith("Bearer")


def test_a_revoked_token_is_refused_from_its_next_call(api):
    issued = tokens.token_issue(name="old-service", actor=None)
    assert call(api, "GET", "/m/index/status", token=issued.secret).status == 200
    assert tokens.tokens_revoke(tokens=[issued.token], actor=None) == 1
    assert_json_error(call(api, "GET", "/m/index/status", token=issued.secret), 401, "revoked")


def test_only_a_digest_of_the_secret_is_stored(secret):
    stored = ApiToken.objects.get()
    assert stored.key_digest == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in json.dumps(list(ApiToken.objects.values()), default=str)


def test_over_its_rate_limit_a_token_gets_429_with_retry_after_and_others_do_not(api):
    limited = tokens.token_issue(name="busy", actor=None, rate_limit=3).secret
    other = tokens.token_issue(name="quiet", actor=None, rate_limit=3).secret

    statuses = [call(api, "GET", "/m/index/status", token=limited).status for _ in range(3)]
    over = call(api, "GET", "/m/index/status", token=limited)

    assert statuses == [200, 200, 200]
    assert_json_error(over, 429, "rate limit of 3")
    assert 1 <= int(over.headers["retry-after"]) <= 60
    assert call(api, "GET", "/m/index/status", token=other).status == 200


# --- bad hashes and parameters ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("signal_type=pdq&signal=" + PDQ[:-1], ["64 hex digits", "got 63"]),
        ("signal_type=pdq&signal=" + "g" * 64, ["hex digits"]),
        ("signal_type=md5&signal=" + PDQ, ["32 hex digits"]),
        ("signal_type=photodna&signal=" + PDQ, ["unknown signal type", "photodna"]),
        ("signal_type=pdq", ["signal is required"]),
        ("signal=" + PDQ, ["signal_type is required"]),
        ("signal_type=pdq&signal=" + PDQ + "&quality=101", ["quality"]),
    ],
)
@pytest.mark.parametrize("route", ["/m/raw_lookup", "/m/lookup"])
def test_a_bad_hash_signal_type_or_parameter_is_400_naming_the_problem(
    api, secret, route, query, words
):
    assert_json_error(call(api, "GET", f"{route}?{query}", token=secret), 400, *words)


def test_a_raw_lookup_with_a_distance_flag_that_is_not_a_boolean_is_400(api, secret):
    query = f"signal_type=pdq&signal={PDQ}&include_distance=maybe"
    reply = call(api, "GET", f"/m/raw_lookup?{query}", token=secret)
    assert_json_error(reply, 400, "include_distance")


def test_an_unknown_signal_type_in_index_status_or_hash_types_is_400(api, secret):
    path = "/m/index/status?signal_type=tmk"
    assert_json_error(call(api, "GET", path, token=secret), 400, "unknown signal type", "tmk")
    reply = post_file(api, "/h/hash", png(images.photo(431)), token=secret, query="?types=tmk")
    assert_json_error(reply, 400, "unknown signal type")


def test_a_lookup_by_url_is_400_saying_to_post_the_file(api, secret):
    reply = call(api, "GET", "/m/lookup?url=https://example.com/a.jpg", token=secret)
    assert_json_error(reply, 400, "POST the file")


@pytest.mark.parametrize(
    "payload",
    [
        ["banana"],
        {"pdq": "banana"},
        {"pdq": []},
        {"pdq": ["banana", "banana"]},
        {"pdq": [PDQ, PDQ, PDQ]},
        {"pdq": [PDQ, 7]},
        {"tmk": [PDQ, PDQ]},
        {},
    ],
)
def test_compare_refuses_hmas_malformed_inputs_with_400(api, secret, payload):
    assert_json_error(post_json(api, "/m/compare", payload, token=secret), 400)


def test_compare_refuses_a_body_that_is_not_json(api, secret):
    reply = call(api, "POST", "/m/compare", token=secret, body=b"{pdq:", content_type="text/plain")
    assert_json_error(reply, 400, "not JSON")


# --- files ------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["/h/hash", "/m/lookup"])
def test_a_file_over_the_upload_limit_is_413_json(api, secret, settings, route):
    data = png(images.photo(432))
    settings.MODERATION_MAX_UPLOAD_BYTES = len(data) - 1
    assert_json_error(post_file(api, route, data, token=secret), 413, "too large")


def test_a_request_over_the_body_limit_is_413_json_before_it_is_read(api, secret, settings):
    settings.MODERATION_MAX_REQUEST_BYTES = 10_000
    reply = post_file(api, "/h/hash", b"x" * 20_000, token=secret)
    assert_json_error(reply, 413, "request too large")


@pytest.mark.parametrize("route", ["/h/hash", "/m/lookup"])
@pytest.mark.parametrize(
    "data",
    [b"GIF89a not really", b"%PDF-1.4 a document", png(images.photo(433))[:200], b"\x00" * 64],
    ids=["fake-gif", "pdf", "truncated-png", "zeros"],
)
def test_a_file_that_is_not_an_acceptable_image_is_400_json(api, secret, route, data):
    assert_json_error(post_file(api, route, data, token=secret), 400)


def test_a_tiny_image_is_400_json(api, secret):
    reply = post_file(api, "/m/lookup", png(images.photo(434, size=(8, 8))), token=secret)
    assert_json_error(reply, 400)


@pytest.mark.parametrize("route", ["/h/hash", "/m/lookup"])
def test_multipart_mistakes_are_400_json(api, secret, route):
    data = png(images.photo(435))
    body, content_type = multipart([("photo", "a.png", data), ("photo", "b.png", data)])
    two = call(api, "POST", route, token=secret, body=body, content_type=content_type)
    assert_json_error(two, 400, "Only one file")
    assert_json_error(post_file(api, route, data, token=secret, field="video"), 400, "video")
    no_file = call(api, "POST", route, token=secret, body=b"{}", content_type="application/json")
    assert_json_error(no_file, 400, "Missing multipart")
    broken = call(
        api, "POST", route, token=secret, body=b"--x\r\nnope", content_type="multipart/form-data"
    )
    assert_json_error(broken, 400)


# --- methods and routes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "route", "allow"),
    [
        ("GET", "/h/hash", "POST"),
        ("PUT", "/m/raw_lookup", "GET"),
        ("DELETE", "/m/lookup", "GET, POST"),
        ("GET", "/m/compare", "POST"),
        ("POST", "/m/index/status", "GET"),
    ],
)
def test_a_wrong_method_is_405_json_with_the_allowed_ones(api, secret, method, route, allow):
    reply = call(api, method, route, token=secret, body=b"" if method != "GET" else None)
    assert_json_error(reply, 405, method)
    assert reply.headers["allow"] == allow


def test_an_unknown_api_route_is_a_json_404(api, secret):
    assert_json_error(call(api, "GET", "/m/nothing-here", token=secret), 404, "/api/m/nothing")


# --- fuzzing ----------------------------------------------------------------------------------

FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ANSWERED = {200, 400}


@FUZZ
@given(
    signal_type=st.one_of(st.sampled_from(["pdq", "md5", "sha256", "dhash"]), st.text()),
    signal=st.one_of(st.text(), st.text(alphabet="0123456789abcdefABCDEF", max_size=70)),
    extra=st.dictionaries(
        st.sampled_from(["include_distance", "banks", "quality"]), st.text(), max_size=3
    ),
)
def test_raw_lookup_answers_any_parameters_with_200_or_a_json_400(
    api, secret, signal_type, signal, extra
):
    query = urllib.parse.urlencode({"signal_type": signal_type, "signal": signal, **extra})
    reply = call(api, "GET", f"/m/raw_lookup?{query}", token=secret)
    assert reply.status in ANSWERED and reply.content_type == "application/json", reply.body[:300]
    assert "matches" in reply.json if reply.status == 200 else "message" in reply.json


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@FUZZ
@given(payload=JSON_VALUES)
def test_compare_answers_any_json_with_200_or_a_json_400(api, secret, payload):
    reply = post_json(api, "/m/compare", payload, token=secret)
    assert reply.status in ANSWERED and reply.content_type == "application/json", reply.body[:300]


@FUZZ
@given(data=st.binary(min_size=1, max_size=2000))
def test_any_bytes_posted_as_a_file_get_a_json_4xx_or_200(api, secret, data):
    for route in ("/h/hash", "/m/lookup"):
        reply = post_file(api, route, data, token=secret)
        assert reply.status in ANSWERED and reply.content_type == "application/json", (
            route,
            reply.body[:300],
        )
