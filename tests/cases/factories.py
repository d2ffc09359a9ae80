"""Factories for the cases app. States are reached through services, never by
assigning `status`."""

import itertools
from datetime import date

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from stdnum.cn import ric

from cases import plans, services
from cases.models import EvaluationPlan
from catalog.models import QualificationType

_serial = itertools.count(1)


def make_id_number(birth: date = date(1990, 5, 17), sex: str = "M", region: str = "110105") -> str:
    """A valid resident ID number (checksum by python-stdnum) with a fresh sequence."""
    seq = next(_serial) % 500
    order = seq * 2 + (1 if sex == "M" else 0)  # odd 17th digit: male
    first17 = f"{region}{birth:%Y%m%d}{order:03d}"
    return first17 + ric.calc_check_digit(first17 + "0")  # stdnum expects a placeholder digit


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("pass-Word-123")

    @factory.post_generation
    def roles(self, create, extracted, **kwargs):
        for name in extracted or []:
            self.groups.add(Group.objects.get(name=name))


def coordinator(username="coord"):
    return UserFactory(username=username, roles=["coordinator"])


class PlanFactory(factory.django.DjangoModelFactory):
    """An open plan built by the plan services (catalog components and pass rules)."""

    class Meta:
        model = EvaluationPlan
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"2026年焊工联合评价 第{n}期")
    qualification_type = factory.LazyFunction(
        lambda: QualificationType.objects.get(code="MEM-WELD-FC")
    )
    occupation = factory.LazyAttribute(lambda o: o.qualification_type.occupation)
    level = 5
    province = "14"
    exam_date = date(2026, 9, 15)
    require_photo = False

    @classmethod
    def _create(cls, model_class, *args, double_marked=(), open_plan=True, **kwargs):
        actor = UserFactory(username="plan-coordinator", roles=["coordinator"])
        plan = plans.plan_create(actor=actor, double_marked=double_marked, **kwargs)
        return plans.plan_open(actor=actor, plan=plan) if open_plan else plan


def register(actor, *, birth=date(1990, 5, 17), sex="M", name="张三", work_years=None, **kwargs):
    """A candidate registered through the service."""
    return services.candidate_create(
        actor=actor,
        id_number=make_id_number(birth, sex),
        name=name,
        phone="13800138000",
        education="senior",
        work_years=work_years,
        **kwargs,
    )


def hold(
    actor, candidate, code="SAMR-WELD", *, issue_date=date(2024, 3, 1), verified=True, **kwargs
):
    """A held certificate with a number valid for its type, optionally verified."""
    qtype = QualificationType.objects.get(code=code)
    numbers = {
        "MEM": "T" + candidate.id_number,
        "MOHURD-ELEC": f"晋A01{issue_date.year}{next(_serial):06d}",
        "MOHURD-WELD": f"晋A02{issue_date.year}{next(_serial):06d}",
        "SAMR-WELD": f"TS{next(_serial):08d}",
    }
    number = numbers.get(code) or numbers[code.split("-")[0]]
    held = services.held_certificate_create(
        actor=actor,
        candidate=candidate,
        qualification_type=qtype,
        number=number,
        issuer_name="山西省市场监督管理局",
        issue_date=issue_date,
        **kwargs,
    )
    if verified:
        held = services.held_certificate_verify(actor=actor, held=held, verification="registry")
    return held
