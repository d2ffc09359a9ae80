"""Issuance services: certificates opened for passed cases, approved and issued
independently by each issuer's officers, numbers per DESIGN.md, refusal, revocation, and
the case completing exactly once."""

import re
from datetime import date

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from audit.exceptions import StateConflict
from audit.models import AuditEvent
from audit.selectors import audit_chain_verify
from cases.models import CaseStatus
from catalog.models import QualificationType
from issuance import services
from issuance.models import (
    Certificate,
    CertificateStatus,
    FilingStatus,
    NumberSeries,
    PlanIssuers,
    SerialCounter,
)
from issuance.numbering import certificate_number
from tests.cases.factories import PlanFactory, UserFactory

from .factories import BOTH, NEITHER, SKILL_ONLY, department, institution, passed_cases

pytestmark = pytest.mark.django_db

ON = date(2026, 11, 20)


def status(obj):
    return type(obj).objects.get(pk=obj.pk).status


def opened(cases):
    services.certificates_open(case_ids=[c.pk for c in cases])
    return {
        (c.case_id, c.kind): c
        for c in Certificate.objects.filter(case__in=cases).select_related("issuer")
    }


def approve_issue(actor, certificate, on=ON):
    services.certificate_approve(actor=actor, certificate=certificate)
    return services.certificate_issue(actor=actor, certificate=certificate, on=on)


# Opening -------------------------------------------------------------------------------


def test_a_passed_case_owes_one_certificate_per_certificate_it_earned(mem, inst):
    both, skill_only, failed = passed_cases((BOTH, SKILL_ONLY, NEITHER))
    certificates = opened([both, skill_only, failed])
    assert sorted((case_id, kind) for case_id, kind in certificates) == [
        (both.pk, "qualification"),
        (both.pk, "skill"),
        (skill_only.pk, "skill"),
    ]
    qualification = certificates[(both.pk, "qualification")]
    assert qualification.issuer == mem
    assert qualification.qualification_type.code == "MEM-WELD-FC"
    assert qualification.level is None
    skill = certificates[(both.pk, "skill")]
    assert (skill.issuer, skill.level, skill.occupation.code) == (inst, 5, "6-18-02-04")
    assert skill.holder_name == both.candidate.name
    assert {c.status for c in certificates.values()} == {CertificateStatus.PENDING}


def test_opening_twice_creates_nothing_more(mem, inst):
    cases = passed_cases((BOTH,))
    assert len(services.certificates_open(case_ids=[cases[0].pk])) == 2
    assert services.certificates_open(case_ids=[cases[0].pk]) == []
    assert Certificate.objects.count() == 2
    assert AuditEvent.objects.filter(action="certificate.open").count() == 2


def test_a_kind_without_an_issuer_waits_for_the_sweep(mem, mem_officer):
    (case,) = passed_cases((BOTH,))
    (qualification,) = services.certificates_open(case_ids=[case.pk])
    assert qualification.kind == "qualification"
    assert services.passed_cases_without_certificates() == [case.pk]
    # The skill-level certificate is still owed: issuing the other does not complete.
    approve_issue(mem_officer, qualification)
    assert status(case) == CaseStatus.PASSED
    institution()
    assert [c.kind for c in services.certificates_open(case_ids=[case.pk])] == ["skill"]
    assert services.passed_cases_without_certificates() == []


def test_the_plan_may_name_its_issuers(mem, inst):
    other = institution(code="inst-y0001", institution_code="0001", institution_type="Y")
    plan = PlanFactory()
    PlanIssuers.objects.create(plan=plan, qualification_issuer=mem, skill_issuer=other)
    (case,) = passed_cases((SKILL_ONLY,), plan=plan)
    assert [c.issuer for c in services.certificates_open(case_ids=[case.pk])] == [other]


# Approve and issue ---------------------------------------------------------------------


