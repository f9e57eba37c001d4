"""Issue (or revoke) a lookup API token from the command line.

The admin's "API tokens" page is the usual way; this is for deploy scripts and benchmarks that
need a token without a browser. The secret is printed once, on stdout alone (so
``TOKEN=$(manage.py issue_api_token svc)`` captures it); only its digest is stored. Both are
audited, with no actor.
"""

from django.core.management.base import BaseCommand, CommandError

from moderation.api import tokens
from moderation.models import ApiToken
from moderation.models.api import DEFAULT_RATE_LIMIT


class Command(BaseCommand):
    help = "Issue a lookup API token for a calling service and print its secret (or --revoke)."

    def add_arguments(self, parser):
        parser.add_argument("name", help="The calling service (or, with --revoke, the prefix).")
        parser.add_argument(
            "--rate-limit",
            type=int,
            default=DEFAULT_RATE_LIMIT,
            help=f"Requests per minute (default {DEFAULT_RATE_LIMIT}; 0: no limit).",
        )
        parser.add_argument(
            "--revoke", action="store_true", help="Revoke the active token with this prefix."
        )

    def handle(self, *args, name, rate_limit, revoke, **options):
        if revoke:
            found = list(ApiToken.objects.active().filter(prefix=name))
            if not found:
                raise CommandError(f"No active token with prefix {name!r}.")
            tokens.tokens_revoke(tokens=found, actor=None, reason="issue_api_token --revoke")
            if options["verbosity"] >= 1:
                self.stderr.write(self.style.SUCCESS(f"Revoked {name}…"))
            return
        if rate_limit < 0:
            raise CommandError("--rate-limit is 0 or more.")
        issued = tokens.token_issue(name=name, actor=None, rate_limit=rate_limit)
        self.stdout.write(issued.secret)
        if options["verbosity"] >= 1:
            self.stderr.write(
                self.style.SUCCESS(
                    f"Issued token {issued.token.prefix}… for {name!r} ({rate_limit}/min). "
                    "The secret above is shown only this once."
                )
            )
