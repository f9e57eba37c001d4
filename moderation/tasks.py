"""Background tasks: thin ``django.tasks`` wrappers around services (arguments are JSON).

Locally the tasks run immediately, in the process that enqueues them; in production
(``MODERATION_TASKS_BACKEND=database``) a ``manage.py db_worker`` process runs them.

Enqueue with ``enqueue_on_commit``: the task is handed to the backend only once the current
transaction has committed (at once outside a transaction), so a worker never looks for rows it
cannot see yet and never acts for a transaction that rolled back. Its arguments must be plain
JSON values that survive the round trip unchanged, checked when it is called, inside the
transaction, rather than failing after the commit.
"""

from __future__ import annotations

import json
import time
from typing import Any

from django.db import transaction
from django.tasks import Task, task

from moderation import services
from moderation.models import ReindexRun

# A reindex task works through batches for about this long, then enqueues its continuation, so
# a deploy that stops the worker (which waits for the running task) never waits long, and other
# tasks (sweeps after new flags) get their turn between the parts.
REINDEX_TASK_SECONDS = 30.0


def _require_json(value: Any, what: str) -> None:
    try:
        same = json.loads(json.dumps(value)) == value
    except (TypeError, ValueError) as e:
        raise TypeError(f"{what} must be JSON: {e}") from e
    if not same:
        raise TypeError(f"{what} must survive a JSON round trip unchanged, got {value!r}")


def enqueue_on_commit(task_: Task, /, *args: Any, **kwargs: Any) -> None:
    """Enqueue ``task_(*args, **kwargs)`` when the current transaction commits."""
    _require_json(list(args), f"{task_.name} arguments")
    _require_json(kwargs, f"{task_.name} keyword arguments")
    transaction.on_commit(lambda: task_.enqueue(*args, **kwargs))


@task
def sweep_task(fingerprint_ids: list[int] | None = None) -> dict:
    """Take down stored images that match the given (or all) banned fingerprints."""
    result = services.sweep_banned_matches(fingerprint_ids=fingerprint_ids)
    return {
        "checked": result.checked,
        "taken_down": len(result.taken_down),
        "queued": len(result.queued),
    }


@task
def recheck_image_task(model_label: str, pk: int) -> bool:
    """Re-check one stored image after its upload committed (closes the upload/flag race)."""
    from django.apps import apps

    instance = apps.get_model(model_label)._default_manager.filter(pk=pk).first()
    if instance is None:
        return False
    return services.recheck_stored_image(instance=instance)


@task
def review_digest_task() -> int:
    """Send the review-queue summaries owed to moderators whose email period has ended."""
    return services.notify_review_subscribers(owed_only=True)


@task
def reindex_task(
    run_id: int,
    batch_size: int = 200,
    sweep: bool = True,
    max_seconds: float = REINDEX_TASK_SECONDS,
) -> dict:
    """Continue reindex run ``run_id`` in committed batches; re-enqueue itself until done.

    Each part runs batches for about ``max_seconds`` (at least one batch), then enqueues the
    next part; the run's cursors live in the database, so a part that dies with its worker is
    redone by running ``manage.py reindex --background`` again. The last part closes the run
    and, unless ``sweep`` is false, sweeps every stored image against the refreshed banned set.
    """
    run = ReindexRun.objects.filter(pk=run_id).first()
    if run is None or run.finished_at is not None:
        return {"run": run_id, "done": True, "processed": 0, "note": "run missing or finished"}
    deadline = time.monotonic() + max_seconds
    processed = changed = 0
    for key in services.reindex_keys():
        while True:
            result = services.reindex_batch(run=run, key=key, batch_size=batch_size)
            if result.done:
                break
            processed += result.processed
            changed += result.changed
            if time.monotonic() >= deadline:
                enqueue_on_commit(
                    reindex_task,
                    run_id,
                    batch_size=batch_size,
                    sweep=sweep,
                    max_seconds=max_seconds,
                )
                return {"run": run_id, "done": False, "processed": processed, "changed": changed}
    swept = services.reindex_finish(run=run, sweep=sweep)
    return {
        "run": run_id,
        "done": True,
        "processed": processed,
        "changed": changed,
        "swept": swept.checked if swept else None,
        "taken_down": len(swept.taken_down) if swept else None,
    }
