"""``/ready``: can this deployment do what it promises? JSON, 200 or 503.

For a load balancer or a monitor. 503 when the database cannot be reached, or when tasks go
to the database backend and no worker has sent a heartbeat within the lease (then flags are
recorded but their sweeps wait: "matching copies are being taken down" would be untrue).
Tasks that failed for good are reported, not fatal: they wait for a moderator's retry, and
taking every web host out of rotation would not help them. Kept small on purpose, to
move onto django-health-check later.
"""

from __future__ import annotations

from django.db import DatabaseError, connection
from django.http import JsonResponse
from django.tasks import DEFAULT_TASK_BACKEND_ALIAS, task_backends
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from django_tasks_db.backend import DatabaseBackend

from moderation import worker


@never_cache
@require_GET
def ready(request):
    body: dict = {"database": False}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        health = worker.health()
    except DatabaseError:
        return JsonResponse({**body, "ready": False}, status=503)
    backend = task_backends[DEFAULT_TASK_BACKEND_ALIAS]
    uses_workers = isinstance(backend, DatabaseBackend)
    body.update(
        database=True,
        task_backend=type(backend).__name__,
        failed_tasks=health.failed_tasks,
        workers_alive=health.workers_alive,
        workers_stale=health.workers_stale,
    )
    body["ready"] = not uses_workers or health.workers_alive > 0
    return JsonResponse(body, status=200 if body["ready"] else 503)
