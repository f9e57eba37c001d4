"""Write hash lists' entries, or the banned set as PDQ, in an exchange format.

For sharing with partners and exchanges: ``--banned-set`` writes each banned image's PDQ (never
the image), otherwise the active PDQ/MD5/SHA-256 entries of the lists. Read-only.
"""

from django.core.management.base import BaseCommand, CommandError

from moderation import hash_formats, signal_lists
from moderation.models import HashList


class Command(BaseCommand):
    help = (
        "Export the active entries of hash lists (all, or --list NAME ...), or with "
        "--banned-set the banned images' PDQs, as text, te or te-csv. Read-only."
    )

    def add_arguments(self, parser):
        parser.add_argument("--list", dest="list_names", action="append", help="Only this list.")
        parser.add_argument("--format", choices=hash_formats.FORMATS, default="text")
        parser.add_argument(
            "--signal-type", dest="signal_types", action="append", choices=("pdq", "md5", "sha256")
        )
        parser.add_argument(
            "--banned-set", action="store_true", help="The flagged images' PDQs, not entries."
        )
        parser.add_argument(
            "--every-orientation",
            action="store_true",
            help="With --banned-set: the PDQ of each of the 8 flips and turns.",
        )
        parser.add_argument("--source", default="", help="te-csv's collab column.")
        parser.add_argument("-o", "--output", help="Write here instead of standard output.")

    def handle(self, *args, list_names, format, signal_types, output, **options):
        lists = None
        if list_names:
            lists = list(HashList.objects.filter(name__in=list_names))
            unknown = set(list_names) - {h.name for h in lists}
            if unknown:
                raise CommandError(f"No hash list named {', '.join(sorted(unknown))}.")

        def write(out) -> int:
            if options["banned_set"]:
                return signal_lists.export_banned_set_pdq(
                    out,
                    format,
                    hash_lists=lists,
                    every_orientation=options["every_orientation"],
                    source=options["source"],
                )
            return signal_lists.export_entries(
                out, format, hash_lists=lists, signal_types=signal_types
            )

        if output:
            try:
                with open(output, "w", encoding="utf-8", newline="") as out:
                    count = write(out)
            except OSError as e:
                raise CommandError(f"Could not write {output}: {e}") from e
            if options["verbosity"] >= 1:
                self.stderr.write(self.style.SUCCESS(f"Exported {count} hashes to {output}."))
        else:
            count = write(self.stdout)
            if options["verbosity"] >= 2:
                self.stderr.write(f"Exported {count} hashes.")
