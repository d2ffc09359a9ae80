"""The reference catalog of the notice of 2026-01-09 (DESIGN.md, policy/notice-zh.txt).

Codes here are the interface other tools rely on: never rename them in a migration.
"""

from datetime import date

from django.db import migrations

NOTICE = date(2026, 1, 9)
PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
# Types predate the notice; their own regulations set validity and numbering.
TYPES_FROM = date(2010, 7, 1)

DEPARTMENTS = [
    ("mohrss", "人力资源社会保障部门"),
    ("mem", "应急管理部门"),
    ("mohurd", "住房城乡建设部门"),
    ("samr", "市场监管部门"),
]
OCCUPATIONS = [("6-31-01-03", "电工"), ("6-18-02-04", "焊工")]
LEVELS = [(5, "五级/初级工"), (4, "四级/中级工"), (3, "三级/高级工"), (2, "二级/技师"), (1, "一级/高级技师")]
COMPONENTS = [
    ("training", "安全培训", "completion"),
    ("theory", "理论考试", "exam"),
    ("practical", "实操考试", "exam"),
    ("hot_work", "动火作业安全管理考试", "exam"),
]
MEM_SOURCE = "《特种作业人员安全技术培训考核管理规定》"
MOHURD_SOURCE = "《建筑施工特种作业人员管理规定》"
SAMR_SOURCE = "《特种设备作业人员监督管理办法》"
MEM_NUMBER = (r"T\d{17}[\dX]", "T + 持证人18位身份证号码")
MEM_COMPONENTS = [("training", "安全技术培训", None), ("theory", "理论考试", 80), ("practical", "实操考试", 80)]
MOHURD_COMPONENTS = [("training", "安全作业培训", None), ("theory", "理论考试", 60), ("practical", "实操考试", 70)]

# code, name, department, occupation, validity, review, theory first, pattern, format,
# number is holder id, source, components
TYPES = [
    ("MEM-ELEC-LV", "特种作业操作证 · 低压电工作业", "mem", "6-31-01-03", 6, 3, True,
     *MEM_NUMBER, True, MEM_SOURCE, MEM_COMPONENTS),
    ("MEM-ELEC-HV", "特种作业操作证 · 高压电工作业", "mem", "6-31-01-03", 6, 3, False,
     *MEM_NUMBER, True, MEM_SOURCE, MEM_COMPONENTS),
    ("MEM-WELD-FC", "特种作业操作证 · 熔化焊接与热切割作业", "mem", "6-18-02-04", 6, 3, False,
     *MEM_NUMBER, True, MEM_SOURCE, MEM_COMPONENTS),
    ("MOHURD-ELEC", "建筑施工特种作业操作资格证 · 建筑电工", "mohurd", "6-31-01-03", 2, None, True,
     rf"[{PROVINCES}][A-Z]01\d{{4}}\d{{6}}",
     "省简称 + 城市字母 + 类别01 + 4位年份 + 6位流水号，如 晋A012026000001", False,
     MOHURD_SOURCE, MOHURD_COMPONENTS),
    ("MOHURD-WELD", "建筑施工特种作业操作资格证 · 建筑焊工", "mohurd", "6-18-02-04", 2, None, False,
     rf"[{PROVINCES}][A-Z]\d{{2}}\d{{4}}\d{{6}}",
     "省简称 + 城市字母 + 类别（各省设定）+ 4位年份 + 6位流水号", False,
     MOHURD_SOURCE, MOHURD_COMPONENTS),
    ("SAMR-WELD", "特种设备作业人员证 · 焊接操作", "samr", "6-18-02-04", 4, None, False,
     r"[0-9A-Z\u4e00-\u9fff]{6,32}", "发证机关配置的编号序列（6-32位字母、数字或汉字）", False,
     SAMR_SOURCE,
     [("theory", "理论考试", 60), ("practical", "实操考试", 60), ("hot_work", "动火作业安全管理考试", 60)]),
]

