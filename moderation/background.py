"""The one way work is handed to the task worker: with the commit, with arguments checked.

Locally tasks run immediately, in the process that enqueues them; in production
(``MODERATION_TASKS_BACKEND=database``) ``manage.py run_worker`` processes run them. Each flow
defines its own tasks next to the functions they call; every enqueue goes through
``enqueue_on_commit`` (or, for a command that holds no transaction and reports the task's id,
``enqueue_now``).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from django.db import router, transaction
from django.tasks import Task, TaskResult
from django_tasks_db.backend import DatabaseBackend
from django_tasks_db.models import DBTaskResult

from moderation import db_locks


def _require_json(value: Any, what: str) -> None:
    try:
        same = json.loads(json.dumps(value)) == value
    except (TypeError, ValueError) as e:
        raise TypeError(f"{what} must be JSON: {e}") from e
    if not same:
        raise TypeError(f"{what} must survive a JSON round trip unchanged, got {value!r}")


def enqueue_on_commit(task_: Task, /, *args: Any, **kwargs: Any) -> None:
    """Enqueue ``task_(*args, **kwargs)`` so that it exists exactly when the current
    transaction commits (at once outside a transaction): a worker never looks for rows it
    cannot see yet, never acts for a transaction that rolled back, and a committed decision
    never lacks its task.

    With the database task backend (production) the task's row is written *inside* the
    transaction, so the flag and its sweep commit together or not at all; enqueueing from an
    ``on_commit`` hook instead would leave a window, between the commit and the hook, in which
    a process that dies loses the sweep of a committed flag for good. Other backends (the
    local immediate one runs the task in the enqueueing process) enqueue on commit. The
    arguments must be plain JSON values that survive the round trip unchanged; that is checked
    here, inside the transaction. ``task_`` may carry options (``task.using(run_after=...)``).
    """
    _require_json(list(args), f"{task_.name} arguments")
    _require_json(kwargs, f"{task_.name} keyword arguments")
    if _queued_with_the_data(task_):
        task_.enqueue(*args, **kwargs)
    else:
        transaction.on_commit(lambda: task_.enqueue(*args, **kwargs))


def _queued_with_the_data(task_: Task) -> bool:
    """Whether ``task_``'s queue is a table in the database of the current transaction."""
    if not isinstance(task_.get_backend(), DatabaseBackend):
        return False
    alias = router.db_for_write(DBTaskResult)
    return transaction.get_connection(alias).in_atomic_block


def enqueue_now(task_: Task, /, *args: Any, **kwargs: Any) -> TaskResult:
    """Enqueue ``task_(*args, **kwargs)`` at once and return its result handle, for a caller
    that holds no transaction and reports on the task (a command printing its id). Inside a
    transaction use ``enqueue_on_commit``: a worker could otherwise act before the commit."""
    _require_json(list(args), f"{task_.name} arguments")
    _require_json(kwargs, f"{task_.name} keyword arguments")
    return task_.enqueue(*args, **kwargs)


def enqueue_unless_queued_by(task_: Task, when, *, slack=timedelta(0)) -> bool:
    """Queue a run of ``task_`` to start at ``when``, with the current transaction, unless one
    is already waiting to start at or before ``when`` (a task that sweeps up everything due
    need not be queued twice). Returns whether it queued one.

    The look and the insert are one step for every process: on PostgreSQL a transaction-scoped
    advisory lock named after the task is held from the look to the commit, so two uploads
    refused at the same moment on two servers queue one run, not two (each would otherwise see
    an empty queue and insert). ``slack``: a run waiting to start up to this long after
    ``when`` also counts (two refusals a moment apart compute ``when`` a moment apart, in
    either order of taking the lock). A backend without a queue table always queues.
    """
    if not isinstance(task_.get_backend(), DatabaseBackend):
        enqueue_on_commit(task_.using(run_after=when))
        return True
    alias = router.db_for_write(DBTaskResult)
    with transaction.atomic(using=alias, savepoint=False):
        db_locks.hold_until_commit(db_locks.key_for(task_.module_path), task_.name, using=alias)
        waiting = DBTaskResult.objects.using(alias).filter(
            task_path=task_.module_path, status="READY", run_after__lte=when + slack
        )
        if waiting.exists():
            return False
        enqueue_on_commit(task_.using(run_after=when))
        return True
