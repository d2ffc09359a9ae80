import pytest

pytestmark = pytest.mark.django_db


def test_recognition_endpoint_returns_the_command_json(client):
    response = client.get(
        "/api/v1/catalog/recognition/",
        {"held": ["MEM-ELEC-LV", "MEM-ELEC-HV"], "target": "MOHURD-ELEC", "on": "2026-06-01"},
    )
    assert response.status_code == 200
    assert response.json() == {
        "target": "MOHURD-ELEC",
        "rows": [1, 2],
        "exempt": ["training"],
        "equivalent": [{"occupation": "6-31-01-03", "level": 4, "may_apply": 3}],
    }


def test_recognition_endpoint_unknown_code_is_400(client):
    response = client.get("/api/v1/catalog/recognition/", {"held": "X", "target": "MOHURD-ELEC"})
    assert response.status_code == 400
    assert response.json()["detail"] == "未知的证书类型代码：X"


def test_recognition_endpoint_requires_target(client):
    response = client.get("/api/v1/catalog/recognition/", {"held": "MEM-ELEC-LV"})
    assert response.status_code == 400
    assert "target" in response.json()


def test_catalog_lists_the_six_qualification_types_with_pass_marks(client):
    response = client.get("/api/v1/catalog/qualification-types/")
    assert response.status_code == 200
    by_code = {t["code"]: t for t in response.json()}
    assert sorted(by_code) == [
        "MEM-ELEC-HV",
        "MEM-ELEC-LV",
        "MEM-WELD-FC",
        "MOHURD-ELEC",
        "MOHURD-WELD",
        "SAMR-WELD",
    ]
    marks = {c["component"]: c["pass_mark"] for c in by_code["MOHURD-ELEC"]["components"]}
    assert marks == {"training": None, "theory": 60, "practical": 70}
    assert by_code["MEM-ELEC-LV"]["theory_before_practical"] is True


def test_catalog_recognition_rules_carry_their_source(client):
    rows = client.get("/api/v1/catalog/recognition-rules/").json()
    assert [r["row"] for r in rows] == [1, 2, 3, 4, 5, 6, 7]
    assert rows[6]["exempt"] == ["theory", "training"]
    assert rows[6]["source"] == "《关于推进职业技能证书互通互认的通知》一、附件序号7"
    assert rows[6]["effective_from"] == "2026-01-09"


def test_catalog_is_read_only(client, django_user_model):
    response = client.post("/api/v1/catalog/departments/", {"code": "x", "name": "x"})
    assert response.status_code == 405


def test_catalog_has_the_comprehensive_review_component(client):
    response = client.get("/api/v1/catalog/components/review/")
    assert response.status_code == 200
    assert response.json() == {
        "code": "review",
        "name": "综合评审",
        "kind": "exam",
        "max_score": 100,
    }
