"""Registration to eligibility, driven in chromium against a live server."""

import io
import re
from datetime import timedelta

import pytest
from django.utils import timezone
from PIL import Image
from playwright.sync_api import Page, expect

from audit.models import AuditEvent
from cases import services
from cases.models import Case, CaseStatus
from tests.cases.factories import PlanFactory, UserFactory, make_id_number

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True, serialized_rollback=True)]
PASSWORD = "pass-Word-123"


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (60, 80), (200, 220, 240)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def site(live_server, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    UserFactory(username="coord", roles=["coordinator"])
    plan = PlanFactory(
        name="焊工联合评价（熔化焊接与热切割作业）",
        exam_date=timezone.localdate() + timedelta(days=60),
        require_photo=True,
    )
    return live_server.url, plan


def login(page: Page, url: str) -> None:
    page.goto(f"{url}/accounts/login/")
    page.get_by_label("用户名").fill("coord")
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    expect(page.get_by_role("heading", name="工作台")).to_be_visible()


def test_register_verify_submit_and_approve(page: Page, site):
    url, plan = site
    id_number = make_id_number()
    login(page, url)

    # Register the candidate with a photo and welding work years.
    page.get_by_role("link", name="考生", exact=True).click()
    page.get_by_role("link", name="登记考生").click()
    page.locator("#id_id_number").fill(id_number)
    page.locator("#id_name").fill("周焊工")
    page.locator("#id_phone").fill("13812345678")
    page.locator("#id_education").select_option("senior")
    page.locator("#id_years_6_18_02_04").fill("5")
    page.locator("#id_photo").set_input_files(
        files=[{"name": "photo.png", "mimeType": "image/png", "buffer": png_bytes()}]
    )
    page.get_by_role("button", name="保存").click()
    expect(page.get_by_text("考生已登记")).to_be_visible()
    masked = id_number[:3] + "*" * 11 + id_number[-4:]
    expect(page.get_by_test_id("id-number")).to_have_text(masked)

    # Record a held SAMR welding certificate (row 7 towards MEM-WELD-FC) and verify it.
    page.get_by_text("登记已持证书", exact=True).click()
    page.locator("#id_held_qualification_type").select_option(label="特种设备作业人员证 · 焊接操作")
    page.locator("#id_held_number").fill("TS20240315")
    page.locator("#id_held_issuer_name").fill("山西省市场监督管理局")
    page.locator("#id_held_issue_date").fill("2024-03-15")
    page.get_by_role("button", name="登记证书").click()
    expect(page.get_by_text("已持证书已登记")).to_be_visible()
    row = page.locator("tr[data-held='SAMR-WELD']")
    expect(row).to_contain_text("未核验")
    row.locator("select").select_option("registry")
    row.get_by_role("button", name="记录核验结果").click()
    expect(page.get_by_text("核验结果已记录")).to_be_visible()
    expect(page.locator("tr[data-held='SAMR-WELD']")).to_contain_text("已在证书库核验")

    # The preview already shows what the plan will exempt.
    expect(page.locator("#preview")).to_contain_text("理论考试、安全培训")

    # Apply to the plan, submit, approve.
    page.locator("#id_case_plan").select_option(label=plan.name)
    page.get_by_role("button", name="报名", exact=True).click()
    expect(page.get_by_text("已创建报名（草稿）")).to_be_visible()
    expect(page.locator(".page-head .badge")).to_have_text("草稿")
    expect(page.locator("#preview")).to_contain_text("资料齐全，可以提交审核。")
    page.get_by_role("button", name="提交审核").click()
    expect(page.locator(".page-head .badge")).to_have_text("已提交")
    page.get_by_role("button", name="审核通过").click()

    expect(page.locator(".page-head .badge")).to_have_text("资格审核通过")
    exemptions = page.locator("#exemptions table tbody tr")
    expect(exemptions).to_have_count(2)
    expect(exemptions.nth(0)).to_contain_text("安全培训")
    expect(exemptions.nth(1)).to_contain_text("理论考试")
    for i in range(2):
        expect(exemptions.nth(i)).to_contain_text("序号7")
        expect(exemptions.nth(i)).to_contain_text("TS20240315")
    expect(page.locator("#exemptions")).to_contain_text(re.compile(r"焊工 比照 4 级"))
    expect(page.locator("#history")).to_contain_text("审核通过")

    case = Case.objects.get()
    assert case.status == CaseStatus.ELIGIBLE
    assert AuditEvent.objects.filter(action="case.approve", object_id=str(case.pk)).count() == 1


def test_revealing_the_full_id_number_is_audited(page: Page, site):
    url, _plan = site
    coord = UserFactory(username="coord")
    candidate = services.candidate_create(
        actor=coord,
        id_number=make_id_number(),
        name="吴电工",
        phone="13900001111",
        education="college",
    )
    login(page, url)
    page.goto(f"{url}/candidates/{candidate.pk}/")
    expect(page.get_by_test_id("id-number")).to_have_text(candidate.masked_id_number)
    page.get_by_role("button", name="显示完整身份证号").click()
    expect(page.get_by_test_id("id-number")).to_have_text(candidate.id_number)
    event = AuditEvent.objects.get(action="candidate.reveal_id_number")
    assert (event.object_id, event.actor_username) == (str(candidate.pk), "coord")
