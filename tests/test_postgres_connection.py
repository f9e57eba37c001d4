"""The site's PostgreSQL connections are set up as its settings say."""

from __future__ import annotations

import pytest
from django.db import connection


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_sites_postgresql_connections_run_without_the_jit_compiler():
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        assert cursor.fetchone() == ("off",)


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_query_run_again_on_a_connection_is_prepared_by_the_server_once():
    """Server-side binding (config/settings.py): the values travel apart from the SQL, so the
    same statement text comes back with other values, and psycopg has PostgreSQL prepare it
    once it has run ``prepare_threshold`` times; later runs skip parsing and planning."""
    from django.contrib.auth import get_user_model

    users = get_user_model().objects
    for n in range((connection.connection.prepare_threshold or 5) + 2):
        list(users.filter(username=f"nobody-{n}"))
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT statement FROM pg_prepared_statements WHERE statement LIKE %s",
            ["%FROM \"auth_user\" WHERE \"auth_user\".\"username\" = $1%"],
        )
        prepared = cursor.fetchall()
    assert len(prepared) == 1, prepared
