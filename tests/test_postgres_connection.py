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
