"""Make the local site usable at once: a "Moderators" group and a demo moderator account.

``make run`` calls this after migrating and prints the credentials. It refuses to run with
DEBUG off, so a production database never gets a known password. Safe to run repeatedly.
"""

import os

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

MODERATOR_PERMISSIONS = [
    ("moderation", "flag_image"),
    ("moderation", "unflag_image"),
    ("moderation", "view_quarantine"),
    ("moderation", "view_flaggedfingerprint"),
    ("moderation", "view_auditevent"),
    ("moderation", "view_refusedupload"),
    ("moderation", "view_hashlist"),
    ("moderation", "view_reviewitem"),
    ("moderation", "review_upload"),
    ("moderation", "view_shadowhit"),
    ("moderation", "view_signalentry"),
    ("moderation", "view_signalimport"),
    ("moderation", "view_allowedmatch"),
    ("moderation", "view_appeal"),
    ("moderation", "view_report"),
    ("moderation", "view_failedtask"),
    ("moderation", "retry_task"),
    ("moderation", "view_workerheartbeat"),
    ("moderation", "view_sweep"),
    ("moderation", "view_reindexrun"),
    ("moderation", "view_proberescalation"),
    # Propose, promote or discard a hash list's trial distance (and edit the list).
    ("moderation", "change_hashlist"),
    ("profiles", "view_profile"),
    ("profiles", "change_profile"),
]


class Command(BaseCommand):
    help = "Create the Moderators group and a demo moderator (local development only)."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="moderator")
        parser.add_argument(
            "--password",
            default=os.environ.get("DEMO_MODERATOR_PASSWORD", "moderate-locally"),
            help="Defaults to $DEMO_MODERATOR_PASSWORD or 'moderate-locally'.",
        )

    def handle(self, *args, username, password, **options):
        if not settings.DEBUG:
            raise CommandError("demo_setup is for local development; DJANGO_DEBUG is off.")
        with transaction.atomic():
            group, _ = Group.objects.get_or_create(name="Moderators")
            for app_label, codename in MODERATOR_PERMISSIONS:
                group.permissions.add(
                    Permission.objects.get(content_type__app_label=app_label, codename=codename)
                )
            user, created = get_user_model().objects.get_or_create(username=username)
            user.is_staff = True
            user.set_password(password)
            user.save()
            user.groups.add(group)
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo moderator {'created' if created else 'ready'}: "
                f"username '{username}', password '{password}' — log in at /admin/"
            )
        )
