from django.core.management.base import BaseCommand, CommandError, CommandParser

from issuance.keys import SIGNER, issuer_keys_dir, issuer_keys_ensure
from issuance.models import Issuer


class Command(BaseCommand):
    help = (
        "Create a self-signed signing key (root CA + signer certificate) for every issuer "
        "that has none, or for one issuer, and print where they are."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--issuer", metavar="CODE", help="only this issuer (its code)")

    def handle(self, *args, **options):
        issuers = Issuer.objects.order_by("code")
        if options["issuer"]:
            issuers = issuers.filter(code=options["issuer"])
            if not issuers:
                raise CommandError(f"no issuer with code {options['issuer']!r}")
        for issuer in issuers:
            existed = (issuer_keys_dir(issuer) / SIGNER).is_file()
            directory = issuer_keys_ensure(issuer)
            state = "existing" if existed else "created"
            self.stdout.write(f"{issuer.code}\t{state}\t{directory}")
