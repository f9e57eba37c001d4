"""Make the local site usable at once: a "Moderators" group, a demo moderator account, sample
photos, and what to try.

``make run`` calls this after migrating: it prints the credentials, how the moderator sets up
two-factor authentication at the first admin login, and the two-minute walkthrough, with photos
drawn by ``profiles.demo`` (``--samples DIR``) so a fresh clone needs nothing else. It refuses
to run with DEBUG off, so a production database never gets a known password. Safe to run
repeatedly.
"""

import os
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from moderation import two_factor
from profiles import demo

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
        parser.add_argument(
            "--samples",
            metavar="DIR",
            help="Also draw sample photos into DIR/photos and resized copies into DIR/copies.",
        )
        parser.add_argument(
            "--address",
            default="127.0.0.1:8000",
            help="Where the dev server will listen, for the walkthrough's links.",
        )
        parser.add_argument(
            "--reset-two-factor",
            action="store_true",
            help="Remove the demo moderator's two-factor devices (audited), to enrol again.",
        )

    def handle(self, *args, username, password, samples, address, reset_two_factor, **options):
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
        if reset_two_factor:
            two_factor.reset(actor=None, user=user)
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo moderator {'created' if created else 'ready'}: "
                f"username '{username}', password '{password}' — log in at /admin/"
            )
        )
        if two_factor.is_enrolled(user):
            self.stdout.write(
                "  Two-factor: enrolled; the admin asks for the code from your authenticator app"
                " (lost it? manage.py demo_setup --reset-two-factor)."
            )
        else:
            self.stdout.write(
                "  Two-factor: at the first admin login, scan the QR code with an authenticator"
                " app (or type its key), enter the 6-digit code, keep the recovery codes."
            )
        if samples:
            folder = Path(samples)
            if not (folder / "photos" / "sample-01.jpg").exists():
                demo.write_samples(folder)
            self.stdout.write(self.walkthrough(folder, address))

    @staticmethod
    def walkthrough(folder: Path, address: str) -> str:
        photo = folder / "photos" / "sample-01.jpg"
        copy = folder / "copies" / "sample-01-small.jpg"
        return f"""
What to try (two minutes) at http://{address}/ — sample photos drawn in {folder}/:
  1. Sign up at http://{address}/signup/ and upload {photo} as your photo.
  2. Log out; log in at http://{address}/admin/ as the moderator (two-factor set-up the
     first time, as above).
  3. Profiles: tick your profile, action "Flag selected photos", give a reason: the photo is
     banned, taken off your profile and kept in private quarantine.
  4. Log in as yourself again and upload {copy} (a resized,
     re-compressed copy): refused with one generic message.
  From a shell: python manage.py check_image {copy}
"""
