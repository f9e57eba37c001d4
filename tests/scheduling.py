"""The order in which pytest-xdist hands test files to its workers: the longest first.

``make test`` runs each database's tests in worker processes, whole files per worker
(``--dist loadfile``). A worker that picks up a long file last (the crash tests, the corpus,
a browser module) keeps the run going alone while the others sit idle; handed out longest
first, the short files fill in around the long ones at the end.

How long a file takes comes from ``tests/durations.json``: seconds per file on each database,
from an earlier run's JUnit reports (``python scripts/test_durations.py artifacts/junit-*.xml``
writes it). A file it does not list counts as ``UNKNOWN_SECONDS_PER_TEST`` per test. The
numbers only order the work: stale ones cost time, never a test.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

DURATIONS = Path(__file__).with_name("durations.json")
UNKNOWN_SECONDS_PER_TEST = 0.3


def file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def load_durations(database: str) -> dict[str, float]:
    """Seconds per test file on ``database`` (``sqlite`` or ``postgresql``); {} without the
    file or that database in it."""
    try:
        recorded = json.loads(DURATIONS.read_text())
    except (OSError, ValueError):
        return {}
    return {name: float(seconds) for name, seconds in recorded.get(database, {}).items()}


def longest_files_first(items: list, database: str) -> None:
    """Sort ``items`` in place by their file's expected duration, longest first. Stable: the
    tests of one file keep their order (pytest-django's, database-free before transactional)."""
    durations = load_durations(database)
    counts = Counter(file_of(item.nodeid) for item in items)

    def expected(name: str) -> float:
        return durations.get(name, counts[name] * UNKNOWN_SECONDS_PER_TEST)

    items.sort(key=lambda item: (-expected(file_of(item.nodeid)), file_of(item.nodeid)))
