"""Build a realistic joint evaluation and drive it through every stage built so far,
with the real services. Stages: registration and eligibility review (cases), then
exams (sessions, check-in, double marking, quality review, approval). The issuance
stage joins here when it is built."""

import json
import sys
import time

from django.core.management.base import BaseCommand, CommandParser

from cases import demo as cases_demo
from cases.models import Case
from exams import demo as exams_demo


class Command(BaseCommand):
    help = "Build a demo joint evaluation and drive every case through the workflow."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--candidates", type=int, default=30)
        parser.add_argument("--seed", type=int, default=2026)
        parser.add_argument("--json", action="store_true", help="end with a JSON summary line")
        parser.add_argument(
            "--skip-if-loaded",
            action="store_true",
            help="do nothing when cases already exist (used by make run)",
        )

    def handle(self, *args, **options):
        if options["skip_if_loaded"] and Case.objects.exists():
            self.stdout.write("demo data already loaded; skipping")
            return
        started = time.monotonic()
        total = options["candidates"]

        def progress(done: int, of: int) -> None:
            if sys.stderr.isatty() or done == of or done % 100 == 0:
                self.stderr.write(f"\r登记与资格审核 {done}/{of}", ending="")

        result = cases_demo.build(candidates=total, seed=options["seed"], progress=progress)
        self.stderr.write("")
        exams = exams_demo.build(plans=result.plans, seed=options["seed"])
        seconds = round(time.monotonic() - started, 2)
        cases = cases_demo.case_counts(result.case_ids)
        self.stdout.write(f"plans: {len(result.plans)}, candidates: {result.candidates}")
        self.stdout.write(
            f"sessions: {len(exams.sessions)}, arbitrated marks: {exams.arbitrated}, "
            f"warnings reviewed: {exams.warnings}"
        )
        for status, count in cases.items():
            self.stdout.write(f"  cases {status:<10} {count}")
        self.stdout.write(f"  took {seconds} s")
        if options["json"]:
            summary = {
                "candidates": result.candidates,
                "cases": cases,
                "certificates": {},
                "pdfs": 0,
                "seconds": seconds,
            }
            self.stdout.write(json.dumps(summary, ensure_ascii=False))
