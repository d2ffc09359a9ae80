"""`python manage.py export_certificates [--from DATE] [--to DATE] [--format csv|xlsx]
--output PATH` (DESIGN.md): the certificates issued in a period, for the national query.
Without dates, the quarter before today's."""

from datetime import date
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from issuance.exchange import certificates_export, quarter_bounds


def _parse_date(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{option} 日期格式应为 YYYY-MM-DD，收到「{value}」") from None


class Command(BaseCommand):
    help = "Export the certificates issued in a period (default: the previous quarter)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--from", dest="date_from", help="first issue date, YYYY-MM-DD")
        parser.add_argument("--to", dest="date_to", help="last issue date, YYYY-MM-DD")
        parser.add_argument(
            "--format",
            dest="fmt",
            choices=["csv", "xlsx"],
            help="default: from the output's extension, else csv",
        )
        parser.add_argument("--output", required=True, help="file to write (replaced)")

    def handle(self, *args, **options):
        first, last = quarter_bounds(timezone.localdate())
        date_from = _parse_date(options["date_from"], "--from") or first
        date_to = _parse_date(options["date_to"], "--to") or last
        if date_from > date_to:
            raise CommandError(f"--from（{date_from}）不能晚于 --to（{date_to}）")
        output = Path(options["output"])
        fmt = options["fmt"] or ("xlsx" if output.suffix.lower() == ".xlsx" else "csv")
        count = certificates_export(date_from=date_from, date_to=date_to, path=output, fmt=fmt)
        self.stdout.write(
            f"已导出 {count} 条证书记录（发证日期 {date_from} 至 {date_to}）：{output}"
        )
