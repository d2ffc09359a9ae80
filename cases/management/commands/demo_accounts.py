from django.core.management.base import BaseCommand

from cases.demo import ensure_accounts


class Command(BaseCommand):
    help = "Create the demo accounts if missing and print them (development only)."

    def handle(self, *args, **options):
        rows = ensure_accounts()
        self.stdout.write("\n演示账号 / demo accounts (http://127.0.0.1:8000/):")
        for username, password, label in rows:
            self.stdout.write(f"  {username:<12} {password:<12} {label}")
        self.stdout.write("")