def test_each_issuer_approves_and_issues_its_own_certificate(mem_officer, inst_officer):
    (case,) = passed_cases((BOTH,))
    certificates = opened([case])
    qualification = approve_issue(mem_officer, certificates[(case.pk, "qualification")])
    assert status(case) == CaseStatus.PASSED  # the skill certificate is still owed
    skill = approve_issue(inst_officer, certificates[(case.pk, "skill")])
    assert qualification.number == "T" + case.candidate.id_number
    assert (qualification.issued_on, qualification.valid_until) == (ON, date(2032, 11, 19))
    assert qualification.review_due == date(2029, 11, 20)
    assert skill.number == "S123414000001265000001"
    assert skill.valid_until is None
    assert len(skill.verification_code) >= 16  # 96 random bits, URL-safe
    assert status(case) == CaseStatus.COMPLETED
    assert AuditEvent.objects.filter(action="case.complete", object_id=str(case.pk)).count() == 1
    assert [r for r in audit_chain_verify() if not isinstance(r, int)] == []


def test_an_officer_may_not_act_on_another_issuers_certificate(mem_officer, inst_officer):
    (case,) = passed_cases((BOTH,))
    skill = opened([case])[(case.pk, "skill")]
    with pytest.raises(PermissionDenied, match="只能办理本机构的证书"):
        services.certificate_approve(actor=mem_officer, certificate=skill)
    assert status(skill) == CertificateStatus.PENDING


def test_a_coordinator_may_not_approve(mem_officer, inst_officer):
    (case,) = passed_cases((SKILL_ONLY,))
    skill = opened([case])[(case.pk, "skill")]
    with pytest.raises(PermissionDenied):
        services.certificate_approve(
            actor=UserFactory(username="c2", roles=["coordinator"]), certificate=skill
        )


def test_issuing_before_approval_is_a_conflict(inst_officer):
    (case,) = passed_cases((SKILL_ONLY,))
    skill = opened([case])[(case.pk, "skill")]
    with pytest.raises(StateConflict, match="不能变为「已发证」"):
        services.certificate_issue(actor=inst_officer, certificate=skill)


def test_issuing_twice_takes_no_second_number(inst_officer):
    (case,) = passed_cases((SKILL_ONLY,))
    skill = approve_issue(inst_officer, opened([case])[(case.pk, "skill")])
    with pytest.raises(StateConflict):
        services.certificate_issue(actor=inst_officer, certificate=skill)
    assert Certificate.objects.get(pk=skill.pk).number == skill.number
    assert SerialCounter.objects.get().last == 1


def test_a_lapsed_filing_cannot_issue(inst, inst_officer):
    (case,) = passed_cases((SKILL_ONLY,))
    skill = opened([case])[(case.pk, "skill")]
    services.certificate_approve(actor=inst_officer, certificate=skill)
    with pytest.raises(ValidationError) as error:
        services.certificate_issue(actor=inst_officer, certificate=skill, on=date(2031, 1, 5))
    assert error.value.message_dict["issuer"] == [
        "山西省技能人才评价中心备案有效期为 2025-01-01 至 2030-12-31，"
        "2031-01-05 不在有效期内，不能发证"
    ]
    assert status(skill) == CertificateStatus.APPROVED
    assert SerialCounter.objects.count() == 0


def test_a_suspended_filing_cannot_issue(inst, inst_officer):
    (case,) = passed_cases((SKILL_ONLY,))
    skill = opened([case])[(case.pk, "skill")]
    services.certificate_approve(actor=inst_officer, certificate=skill)
    inst.filing_status = FilingStatus.SUSPENDED
    inst.save()
    with pytest.raises(ValidationError, match="备案状态为「暂停」"):
        services.certificate_issue(actor=inst_officer, certificate=skill, on=ON)