ROW_SOURCE = "《关于推进职业技能证书互通互认的通知》一、附件序号{row}"
RECOGNITION = [
    (1, "MEM-ELEC-LV", "MOHURD-ELEC", ["training"], ""),
    (2, "MEM-ELEC-HV", "MOHURD-ELEC", ["training"], ""),
    (3, "MOHURD-ELEC", "MEM-ELEC-LV", ["training"], ""),
    (4, "MEM-WELD-FC", "MOHURD-WELD", ["training"], "仅限颁发建筑焊工特种作业操作证的地区"),
    (5, "MEM-WELD-FC", "SAMR-WELD", ["hot_work"], ""),
    (6, "MOHURD-WELD", "MEM-WELD-FC", ["training"], ""),
    (7, "SAMR-WELD", "MEM-WELD-FC", ["training", "theory"], ""),
]
EQUIVALENCE_SOURCE = "《关于推进职业技能证书互通互认的通知》二（一）"
EQUIVALENCE = [
    ("MEM-ELEC-LV", "6-31-01-03", 5),
    ("MOHURD-ELEC", "6-31-01-03", 5),
    ("MEM-ELEC-HV", "6-31-01-03", 4),
    ("MEM-WELD-FC", "6-18-02-04", 5),
    ("MOHURD-WELD", "6-18-02-04", 5),
    ("SAMR-WELD", "6-18-02-04", 4),
]


def load(apps, schema_editor):
    Department = apps.get_model("catalog", "Department")
    Occupation = apps.get_model("catalog", "Occupation")
    SkillLevel = apps.get_model("catalog", "SkillLevel")
    Component = apps.get_model("catalog", "Component")
    QualificationType = apps.get_model("catalog", "QualificationType")
    QualificationComponent = apps.get_model("catalog", "QualificationComponent")
    SkillCertificateRule = apps.get_model("catalog", "SkillCertificateRule")
    RecognitionRule = apps.get_model("catalog", "RecognitionRule")
    EquivalenceRule = apps.get_model("catalog", "EquivalenceRule")

    departments = {code: Department.objects.create(code=code, name=name) for code, name in DEPARTMENTS}
    occupations = {code: Occupation.objects.create(code=code, name=name) for code, name in OCCUPATIONS}
    for level, name in LEVELS:
        SkillLevel.objects.create(level=level, name=name)
    components = {
        code: Component.objects.create(code=code, name=name, kind=kind, max_score=100)
        for code, name, kind in COMPONENTS
    }
    types = {}
    for (code, name, dept, occ, validity, review, first, pattern, fmt, is_id, source,
         parts) in TYPES:
        qtype = QualificationType.objects.create(
            code=code, name=name, department=departments[dept], occupation=occupations[occ],
            validity_years=validity, review_interval_years=review,
            theory_before_practical=first, number_pattern=pattern, number_format=fmt,
            number_is_holder_id=is_id, source=source, effective_from=TYPES_FROM,
        )
        for order, (component, label, mark) in enumerate(parts):
            QualificationComponent.objects.create(
                qualification_type=qtype, component=components[component], label=label,
                pass_mark=mark, order=order,
            )
        types[code] = qtype
    SkillCertificateRule.objects.create(
        theory_pass_mark=60, practical_pass_mark=60, review_required_levels="2,1",
        number_pattern=r"[YS]\d{21}",
        number_format=(
            "1位字母（Y 用人单位 / S 社会培训评价组织）+ 4位机构代码 + 2位省份代码 + "
            "6位站点序号 + 2位年份 + 1位等级 + 6位流水号"
        ),
        source="《职业技能等级认定工作规程》；《关于推进职业技能证书互通互认的通知》二（二）",
        effective_from=date(2020, 1, 1),
    )
    for row, held, target, exempt, condition in RECOGNITION:
        rule = RecognitionRule.objects.create(
            row=row, held=types[held], target=types[target], condition=condition,
            source=ROW_SOURCE.format(row=row), effective_from=NOTICE,
        )
        rule.exempt.set([components[code] for code in exempt])
    for held, occ, level in EQUIVALENCE:
        EquivalenceRule.objects.create(
            held=types[held], occupation=occupations[occ], level=level,
            source=EQUIVALENCE_SOURCE, effective_from=NOTICE,
        )


def unload(apps, schema_editor):
    for model in ["EquivalenceRule", "RecognitionRule", "SkillCertificateRule", "QualificationComponent",
                  "QualificationType", "Component", "SkillLevel", "Occupation", "Department"]:
        apps.get_model("catalog", model).objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [("catalog", "0001_initial")]

    operations = [migrations.RunPython(load, unload)]
