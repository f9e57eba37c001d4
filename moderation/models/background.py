"""What background work needs to survive the death of its processes.

- ``WorkerHeartbeat``: each ``run_worker`` process says, every few seconds, that it is alive
  and which task it runs; a task whose worker stopped saying so is given back to the queue
  (``moderation/worker.py``). django-tasks-db records which worker claimed a task but has no
  notion of that worker being alive, so this row is the lease.
- ``EmailDelivery``: an email the site owes someone, claimed (row written) before it is sent
  and marked sent in the transaction that holds its lock while SMTP is spoken, so a task run
  twice never mails twice (``moderation/review.py``).
- ``FailedTask``: django-tasks-db's task rows that failed for good, as the admin lists them
  with a retry button (a proxy: no table of its own).
"""

from __future__ import annotations

from email.utils import make_msgid

from django.conf import settings
from django.core.mail.utils import DNS_NAME
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django_tasks_db.models import DBTaskResult


class WorkerHeartbeat(models.Model):
    """One running (or dead: ``last_seen`` stopped moving) ``manage.py run_worker`` process."""

    worker_id = models.CharField(_("worker id"), max_length=64, unique=True)
    host = models.CharField(_("host"), max_length=255)
    pid = models.PositiveIntegerField(_("process id"))
    started_at = models.DateTimeField(_("started"), default=timezone.now)
    last_seen = models.DateTimeField(_("last seen"), default=timezone.now, db_index=True)
    # The DBTaskResult it runs now (a plain value: the task row is another app's).
    current_task = models.UUIDField(_("current task"), null=True, blank=True)

    class Meta:
        verbose_name = _("task worker")
        ordering = ["-last_seen"]

    def __str__(self) -> str:
        return f"{self.worker_id} ({self.host}, pid {self.pid})"


def new_message_id() -> str:
    """A new, globally unique Message-ID (time, pid, 64 random bits, this host's name), made
    once per delivery and stored, so every host that (re)sends it uses the same one."""
    return make_msgid(idstring="moderation", domain=str(DNS_NAME))


class EmailDelivery(models.Model):
    """An email owed to someone: written when the send is claimed, ``sent_at`` set in the
    transaction that sends it. Unsent rows are sent by whoever locks them next, always with
    the row's own ``message_id`` and ``created_at`` as Message-ID and Date."""

    class Kind(models.TextChoices):
        REVIEW_DIGEST = "review_digest", _("review-queue summary")
        NOTICE = "notice", _("statement of reasons")
        APPEAL_OUTCOME = "appeal_outcome", _("appeal outcome")
        REPORT_OUTCOME = "report_outcome", _("report outcome")
        FLOOD_ALERT = "flood_alert", _("flag held by the flood guard")

    kind = models.CharField(_("kind"), max_length=30, choices=Kind.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("recipient"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    recipient = models.CharField(_("address"), max_length=254)
    subject = models.CharField(_("subject"), max_length=255)
    body = models.TextField(_("body"))
    created_at = models.DateTimeField(_("claimed"), default=timezone.now)
    sent_at = models.DateTimeField(_("sent"), null=True, blank=True, db_index=True)
    message_id = models.CharField(
        _("Message-ID"), max_length=255, unique=True, default=new_message_id, editable=False
    )

    class Meta:
        verbose_name = _("email delivery")
        verbose_name_plural = _("email deliveries")
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} to {self.recipient}"


class FailedTaskManager(models.Manager):
    def get_queryset(self) -> models.QuerySet:
        return super().get_queryset().filter(status="FAILED")


class FailedTask(DBTaskResult):
    """A background task that failed for good (every attempt raised, or its workers kept
    dying): the admin shows its error and attempts and can queue it again."""

    objects = FailedTaskManager()

    class Meta:
        proxy = True
        verbose_name = _("failed background task")
        verbose_name_plural = _("failed background tasks")
        permissions = [("retry_task", "Can queue a failed background task again")]
