"""Tasks the worker tests enqueue (a task must live at a module-level import path the worker
process can import): one that always raises, one that raises until a file exists, and one
that takes its time."""

from __future__ import annotations

import time
from pathlib import Path

from django.tasks import task


@task
def always_fails(message: str = "boom") -> None:
    raise ValueError(message)


@task
def fails_until_file_exists(path: str) -> str:
    if not Path(path).exists():
        raise FileNotFoundError(f"waiting for {path}")
    return "done"


@task
def slow(seconds: float, started: str) -> str:
    """Write ``started`` (a file) when it begins, then sleep in small steps."""
    Path(started).write_text("started")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)
    return "slept"
