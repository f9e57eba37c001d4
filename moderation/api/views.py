"""The API's routes, in HMA's shapes (``/h/hash``, ``/m/raw_lookup``, ``/m/lookup``,
``/m/compare``, ``/m/index/status``); docs/api.md says where they differ.

Nothing from a call is stored: an uploaded file is held in memory for the request
(``InMemoryUploadHandler``), hashed or screened, and dropped.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import SuspiciousOperation, ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import MemoryFileUploadHandler
from django.http import HttpRequest, JsonResponse
from django.http.multipartparser import MultiPartParserError

from moderation import screening, signals
from moderation.api.auth import ApiError, api_view, error
from moderation.api.openapi import schema
from moderation.conf import moderation_settings
from moderation.matching import PASS
from moderation.models import ApiToken, BannedSetChange, SignalChange

# The multipart field an image is sent in: HMA names it for the content type.
CONTENT_TYPE_FIELD = "photo"
DECISION_HEADER = "X-Moderation-Decision"


class InMemoryUploadHandler(MemoryFileUploadHandler):
    """Holds an uploaded file in memory whatever its size, so no API upload touches disk: the
    body is already capped at ``MODERATION_MAX_REQUEST_BYTES`` (``RequestSizeLimitMiddleware``)."""

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        self.activated = True


def _param(request: HttpRequest, name: str) -> str:
    value = request.GET.get(name)
    if value is None or not value.strip():
        raise ApiError(400, f"{name} is required")
    return value


def _flag(request: HttpRequest, name: str) -> bool:
    value = request.GET.get(name, "false").strip().lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0", ""):
        return False
    raise ApiError(400, f"invalid boolean for {name}: use true or false")


def _banks(request: HttpRequest) -> set[str] | None:
    """HMA's ``banks``: a comma-separated list of list names to keep (None: every list)."""
    value = request.GET.get("banks")
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


def _quality(request: HttpRequest) -> int | None:
    value = request.GET.get("quality")
    if value is None:
        return None
    try:
        quality = int(value)
    except ValueError:
        quality = -1
    if not 0 <= quality <= 100:
        raise ApiError(400, "quality is PDQ's quality score, an integer from 0 to 100")
    return quality


def _types(request: HttpRequest) -> list[str]:
    """HMA's ``types``: the signal types wanted (default: all), aliases accepted."""
    value = request.GET.get("types")
    if value is None:
        return list(signals.SIGNAL_TYPES)
    wanted = [signals.signal_type_of(name) for name in value.split(",") if name.strip()]
    if not wanted:
        raise ApiError(400, "empty signal type selection")
    return wanted


def _uploaded_file(request: HttpRequest) -> SimpleUploadedFile:
    """The one image of a multipart body (field ``photo``), in memory, within the size limit."""
    request.upload_handlers = [InMemoryUploadHandler(request)]
    try:
        files = request.FILES
    except (MultiPartParserError, SuspiciousOperation) as e:
        raise ApiError(400, f"malformed multipart/form-data body: {e}") from e
    if not files:
        raise ApiError(400, "Missing multipart/form-data file upload")
    if len(files) > 1 or any(len(files.getlist(name)) > 1 for name in files):
        raise ApiError(400, "Only one file allowed per request")
    field = next(iter(files))
    if field != CONTENT_TYPE_FIELD:
        raise ApiError(
            400, f"no such content_type: {field!r} (send the image in the field 'photo')"
        )
    upload = files[field]
    limit = moderation_settings.MAX_UPLOAD_BYTES
    if upload.size > limit:
        raise ApiError(413, f"file too large: {upload.size} bytes, the limit is {limit}")
    if upload.size == 0:
        raise ApiError(400, "the file is empty")
    return SimpleUploadedFile(upload.name or "upload", upload.read())


def _match(m: signals.ListMatch, *, with_signal: bool = False) -> dict[str, Any]:
    """One match in HMA's shape (``bank_content_id``, ``distance`` as a string), with ours."""
    found = {
        "bank_content_id": m.entry_id if m.entry_id is not None else m.flag_id,
        "distance": str(m.distance),
        "bank": m.list_name,
        "outcome": m.outcome,
    }
    if with_signal:
        found["signal_type"] = m.signal_type
    return found


