"""Build a realistic joint evaluation and drive it through every stage with the real
services: registration and eligibility review (cases), exams (sessions, check-in,
double marking, quality review, approval), then issuance (both certificates approved
and issued by their own issuers, signed PDFs rendered)."""

import json
import sys
import time

from django.core.management.base import BaseCommand, CommandParser

from cases import demo as cases_demo
from cases.models import Case
from exams import demo as exams_demo
from issuance import demo as issuance_demo


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

        def issued(done: int) -> None:
            self.stderr.write(f"\r发证 {done}", ending="")

        issuance = issuance_demo.build(case_ids=result.case_ids, progress=issued)
        self.stderr.write("")
        seconds = round(time.monotonic() - started, 2)
        cases = cases_demo.case_counts(result.case_ids)
        self.stdout.write(f"plans: {len(result.plans)}, candidates: {result.candidates}")
        self.stdout.write(
            f"sessions: {len(exams.sessions)}, arbitrated marks: {exams.arbitrated}, "
            f"warnings reviewed: {exams.warnings}"
        )
        for status, count in cases.items():
            self.stdout.write(f"  cases {status:<10} {count}")
        certificates = issuance_demo.certificate_counts(result.case_ids)
        pdfs = issuance_demo.pdf_count(result.case_ids)
        self.stdout.write(
            f"issuers: {len(issuance.issuers)}, certificates issued: {issuance.issued}"
        )
        for status, count in certificates.items():
            self.stdout.write(f"  certificates {status:<10} {count}")
        self.stdout.write(f"  signed PDFs {pdfs}")
        self.stdout.write(f"  took {seconds} s")
        if options["json"]:
            summary = {
                "candidates": result.candidates,
                "cases": cases,
                "certificates": certificates,
                "pdfs": pdfs,
                "seconds": seconds,
            }
            self.stdout.write(json.dumps(summary, ensure_ascii=False))
