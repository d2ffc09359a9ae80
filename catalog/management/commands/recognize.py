import json
import sys
from datetime import date

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from catalog.recognition import HeldFacts, UnknownCertificateType, recognize


def parse_held(value: str) -> HeldFacts:
    """CODE, or CODE:ISSUED, or CODE:ISSUED:REVIEW_DUE (ISO dates).

    A bare code is taken as legal and valid; with an issue date the expiry and review
    dates follow from the type's validity and review period."""
    code, *dates = value.split(":")
    try:
        parsed = [date.fromisoformat(d) for d in dates]
    except ValueError as exc:
        raise ValueError(f"--held {value!r}: dates must be YYYY-MM-DD ({exc})") from None
    if len(parsed) > 2:
        raise ValueError(f"--held {value!r}: expected CODE[:ISSUED[:REVIEW_DUE]]")
    return HeldFacts(
        type_code=code,
        issue_date=parsed[0] if parsed else None,
        review_due_date=parsed[1] if len(parsed) > 1 else None,
    )


class Command(BaseCommand):
    help = (
        "Print, as JSON, the recognition rows, exempt components and skill-level "
        "equivalences that held certificates earn for a target certificate type."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--held",
            action="append",
            default=[],
            metavar="CODE[:ISSUED[:REVIEW_DUE]]",
            help="a held certificate type code; repeatable",
        )
        parser.add_argument("--target", required=True, metavar="CODE")
        parser.add_argument(
            "--on",
            type=date.fromisoformat,
            metavar="DATE",
            help="application date (default: today)",
        )

    def handle(self, *args, **options):
        try:
            held = [parse_held(value) for value in options["held"]]
            result = recognize(
                held=held, target=options["target"], on=options["on"] or timezone.localdate()
            )
        except (ValueError, UnknownCertificateType) as exc:
            self.stderr.write(str(exc))
            sys.exit(2)
        for item in result.not_counted:
            self.stderr.write(f"{item.held_code}: {item.reason}")
        self.stdout.write(json.dumps(result.as_json(), ensure_ascii=False))
