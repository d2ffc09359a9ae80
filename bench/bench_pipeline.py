"""The whole pipeline, registration to signed certificate PDFs: `manage.py demo` for
CANDIDATES candidates (env BENCH_PIPELINE_CANDIDATES overrides; BENCH_PIPELINE_GROUP
sets the demo's --group, the candidates registered before their sessions run), wall
time per stage and candidates per minute.

The demo drives the real services (bulk registration and the review queue's batch
actions, allocation, the check-in desk's list, score-grid batches, quality review,
approval, issuance batches) exactly as `python manage.py demo --candidates N` does.
Celery is eager here (the benchmark's throwaway database is not one workers could
reach), so the PDFs are rendered in this one process, inside the issuing commits; the
demo reports that time as its own stage. With two workers (issue 5's setup) rendering
runs on both cores while the officers go on issuing.

Baseline: issue 5's target, 10,000 candidates in 10 minutes, as a rate: 1,000
candidates per minute. The ratio is the measured candidates per minute over that rate
(above 1 meets the target's pace at this size).
"""

import io
import json
import os
import tempfile
from pathlib import Path

CANDIDATES = 1_000
TARGET_CANDIDATES = 10_000
TARGET_MINUTES = 10
SEED = 2026
LINE = (
    "pipeline: {candidates:,} candidates in {seconds:.0f} s = {figure:,.0f} candidates/min, "
    "baseline {baseline:,.0f}/min (target {target:,} in {minutes} min), ratio {ratio:.2f}; "
    "stages s: {stages}"
)


def run() -> dict:
    from django.core.management import call_command
    from django.test import override_settings

    candidates = int(os.environ.get("BENCH_PIPELINE_CANDIDATES") or CANDIDATES)
    group = os.environ.get("BENCH_PIPELINE_GROUP")
    out = io.StringIO()
    with (
        tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp,
        override_settings(MEDIA_ROOT=Path(tmp) / "media", SIGNING_KEYS_DIR=Path(tmp) / "keys"),
    ):
        load_before = os.getloadavg()[0]
        call_command(
            "demo",
            "--candidates",
            str(candidates),
            "--seed",
            str(SEED),
            "--json",
            *(["--group", group] if group else []),
            stdout=out,
            stderr=io.StringIO(),
        )
        load_after = os.getloadavg()[0]
    summary = json.loads(out.getvalue().strip().splitlines()[-1])
    assert summary["candidates"] == candidates, summary
    issued = summary["certificates"].get("issued", 0)
    assert summary["pdfs"] == issued, summary

    seconds = summary["seconds"]
    stages = summary["stages"]
    figure = candidates / seconds * 60
    baseline = TARGET_CANDIDATES / TARGET_MINUTES
    ratio = figure / baseline
    return {
        "name": "pipeline",
        "figure": round(figure, 1),
        "unit": "candidates/min",
        "baseline": baseline,
        "baseline_label": (
            f"target {TARGET_CANDIDATES:,} candidates in {TARGET_MINUTES} min as a rate"
        ),
        "ratio": round(ratio, 2),
        "candidates": candidates,
        "seconds": seconds,
        "stages": stages,
        "stage_candidates_per_minute": {
            name: round(candidates / spent * 60) if spent else None
            for name, spent in stages.items()
        },
        "certificates_issued": issued,
        "pdfs": summary["pdfs"],
        "cases": summary["cases"],
        "celery": "eager: PDFs rendered in the benchmark process",
        "load_average": [round(load_before, 2), round(load_after, 2)],
        "line": LINE.format(
            candidates=candidates,
            seconds=seconds,
            figure=figure,
            baseline=baseline,
            target=TARGET_CANDIDATES,
            minutes=TARGET_MINUTES,
            ratio=ratio,
            stages=", ".join(f"{name} {spent:.1f}" for name, spent in stages.items()),
        ),
    }


if __name__ == "__main__":
    from bench import _support

    _support.django_setup()
    with _support.test_database():
        outcome = run()
        _support.write_result(outcome)
    _support.update_readme()
    print(outcome["line"])
