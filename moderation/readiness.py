"""``/live`` and ``/ready``: is this process up, and can it do what the site promises?

For a load balancer, an orchestrator or a monitor; unauthenticated, so the answers name what
failed and never how it is configured (no hosts, keys or error text from a driver).

- ``/live``: 200 whenever the process answers at all; it touches nothing, so a database outage
  never makes an orchestrator restart every web process.
- ``/ready``: JSON, 200 or 503, from django-health-check's checks of the database, the cache
  (Redis in production), both storages (public photos and quarantine: a file written, read and
  deleted), plus two of ours: the task workers (with tasks on the database backend, at least one
  sent a heartbeat within the lease; otherwise flags are recorded but their sweeps wait) and the
  banned set (this process has it loaded and has applied every change committed to the log),
  and likewise the hash lists' PDQ entries (their own change log).
  Tasks that failed for good are reported, not fatal: they wait for a moderator's retry, and
  taking every web host out of rotation would not help them.

Each check runs in the request's own thread, one after another: they use the request's
database connection (closed with the request, as any other) instead of opening one per probe
in a thread pool.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from asgiref.sync import sync_to_async
from django.db import DatabaseError
from django.db.models import Max
from django.http import JsonResponse
from django.tasks import DEFAULT_TASK_BACKEND_ALIAS, task_backends
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from django_tasks_db.backend import DatabaseBackend
from health_check import Cache, Database, HealthCheck, Storage
from health_check.exceptions import ServiceUnavailable
from health_check.views import HealthCheckView

from moderation import banned_set, signal_set, worker
from moderation.models import BannedSetChange, SignalChange


class InRequestThread:
    """Runs a synchronous check in the request's thread (see the module docstring)."""

    async def run(self) -> None:
        await sync_to_async(super().run, thread_sensitive=True)()


@dataclasses.dataclass
class DatabaseCheck(InRequestThread, Database):
    pass


@dataclasses.dataclass
class StorageCheck(InRequestThread, Storage):
    pass


@dataclasses.dataclass
class TaskWorkersCheck(HealthCheck):
    """With tasks on the database backend, a worker must be alive (heartbeat within the lease)."""

    health: worker.Health | None = dataclasses.field(default=None, init=False, repr=False)

    async def run(self) -> None:
        await sync_to_async(self._run, thread_sensitive=True)()

    def _run(self) -> None:
        try:
            self.health = worker.health()
        except DatabaseError as e:
            raise ServiceUnavailable("database unavailable") from e
        if self.uses_workers() and self.health.workers_alive == 0:
            raise ServiceUnavailable("no task worker alive")

    @staticmethod
    def uses_workers() -> bool:
        return isinstance(task_backends[DEFAULT_TASK_BACKEND_ALIAS], DatabaseBackend)


class InStepCheck(HealthCheck):
    """A set this process holds is loaded and has applied every change committed to its log.

    ``current`` gives the process's set (``sync()`` loads it the first time, from the host's
    snapshot or the table); ``log`` is the change log's model."""

    current: Any = None
    log: Any = None

    async def run(self) -> None:
        await sync_to_async(self._run, thread_sensitive=True)()

    def _run(self) -> None:
        try:
            committed = self.log.objects.aggregate(last=Max("id"))["last"] or 0
            held = self.current()
            held.sync()
        except DatabaseError as e:
            raise ServiceUnavailable("database unavailable") from e
        if held.last_change_id is None or held.last_change_id < committed:
            raise ServiceUnavailable("behind the change log")


@dataclasses.dataclass
class BannedSetCheck(InStepCheck):
    """This process's banned set is loaded and has applied every committed change."""

    current = staticmethod(banned_set.current)
    log = BannedSetChange


@dataclasses.dataclass
class HashListsCheck(InStepCheck):
    """This process's PDQ entries of the hash lists are loaded and have applied every
    committed ``SignalChange``: an upload here is checked against the lists as they stand."""

    current = staticmethod(signal_set.current)
    log = SignalChange


# The name each check is reported under.
CHECKS = {
    "database": (DatabaseCheck, {}),
    "cache": (Cache, {"alias": "default"}),
    "storage": (StorageCheck, {"alias": "default"}),
    "quarantine": (StorageCheck, {"alias": "quarantine"}),
    "task_workers": (TaskWorkersCheck, {}),
    "banned_set": (BannedSetCheck, {}),
    "hash_lists": (HashListsCheck, {}),
}


class ReadinessView(HealthCheckView):
    """django-health-check's view, answering our JSON with 503 (not 500) when not ready."""

    checks = tuple(CHECKS.values())

    async def get(self, request, *args, **kwargs):
        self.results = [await check.get_result() for check in self.get_checks()]
        body: dict = {
            "ready": not any(result.error for result in self.results),
            "checks": {
                name: "OK" if result.error is None else str(result.error)
                for name, result in zip(CHECKS, self.results, strict=True)
            },
        }
        [tasks] = [r.check for r in self.results if isinstance(r.check, TaskWorkersCheck)]
        body["task_backend"] = type(task_backends[DEFAULT_TASK_BACKEND_ALIAS]).__name__
        if tasks.health is not None:
            body.update(dataclasses.asdict(tasks.health))
        return JsonResponse(body, status=200 if body["ready"] else 503)


ready = require_GET(ReadinessView.as_view())


@never_cache
@require_GET
def live(request):
    """The process answers: nothing else is checked (see the module docstring)."""
    return JsonResponse({"alive": True})