def test_an_institution_outside_its_scope_cannot_issue(inst, inst_officer):
    (case,) = passed_cases((SKILL_ONLY,))
    skill = opened([case])[(case.pk, "skill")]
    services.certificate_approve(actor=inst_officer, certificate=skill)
    inst.scopes.filter(occupation__code="6-18-02-04", level=5).delete()
    with pytest.raises(ValidationError, match="备案范围不含该职业（工种）的5级"):
        services.certificate_issue(actor=inst_officer, certificate=skill, on=ON)


def test_serials_run_on_without_gaps(inst_officer):
    cases = passed_cases((SKILL_ONLY, SKILL_ONLY, SKILL_ONLY))
    certificates = list(opened(cases).values())
    services.certificates_approve(actor=inst_officer, certificates=certificates)
    issued = services.certificates_issue(actor=inst_officer, certificates=certificates, on=ON)
    assert [c.number[-6:] for c in issued] == ["000001", "000002", "000003"]


def test_a_batch_is_all_or_nothing(mem_officer, inst_officer):
    (case,) = passed_cases((BOTH,))
    certificates = opened([case])
    with pytest.raises(PermissionDenied, match="只能办理本机构的证书"):
        services.certificates_approve(actor=inst_officer, certificates=list(certificates.values()))
    assert {status(c) for c in certificates.values()} == {CertificateStatus.PENDING}


# Numbers of the other types ------------------------------------------------------------


def _unsaved(issuer, code, **kwargs):
    return Certificate(
        kind="qualification",
        issuer=issuer,
        qualification_type=QualificationType.objects.get(code=code),
        holder_id_number="11010519900517003X",
        **kwargs,
    )


def test_mohurd_numbers_follow_the_provincial_format():
    issuer = department(code="mohurd-14a", dept="mohurd", city_letter="A", name="太原市住建局")
    first = certificate_number(_unsaved(issuer, "MOHURD-ELEC"), ON)
    second = certificate_number(_unsaved(issuer, "MOHURD-WELD"), ON)
    assert (first, second) == ("晋A012026000001", "晋A022026000001")
    assert len(first) == 14


def test_a_mohurd_type_other_than_electrician_needs_its_category():
    issuer = department(code="mohurd-14a", dept="mohurd", city_letter="A", name="太原市住建局")
    NumberSeries.objects.filter(issuer=issuer, type_code="MOHURD-WELD").update(category="")
    with pytest.raises(ValidationError, match="未配置「MOHURD-WELD」的类别码"):
        certificate_number(_unsaved(issuer, "MOHURD-WELD"), ON)


def test_samr_numbers_use_the_configured_series():
    issuer = department(code="samr-14", dept="samr", name="山西省市场监督管理局")
    assert certificate_number(_unsaved(issuer, "SAMR-WELD"), ON) == "TS2026000001"


def test_a_type_without_a_series_is_refused_clearly():
    issuer = department(code="samr-14", dept="samr", name="山西省市场监督管理局")
    NumberSeries.objects.filter(issuer=issuer).delete()
    with pytest.raises(ValidationError, match="未配置「SAMR-WELD」证书的编号规则"):
        certificate_number(_unsaved(issuer, "SAMR-WELD"), ON)


def test_a_number_that_breaks_its_pattern_is_refused():
    issuer = department(code="samr-14", dept="samr", name="山西省市场监督管理局")
    NumberSeries.objects.filter(issuer=issuer).update(prefix="ts-")
    with pytest.raises(ValidationError, match="不符合该类证书的编号格式"):
        certificate_number(_unsaved(issuer, "SAMR-WELD"), ON)


def test_skill_numbers_have_22_characters_in_the_design_layout(inst):
    number = certificate_number(
        Certificate(kind="skill", issuer=inst, level=4, holder_id_number="x"), ON
    )
    assert re.fullmatch(r"S 1234 14 000001 26 4 000001".replace(" ", ""), number)


# Refuse and revoke ---------------------------------------------------------------------


