"""综合评审 (comprehensive review) as an exam component.

The skill-level rule (SkillCertificateRule.review_required_levels, "2,1" since 0002)
says levels 2 (技师) and 1 (高级技师) need a 综合评审 besides theory and practical
(《职业技能等级认定工作规程》). It is marked out of 100 like the other exam components,
so plans for those levels carry it as an ordinary scored component (cases.plans).

The code `review` is an interface other tools rely on: never rename it.
"""

from django.db import migrations

CODE = "review"


def load(apps, schema_editor):
    Component = apps.get_model("catalog", "Component")
    Component.objects.get_or_create(
        code=CODE, defaults={"name": "综合评审", "kind": "exam", "max_score": 100}
    )


def unload(apps, schema_editor):
    # PROTECT on PlanComponent/PassMark refuses this while any plan still uses it,
    # which is the right answer: those plans' results depend on it.
    apps.get_model("catalog", "Component").objects.filter(code=CODE).delete()


class Migration(migrations.Migration):
    dependencies = [("catalog", "0002_reference_data")]

    operations = [migrations.RunPython(load, unload)]