def _by_bank(matches: list[signals.ListMatch]) -> dict[str, list[dict[str, Any]]]:
    """HMA's lookup shape, ``{bank: [match, ...]}``: shadow lists left out (as HMA leaves out
    banks whose matching is disabled)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for m in matches:
        if m.outcome != signals.SHADOW:
            out.setdefault(m.list_name, []).append(_match(m))
    return out


def _in_banks(matches, banks: set[str] | None) -> list[signals.ListMatch]:
    return [m for m in matches if banks is None or m.list_name in banks]


def _decided(body: dict[str, Any], decision: str | None) -> JsonResponse:
    response = JsonResponse(body)
    response[DECISION_HEADER] = decision or PASS
    return response


@api_view("POST")
def hash_media(request: HttpRequest, token: ApiToken) -> JsonResponse:
    """``POST /h/hash``: every signal of the uploaded image, ``{signal_type: hex}``."""
    wanted = _types(request)
    hashes = signals.hash_file(_uploaded_file(request))
    return JsonResponse({kind: hashes[kind] for kind in wanted})


@api_view("GET")
def raw_lookup(request: HttpRequest, token: ApiToken) -> JsonResponse:
    """``GET /m/raw_lookup``: the entries a hash matches, ``{"matches": [id, ...]}`` (with
    ``include_distance``: ``[{"bank_content_id", "distance", "bank", "outcome"}]``)."""
    signal_type, signal = _param(request, "signal_type"), _param(request, "signal")
    include_distance = _flag(request, "include_distance")
    matches = _in_banks(
        signals.lookup(signal_type, signal, quality=_quality(request)), _banks(request)
    )
    if include_distance:
        return JsonResponse({"matches": [_match(m) for m in matches]})
    return JsonResponse({"matches": [_match(m)["bank_content_id"] for m in matches]})


@api_view("GET", "POST")
def lookup(request: HttpRequest, token: ApiToken) -> JsonResponse:
    """``GET /m/lookup?signal_type=&signal=``: ``{bank: [match]}`` for one hash;
    ``POST /m/lookup`` with an image: ``{signal_type: {bank: [match]}}``, screened exactly as
    an upload is. The decision (block, review, pass) is in ``X-Moderation-Decision``: over
    every list, whichever ``banks`` the body keeps."""
    banks = _banks(request)
    if request.method == "GET":
        if request.GET.get("url"):
            raise ApiError(400, "looking up a URL is not supported: POST the file instead")
        signal_type, signal = _param(request, "signal_type"), _param(request, "signal")
        matches = signals.lookup(signal_type, signal, quality=_quality(request))
        return _decided(_by_bank(_in_banks(matches, banks)), signals.decision_of(matches))
    upload = _uploaded_file(request)
    try:
        screened = screening.screen_as_upload(upload)
    except ValidationError as e:
        code = e.error_list[0].code if hasattr(e, "error_list") else None
        raise ApiError(413 if code == "too_large" else 400, " ".join(e.messages)) from e
    matches = [*signals.verdict_matches(screened.verdicts), *screened.lists]
    matches = _in_banks(matches, banks)
    body = {
        kind: _by_bank([m for m in matches if m.signal_type == kind])
        for kind in signals.SIGNAL_TYPES
    }
    return _decided(body, screened.decision)


@api_view("POST")
def compare(request: HttpRequest, token: ApiToken) -> JsonResponse:
    """``POST /m/compare`` with ``{signal_type: [hash, hash]}``: ``{signal_type: [match,
    {"distance": n}]}`` for each pair."""
    try:
        body = json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(400, f"the body is not JSON: {e}") from e
    if not isinstance(body, dict) or not body:
        raise ApiError(400, "Request input was not a dict of {signal_type: [hash, hash]}")
    out = {}
    for name, pair in body.items():
        if not isinstance(pair, list):
            raise ApiError(400, f"Comparison hashes for {name} was not a list")
        if len(pair) != 2:
            raise ApiError(400, "Comparison hash list length must be exactly 2")
        if not all(isinstance(h, str) for h in pair):
            raise ApiError(400, f"Comparison hashes for {name} must be strings")
        found = signals.compare(name, pair[0], pair[1])
        out[name] = [found.match, {"distance": found.distance}]
    return JsonResponse(out)


def _built_to(last_pdq_change: int | None) -> dict[str, int]:
    """Per signal type, when the last change its index holds was made (Unix seconds; -1 for
    none): PDQ, the change log position its index has replayed; MD5 and SHA-256, looked up in
    the database, every change; dHash, the banned set's last change. One query each, by key."""

    def stamp(change) -> int:
        return int(change.created_at.timestamp()) if change is not None else -1

    pdq_change = (
        SignalChange.objects.filter(pk=last_pdq_change).first() if last_pdq_change else None
    )
    latest = stamp(SignalChange.objects.order_by("-pk").first())
    return {
        signals.PDQ: stamp(pdq_change),
        signals.MD5: latest,
        signals.SHA256: latest,
        signals.DHASH: stamp(BannedSetChange.objects.order_by("-pk").first()),
    }


@api_view("GET")
def index_status(request: HttpRequest, token: ApiToken) -> JsonResponse:
    """``GET /m/index/status``: per signal type, HMA's ``present``, ``built_to`` and ``size``,
    with what holds it (``signals.index_status``)."""
    wanted = request.GET.get("signal_type")
    kinds = list(signals.SIGNAL_TYPES) if wanted is None else [signals.signal_type_of(wanted)]
    status = signals.index_status()
    built_to = _built_to(status[signals.PDQ].get("last_change_id"))
    return JsonResponse(
        {
            kind: {
                "present": True,
                "built_to": built_to[kind],
                "size": status[kind]["size"],
                **{k: v for k, v in status[kind].items() if k != "size"},
            }
            for kind in kinds
        }
    )


def openapi_json(request: HttpRequest) -> JsonResponse:
    """``GET /api/openapi.json``: the schema (public: it says how to call, nothing more)."""
    if request.method not in ("GET", "HEAD"):
        return error(405, f"method {request.method} not allowed; use GET", Allow="GET")
    return JsonResponse(schema(request.build_absolute_uri("/api")))


def not_found(request: HttpRequest, path: str = "") -> JsonResponse:
    return error(404, f"no such API route: {request.path}")
