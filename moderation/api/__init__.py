"""The lookup API other services call, shaped like hasher-matcher-actioner's (HMA's) API.

- ``tokens``: issuing, revoking and checking the calling services' tokens (audited);
- ``auth``: the ``api_view`` decorator (token, rate limit, method, JSON errors);
- ``views``: hash, raw lookup, lookup of an uploaded file, compare, index status;
- ``openapi``: the OpenAPI 3 schema served at ``/api/openapi.json``;
- ``urls``: the routes, mounted under ``/api/``.

The views call the signals service (``moderation.signals``) and, for an uploaded file, the
upload path's own screening (``moderation.screening``): no hashing or matching of their own.
"""
