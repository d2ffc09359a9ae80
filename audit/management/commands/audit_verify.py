from django.core.management.base import BaseCommand, CommandError

from audit.selectors import ChainBreak, audit_chain_verify


class Command(BaseCommand):
    help = (
        "Verify the whole audit hash chain. "
        "Exit 0 when intact, else 1 naming the first broken event."
    )

    def handle(self, *args, **options):
        checked = 0
        for item in audit_chain_verify():
            if isinstance(item, ChainBreak):
                ident = f" (id {item.event_id})" if item.event_id else ""
                raise CommandError(f"audit chain broken at event #{item.seq}{ident}: {item.reason}")
            checked = item
            if options["verbosity"] > 1:
                self.stderr.write(f"checked {checked} events")
        self.stdout.write(f"audit chain intact: {checked} events")
