"""Build a realistic joint evaluation and drive it through every stage with the real
services: registration and eligibility review (cases), exams (sessions, check-in,
double marking, quality review, approval), then issuance (both certificates approved
and issued by their own issuers, signed PDFs rendered).

Candidates are registered in groups (--group, 2,000 by default); each group's plans
then run their sessions, and each plan's certificates are issued as soon as its
session is approved, as issuers would, before the next plan's session runs and the next
group registers. Prints the wall time of each stage. With a
real broker (CELERY_BROKER_URL) the PDFs are rendered by the workers meanwhile; the
command then waits until every issued certificate has its PDF (or --pdf-timeout
passes), so the PDF stage is the time from the last issue until the last PDF. Without
a broker (eager Celery) each batch is rendered inside the issuing service's commit;
that time is taken out of the issuance stage and reported as the PDF stage."""

import json
import random
import sys
import time

from celery import signals
from django.core.management.base import BaseCommand, CommandParser

from cases import demo as cases_demo
from cases.models import Case
from config.celery import app as celery_app
from exams import demo as exams_demo
from issuance import demo as issuance_demo

STAGE_LABELS = {
    "registration": "登记与资格审核",
    "scheduling": "场次与编排",
    "check_in": "签到",
    "marking": "评分",
    "review": "质量审核与发布",
    "issuance": "发证（审核与签发）",
    "pdf": "证书 PDF 生成",
}
# Candidates per group (a multiple of cases.demo.BATCH keeps the data of one group).
GROUP = 2000
RENDER_TASKS = {"issuance.tasks.certificates_render", "issuance.tasks.certificate_render"}