def test_refusing_needs_a_reason(inst_officer):
    (case,) = passed_cases((SKILL_ONLY,))
    skill = opened([case])[(case.pk, "skill")]
    with pytest.raises(ValidationError) as error:
        services.certificate_refuse(actor=inst_officer, certificate=skill, reason=" ")
    assert error.value.message_dict == {"reason": ["请填写不予发证的理由"]}


def test_refusing_the_other_certificate_completes_the_case(mem_officer, inst_officer):
    (case,) = passed_cases((BOTH,))
    certificates = opened([case])
    approve_issue(inst_officer, certificates[(case.pk, "skill")])
    services.certificate_refuse(
        actor=mem_officer, certificate=certificates[(case.pk, "qualification")], reason="照片不符"
    )
    assert status(case) == CaseStatus.COMPLETED


def test_revoking_needs_a_reason(inst_officer):
    (case,) = passed_cases((SKILL_ONLY,))
    skill = approve_issue(inst_officer, opened([case])[(case.pk, "skill")])
    with pytest.raises(ValidationError) as error:
        services.certificate_revoke(actor=inst_officer, certificate=skill, reason="")
    assert error.value.message_dict == {"reason": ["请填写撤销理由"]}


def test_revoking_one_certificate_leaves_the_other(mem_officer, inst_officer):
    (case,) = passed_cases((BOTH,))
    certificates = opened([case])
    qualification = approve_issue(mem_officer, certificates[(case.pk, "qualification")])
    skill = approve_issue(inst_officer, certificates[(case.pk, "skill")])
    services.certificate_revoke(
        actor=mem_officer, certificate=qualification, reason="弄虚作假取得", on=date(2026, 12, 1)
    )
    revoked = Certificate.objects.get(pk=qualification.pk)
    assert (revoked.status, revoked.revoked_on, revoked.reason) == (
        CertificateStatus.REVOKED,
        date(2026, 12, 1),
        "弄虚作假取得",
    )
    assert status(skill) == CertificateStatus.ISSUED
    assert status(case) == CaseStatus.COMPLETED
    event = AuditEvent.objects.get(action="certificate.revoke")
    assert (event.reason, event.from_state, event.to_state) == ("弄虚作假取得", "issued", "revoked")


def test_approving_a_session_opens_the_certificates_after_commit(
    mem, inst, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        both, _failed = passed_cases((BOTH, NEITHER))
    assert sorted(Certificate.objects.values_list("case_id", "kind")) == [
        (both.pk, "qualification"),
        (both.pk, "skill"),
    ]


def test_the_sweep_opens_certificates_the_hook_missed(mem, inst):
    from issuance.tasks import certificates_open_sweep

    (case,) = passed_cases((SKILL_ONLY,))  # on_commit callbacks never ran here
    assert services.passed_cases_without_certificates() == [case.pk]
    assert certificates_open_sweep() == 1
    assert certificates_open_sweep() == 0


def test_a_mem_certificate_is_reissued_with_the_same_number_after_revocation(mem_officer):
    plan = PlanFactory()
    (first_case,) = passed_cases((BOTH,), plan=plan)
    first = approve_issue(mem_officer, opened([first_case])[(first_case.pk, "qualification")])
    # The same holder (by ID number) earns the type again on a later case.
    second = Certificate.objects.create(
        case=passed_cases((BOTH,))[0],
        kind="qualification",
        issuer=first.issuer,
        qualification_type=first.qualification_type,
        occupation=first.occupation,
        holder_name=first.holder_name,
        holder_id_number=first.holder_id_number,
    )
    services.certificate_approve(actor=mem_officer, certificate=second)
    with pytest.raises(ValidationError, match="持证人已持有有效的同类证书"):
        services.certificate_issue(actor=mem_officer, certificate=second, on=ON)
    services.certificate_revoke(actor=mem_officer, certificate=first, reason="注销后重新申领")
    reissued = services.certificate_issue(actor=mem_officer, certificate=second, on=ON)
    assert reissued.number == first.number
