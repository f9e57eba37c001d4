"""Import a file of hashes (PDQ, MD5, SHA-256) into a hash list (``moderation.signal_lists``).

For the lists trust-and-safety teams share: an exchange's download, a partner's file, a
clearing house's update. The file is kept privately and read in committed steps, then applied
in one transaction, so an interrupted import never leaves half a list and ``--resume ID`` goes
on from the last committed step. Malformed lines are reported with their line numbers and
skipped. A later import of the same list and ``--source`` that no longer carries an entry
retracts it (``--no-retract`` keeps it). ``--background`` hands the work to the task worker.
"""

from django.core.management.base import BaseCommand, CommandError

from moderation import hash_formats, signal_lists
from moderation.models import HashList, SignalImport


class Command(BaseCommand):
    help = (
        "Import hashes into a hash list: plain text (hex, one a line, optional tags), "
        "threatexchange's signal file (te) or dataset CSV (te-csv). Malformed lines are "
        "reported and skipped; nothing is half-imported."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", metavar="FILE", nargs="?")
        parser.add_argument("--list", dest="list_name", help="The hash list (created if new).")
        parser.add_argument(
            "--format",
            choices=hash_formats.FORMATS,
            default=None,
            help="Default: te-csv for .csv, te for .te/.signals, text otherwise.",
        )
        parser.add_argument(
            "--source", default="", help="The partner or exchange; retractions stay within it."
        )
        parser.add_argument(
            "--bare-type",
            choices=("pdq", "sha256"),
            default="pdq",
            help="What a bare 64-digit hash is (default pdq).",
        )
        parser.add_argument(
            "--no-retract",
            action="store_true",
            help="Keep the entries of this list and source that the file no longer carries.",
        )
        parser.add_argument(
            "--background", action="store_true", help="Run in the task worker; print the id."
        )
        parser.add_argument("--resume", type=int, metavar="ID", help="Go on with import ID.")

    def handle(self, *args, file, list_name, format, source, bare_type, **options):
        verbosity = options["verbosity"]
        if options["resume"] is not None:
            imp = SignalImport.objects.filter(pk=options["resume"]).first()
            if imp is None:
                raise CommandError(f"No import #{options['resume']}.")
        else:
            if not file or not list_name:
                raise CommandError("FILE and --list are required (or --resume ID).")
            hash_list, created = HashList.objects.get_or_create(name=list_name)
            if created and verbosity >= 1:
                self.stderr.write(f"Created hash list {list_name!r} (enforce, PDQ distance 31).")
            try:
                with open(file, "rb") as fh:
                    imp = signal_lists.import_start(
                        hash_list=hash_list,
                        file=fh,
                        file_name=file,
                        fmt=format or hash_formats.guess_format(file),
                        source=source,
                        bare_type=bare_type,
                        retract_missing=not options["no_retract"],
                    )
            except OSError as e:
                raise CommandError(f"Could not read {file}: {e}") from e
            except ValueError as e:
                raise CommandError(str(e)) from e
        if options["background"]:
            signal_lists.import_in_background(imp)
            self.stdout.write(f"Import #{imp.pk} queued for the task worker.")
            return

        def progress(step: SignalImport) -> None:
            if verbosity >= 1:
                share = step.bytes_done / step.total_bytes if step.total_bytes else 1
                self.stderr.write(
                    f"import #{step.pk}: {step.lines_done} lines read ({share:.0%}), "
                    f"{step.malformed} malformed, {step.get_state_display()}"
                )

        imp = signal_lists.run_import(imp, progress=progress)
        if imp.errors and verbosity >= 1:
            for line in imp.errors.splitlines():
                self.stderr.write(self.style.WARNING(f"{file or imp.file_name}: {line}, skipped"))
            more = imp.malformed - len(imp.errors.splitlines())
            if more > 0:
                self.stderr.write(self.style.WARNING(f"... and {more} more malformed lines"))
        if imp.state == SignalImport.State.FAILED:
            raise CommandError(f"Import #{imp.pk} failed: {imp.last_error}; nothing was imported.")
        self.stdout.write(
            self.style.SUCCESS(
                f"Import #{imp.pk} into {imp.hash_list.name}: {imp.added} added, "
                f"{imp.unchanged} already there, {imp.retracted} retracted, "
                f"{imp.malformed} malformed lines skipped."
            )
        )
        sweep = imp.sweeps.first()
        if sweep is not None:
            self.stdout.write(
                f"List sweep #{sweep.pk} of the stored photos against the {imp.added} new "
                "entries queued for the task worker (its progress: Sweeps in the admin)."
            )