class RenderClock:
    """Seconds spent in PDF rendering tasks run in this process (eager Celery), measured
    through Celery's task_prerun/task_postrun signals, which eager calls send too."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started: dict[str, float] = {}

    def _prerun(self, task_id=None, task=None, **kwargs) -> None:
        if task is not None and task.name in RENDER_TASKS:
            self._started[task_id] = time.perf_counter()

    def _postrun(self, task_id=None, **kwargs) -> None:
        started = self._started.pop(task_id, None)
        if started is not None:
            self.seconds += time.perf_counter() - started

    def __enter__(self) -> "RenderClock":
        signals.task_prerun.connect(self._prerun, weak=False)
        signals.task_postrun.connect(self._postrun, weak=False)
        return self

    def __exit__(self, *exc) -> None:
        signals.task_prerun.disconnect(self._prerun)
        signals.task_postrun.disconnect(self._postrun)


class Command(BaseCommand):
    help = "Build a demo joint evaluation and drive every case through the workflow."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--candidates", type=int, default=30)
        parser.add_argument("--seed", type=int, default=2026)
        parser.add_argument(
            "--group",
            type=int,
            default=GROUP,
            help=f"candidates registered before their sessions run (default {GROUP})",
        )
        parser.add_argument("--json", action="store_true", help="end with a JSON summary line")
        parser.add_argument(
            "--skip-if-loaded",
            action="store_true",
            help="do nothing when cases already exist (used by make run)",
        )
        parser.add_argument(
            "--pdf-timeout",
            type=float,
            default=1800,
            help="with a real broker, seconds to wait for the workers' PDFs (default 1800)",
        )

    def progress(self, text: str, done: int, of: int | None = None) -> None:
        if sys.stderr.isatty() or done == of or done % 100 == 0:
            self.stderr.write(f"\r{text} {done}" + (f"/{of}" if of else ""), ending="")

    def handle(self, *args, **options):
        if options["skip_if_loaded"] and Case.objects.exists():
            self.stdout.write("demo data already loaded; skipping")
            return
        started = time.monotonic()
        total = options["candidates"]
        stages = cases_demo.Stages(STAGE_LABELS)

        # Candidates are registered GROUP at a time, and each group's plans examined
        # and their certificates issued before the next group registers: with workers,
        # rendering starts after the first group's first session instead of queuing
        # every PDF behind the whole registration.
        groups = cases_demo.build_in_groups(
            candidates=total,
            seed=options["seed"],
            group=options["group"],
            progress=lambda done, of: self.progress("登记与资格审核", done, of),
        )
        result = cases_demo.DemoResult()
        issued = issuance_demo.IssuanceResult()
        exams = exams_demo.ExamsDemoResult()
        exams_rng = random.Random(options["seed"] + 1)  # noqa: S311 - demo data
        with RenderClock() as rendering:
            while True:
                with stages("registration"):
                    part = next(groups, None)
                self.stderr.write("")
                if part is None:
                    break
                result.plans = part.plans
                result.case_ids += part.case_ids
                result.candidates += part.candidates
                if not issued.issuers:  # the officers' accounts exist from the first group
                    with stages("issuance"):
                        issued.issuers = issuance_demo.ensure_issuers()
                plan_of = dict(
                    Case.objects.filter(pk__in=part.case_ids).values_list("pk", "plan_id")
                )

                def issue(plan, case_ids=part.case_ids, plan_of=plan_of) -> None:
                    with stages("issuance"):
                        done = issuance_demo.build(
                            case_ids=[pk for pk in case_ids if plan_of[pk] == plan.pk],
                            issuers=issued.issuers,
                            progress=lambda n: self.stderr.write(
                                f"\r发证 {issued.issued + n}", ending=""
                            ),
                        )
                    issued.opened += done.opened
                    issued.issued += done.issued
                    self.stderr.write("")

                examined = exams_demo.build(
                    plans=part.plans,
                    seed=options["seed"],
                    stages=stages,
                    on_approved=issue,
                    rng=exams_rng,
                    venue=exams.venue,
                )
                exams.venue = examined.venue
                exams.sessions += examined.sessions
                exams.arbitrated += examined.arbitrated
                exams.warnings += examined.warnings
        issuers = issued.issuers
        # Celery's own flag, not the setting: tests switch eager mode on at run time.
        if celery_app.conf.task_always_eager:
            # Rendered inside the issuing services' commits: count it as the PDF stage.
            stages.add("issuance", -rendering.seconds)
            stages.add("pdf", rendering.seconds)
        else:
            with stages("pdf"):
                self.wait_for_pdfs(result.case_ids, options["pdf_timeout"])

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
        self.stdout.write(f"issuers: {len(issuers)}, certificates issued: {issued.issued}")
        for status, count in certificates.items():
            self.stdout.write(f"  certificates {status:<10} {count}")
        self.stdout.write(f"  signed PDFs {pdfs}")
        self.stdout.write("stages:")
        for name, spent in stages.seconds.items():
            self.stdout.write(f"  {STAGE_LABELS.get(name, name):<12} {spent:9.2f} s")
        if not celery_app.conf.task_always_eager:
            self.stdout.write("  (PDF: 工作进程在发证期间并行生成；此处为最后一批发证后的等待时间)")
        per_minute = result.candidates / seconds * 60 if seconds else 0
        self.stdout.write(f"  took {seconds} s ({per_minute:,.0f} candidates/min)")
        if options["json"]:
            summary = {
                "candidates": result.candidates,
                "cases": cases,
                "certificates": certificates,
                "pdfs": pdfs,
                "seconds": seconds,
                "stages": {name: round(spent, 2) for name, spent in stages.seconds.items()},
            }
            self.stdout.write(json.dumps(summary, ensure_ascii=False))

    def wait_for_pdfs(self, case_ids: list[int], timeout: float) -> int:
        """Poll until every issued certificate of `case_ids` has its PDF or `timeout`
        seconds pass; return how many have one."""
        expected = issuance_demo.certificate_counts(case_ids).get("issued", 0)
        deadline = time.monotonic() + timeout
        while True:
            done = issuance_demo.pdf_count(case_ids)
            self.stderr.write(f"\r证书 PDF {done}/{expected}", ending="")
            if done >= expected or time.monotonic() >= deadline:
                break
            time.sleep(1)
        self.stderr.write("")
        if done < expected:
            self.stderr.write(f"PDF 等待超时：{expected - done} 份证书尚无 PDF")
        return done
