"""Done-when of the exams stage: a session of 60 candidates is planned, allocated,
checked in, double-marked with some arbitration, reviewed with warnings and approved,
through the API (registration and eligibility, covered by tests/cases, are done with
their services here)."""

from datetime import date
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from cases import services as case_services
from cases.models import Case, CaseStatus
from catalog.models import Occupation, QualificationType
from exams.models import CertificateResult, Mark

from ..cases.factories import PlanFactory, UserFactory, coordinator, hold, register

pytestmark = pytest.mark.django_db
N = 60
ABSENT = {7, 23, 41}  # candidate indexes that do not come
DISAGREE = {5, 17, 33}  # practical marks 12 points apart: the chief grader arbitrates


def client(user) -> APIClient:
    c = APIClient()
    c.force_authenticate(user)
    return c


def ok(response, status=200):
    assert response.status_code == status, response.content.decode()[:500]
    return response.json()


def theory_score(i: int) -> Decimal:
    return Decimal(55 + (i * 7) % 45)  # 55..99: some below 60 and 80


def practical_score(i: int) -> Decimal:
    return Decimal(62 + (i * 11) % 38)  # 62..99


def test_a_60_candidate_session_through_the_api(django_capture_on_commit_callbacks):
    coord = coordinator()
    users = {
        name: UserFactory(username=name, roles=[role])
        for name, role in [
            ("theory_grader", "grader"),
            ("first", "grader"),
            ("second", "grader"),
            ("chief", "grader"),
            ("supervisor", "reviewer"),
        ]
    }
    plan = PlanFactory(
        qualification_type=QualificationType.objects.get(code="MEM-ELEC-LV"),
        occupation=Occupation.objects.get(code="6-31-01-03"),
        exam_date=date(2026, 9, 15),
        double_marked=("practical",),
    )
    cases = []
    for i in range(N):
        candidate = register(coord, name=f"考生{i:02d}")
        if i % 4 == 0:  # row 3: MOHURD-ELEC holders are exempt from training
            hold(coord, candidate, "MOHURD-ELEC", issue_date=date(2025, 3, 1))
        case = case_services.case_create(actor=coord, candidate=candidate, plan=plan)
        case = case_services.case_submit(actor=coord, case=case, on=date(2026, 6, 1))
        cases.append(case_services.case_approve(actor=coord, case=case))

    api = client(coord)
    venue = ok(api.post("/api/v1/venues/", {"name": "太原技师学院考点"}), 201)
    room = ok(
        api.post("/api/v1/rooms/", {"venue": venue["id"], "name": "第1考场", "capacity": 60}), 201
    )
    session = ok(
        api.post(
            "/api/v1/sessions/",
            {
                "plan": plan.pk,
                "room": room["id"],
                # The desk (API) stamps the current time and admits candidates on the
                # session's date only: dated today, starting at midnight, so that every
                # check-in is after the start and the late check-in warning fires
                # whatever the hour the test runs.
                "date": timezone.localdate().isoformat(),
                "start_time": "00:00",
                "end_time": "02:30",
                "capacity": 60,
                "components": ["theory", "practical"],
            },
            format="json",
        ),
        201,
    )
    sid = session["id"]
    ok(api.post(f"/api/v1/sessions/{sid}/open/"))
    for name, role, component in [
        ("theory_grader", "grader", "theory"),
        ("first", "grader", "practical"),
        ("second", "grader", "practical"),
        ("chief", "chief_grader", "practical"),
    ]:
        ok(
            api.post(
                f"/api/v1/sessions/{sid}/assign_staff/",
                {"user": users[name].pk, "role": role, "component": component},
            ),
            201,
        )
    allocation = ok(api.post(f"/api/v1/sessions/{sid}/allocate/"))
    assert len(allocation["allocated"]) == N
    assert allocation["unallocated"] == []
    pdf = api.get(f"/api/v1/sessions/{sid}/tickets.pdf/")
    assert pdf.status_code == 200
    assert pdf["Content-Type"] == "application/pdf"

    bookings = {
        b["case"]: b
        for b in ok(api.get("/api/v1/bookings/", {"session": sid, "page_size": 100}))["results"]
    }
    ok(api.post(f"/api/v1/sessions/{sid}/freeze_roster/"))
    ok(api.post(f"/api/v1/sessions/{sid}/start/"))
    for i, case in enumerate(cases):
        if i not in ABSENT:
            ok(
                api.post(
                    f"/api/v1/sessions/{sid}/check_in/",
                    {"code": bookings[case.pk]["ticket_number"]},
                )
            )
    for i, case in enumerate(cases):
        if i % 4 != 0:
            ok(api.post(f"/api/v1/results/{case.pk}/training-complete/", {}), 201)
    ok(api.post(f"/api/v1/sessions/{sid}/close/"))

    sat = [(i, case) for i, case in enumerate(cases) if i not in ABSENT]

    def enter(user, component, slot, score_of, which=sat):
        marks = [
            {
                "ticket_number": bookings[case.pk]["ticket_number"],
                "score": str(score_of(i)),
                "slot": slot,
            }
            for i, case in which
        ]
        ok(
            client(user).post(
                "/api/v1/marking/marks/",
                {"session": sid, "component": component, "marks": marks},
                format="json",
            ),
            201,
        )

    enter(users["theory_grader"], "theory", "single", theory_score)
    enter(users["first"], "practical", "first", practical_score)
    enter(
        users["second"],
        "practical",
        "second",
        lambda i: practical_score(i) - (12 if i in DISAGREE else 1),
    )
    arbitrated = [(i, case) for i, case in sat if i in DISAGREE]
    enter(users["chief"], "practical", "arbitration", lambda i: practical_score(i) - 3, arbitrated)
    assert Mark.objects.filter(slot="arbitration").count() == 3

    # The second grader never sees the first grader's marks.
    sheet = ok(
        client(users["second"]).get(
            "/api/v1/marking/sheet/", {"session": sid, "component": "practical"}
        )
    )
    rows = sheet if isinstance(sheet, list) else sheet.get("rows", sheet.get("results", []))
    assert {row["slot"] for row in rows} <= {"second", None}

    ok(api.post("/api/v1/results/finalise/", {"session": sid}))
    with django_capture_on_commit_callbacks(execute=True):  # sends the warnings
        ok(api.post(f"/api/v1/review/sessions/{sid}/submit_for_review/"))

    supervisor = client(users["supervisor"])
    warnings = ok(supervisor.get(f"/api/v1/review/sessions/{sid}/warnings/"))
    warnings = warnings if isinstance(warnings, list) else warnings["results"]
    assert warnings, "a session checked in after its start time must raise a warning"
    refused = supervisor.post(f"/api/v1/review/sessions/{sid}/approve/")
    assert refused.status_code == 409
    for n, warning in enumerate(warnings):
        confirmed = n % 2 == 0
        ok(
            supervisor.post(
                f"/api/v1/review/warnings/{warning['id']}/review/",
                {"confirmed": confirmed, "note": "已核查监控与签到记录"},
                format="json",
            )
        )
        if confirmed:
            ok(
                api.post(
                    f"/api/v1/review/warnings/{warning['id']}/answer/",
                    {"answer": "考点签到设备故障，已补录并说明"},
                    format="json",
                )
            )
        ok(supervisor.post(f"/api/v1/review/warnings/{warning['id']}/close/"))
    # A grader may not approve, and marks are locked in review.
    assert client(users["chief"]).post(f"/api/v1/review/sessions/{sid}/approve/").status_code == 403
    ok(
        supervisor.post(
            f"/api/v1/review/sessions/{sid}/approve/", {"notes": "同意发布"}, format="json"
        )
    )

    states = dict(Case.objects.filter(pk__in=[c.pk for c in cases]).values_list("pk", "status"))
    assert [states[cases[i].pk] for i in sorted(ABSENT)] == [CaseStatus.ABSENT] * 3
    published = [states[c.pk] for _, c in sat]
    assert set(published) <= {CaseStatus.PASSED, CaseStatus.FAILED}
    for i, case in sat:
        earned = set(
            CertificateResult.objects.filter(case=case, earned=True).values_list("kind", flat=True)
        )
        skill = theory_score(i) >= 60  # practical always >= 60 here
        # Final practical: the mean of two marks 1 apart, or the arbitrated mark.
        final_practical = practical_score(i) - (3 if i in DISAGREE else Decimal("0.5"))
        qualification = theory_score(i) >= 80 and final_practical >= 80
        assert ("skill" in earned) is skill, (i, earned)
        assert ("qualification" in earned) is qualification, (i, earned)
        assert states[case.pk] == (CaseStatus.PASSED if earned else CaseStatus.FAILED)
    call_command("audit_verify")
