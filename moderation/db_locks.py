"""PostgreSQL advisory locks held until the current transaction ends.

Two writers that must not interleave a look and a write (the banned set's change log, the one
waiting run of a periodic task) take the same named lock; the second waits for the first's
commit and then sees what it wrote. SQLite has one writer at a time anyway, so there it is a
no-op.
"""

from __future__ import annotations

import hashlib

from django.db import DEFAULT_DB_ALIAS, transaction


def hold_until_commit(key: int, what: str, *, using: str = DEFAULT_DB_ALIAS) -> None:
    """Take advisory lock ``key`` until the transaction on ``using`` ends (PostgreSQL).

    It must be taken inside ``transaction.atomic()``: in autocommit it would end at once and
    order nothing, so that is an error (``what`` names the lock in it).
    """
    connection = transaction.get_connection(using)
    if not connection.in_atomic_block:
        raise RuntimeError(f"the {what} lock must be taken inside transaction.atomic()")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def key_for(name: str) -> int:
    """A stable 63-bit lock key for ``name``, the same in every process."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1
