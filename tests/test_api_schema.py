"""The OpenAPI schema the site serves: exactly the routes the URLconf has under ``/api/``,
with exactly their methods, and every reference in it resolves."""

from __future__ import annotations

import pytest
from django.urls import URLResolver, get_resolver

from moderation.api.openapi import schema
from tests.api_client import call

NOT_A_ROUTE = {"not-found"}  # the JSON 404 for anything else under /api/


def api_resolver() -> URLResolver:
    return next(
        p
        for p in get_resolver().url_patterns
        if isinstance(p, URLResolver) and str(p.pattern) == "api/"
    )


def urlconf_operations() -> set[tuple[str, str]]:
    """(path, method) of every API route in the URLconf (methods from ``api_view``)."""
    found = set()
    for pattern in api_resolver().url_patterns:
        if pattern.name in NOT_A_ROUTE:
            continue
        for method in getattr(pattern.callback, "api_methods", ("GET",)):
            found.add(("/" + str(pattern.pattern), method.lower()))
    return found


def schema_operations(document: dict) -> set[tuple[str, str]]:
    return {(path, method) for path, ops in document["paths"].items() for method in ops}


def test_every_api_route_in_the_urlconf_is_in_the_schema_and_nothing_else_is():
    assert schema_operations(schema()) == urlconf_operations()


def test_the_check_above_sees_a_route_missing_from_the_schema():
    """The comparison is not vacuous: a schema without one route differs from the URLconf."""
    document = schema()
    document["paths"].pop("/m/compare")
    assert urlconf_operations() - schema_operations(document) == {("/m/compare", "post")}


def _refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_every_reference_in_the_schema_resolves():
    document = schema()
    for ref in _refs(document):
        node = document
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        assert isinstance(node, dict), ref


@pytest.mark.django_db(transaction=True)
def test_the_schema_is_served_without_a_token_and_every_other_route_needs_one(live_server):
    base = live_server.url + "/api"
    served = call(base, "GET", "/openapi.json")
    assert served.status == 200
    document = served.json
    assert document["openapi"].startswith("3.") and document["servers"] == [{"url": base}]
    assert schema_operations(document) == urlconf_operations()
    for path, method in schema_operations(document) - {("/openapi.json", "get")}:
        reply = call(base, method.upper(), path, body=b"" if method != "get" else None)
        assert reply.status == 401, (path, method)
