"""Write the banned set (or one hash list) in the exchange format (``moderation.exchange``).

For trading lists with another site and for moving a banned set between deployments:
``import_fingerprints`` on the other side reproduces it exactly. Read-only.
"""

from django.core.management.base import BaseCommand, CommandError

from moderation import exchange
from moderation.models import FlaggedFingerprint, HashList


class Command(BaseCommand):
    help = (
        "Export the actively banned fingerprints (all lists, or --list NAME) as CSV or JSON "
        "lines, to a file (-o) or standard output. Read-only."
    )

    def add_arguments(self, parser):
        parser.add_argument("--list", dest="list_name", help="Only this hash list.")
        parser.add_argument("--format", choices=exchange.FORMATS, default="jsonl")
        parser.add_argument("-o", "--output", help="Write here instead of standard output.")

    def handle(self, *args, list_name, format, output, **options):
        queryset = FlaggedFingerprint.objects.all()
        if list_name is not None:
            if not HashList.objects.filter(name=list_name).exists():
                raise CommandError(f"No hash list named {list_name!r}.")
            queryset = queryset.filter(hash_list__name=list_name)
        records = exchange.fingerprint_records(queryset)
        if output:
            try:
                with open(output, "w", encoding="utf-8", newline="") as out:
                    count = exchange.write(records, out, format)
            except OSError as e:
                raise CommandError(f"Could not write {output}: {e}") from e
            if options["verbosity"] >= 1:
                self.stderr.write(self.style.SUCCESS(f"Exported {count} fingerprints to {output}."))
        else:
            count = exchange.write(records, self.stdout, format)
            if options["verbosity"] >= 2:
                self.stderr.write(f"Exported {count} fingerprints.", ending="\n")
