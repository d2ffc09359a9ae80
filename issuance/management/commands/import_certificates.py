"""`python manage.py import_certificates --source NAME --file PATH [--actor USERNAME]`:
mark held certificates found in another department's list as verified in the registry
(issuance.exchange.registry_import). All-or-nothing."""

from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from issuance.exchange import registry_import


class Command(BaseCommand):
    help = "Import another department's certificate list and verify matching held certificates."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--source", required=True, help="the department the list came from")
        parser.add_argument("--file", required=True, help="CSV (UTF-8) or XLSX")
        parser.add_argument(
            "--actor", help="username recorded as the importer (default: the first superuser)"
        )

    def handle(self, *args, **options):
        users = get_user_model().objects
        if options["actor"]:
            actor = users.filter(username=options["actor"]).first()
            if actor is None:
                raise CommandError(f"用户「{options['actor']}」不存在")
        else:
            actor = users.filter(is_superuser=True, is_active=True).order_by("pk").first()
            if actor is None:
                raise CommandError("没有超级用户，请用 --actor 指定导入人")
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(f"文件不存在：{path}")
        try:
            record = registry_import(actor=actor, file=path, source=options["source"])
        except ValidationError as exc:
            raise CommandError("导入失败，未写入任何数据：\n" + "\n".join(exc.messages)) from None
        except PermissionDenied as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"已导入 {record.rows} 行，匹配已持证书 {record.matched} 本（导入 #{record.pk}）"
        )
