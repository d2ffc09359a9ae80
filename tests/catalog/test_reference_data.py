"""The reference rows the migrations load (catalog/migrations/0002, 0003)."""

import pytest

from catalog.models import Component, QualificationComponent, SkillCertificateRule

pytestmark = pytest.mark.django_db


def test_skill_rule_needs_the_comprehensive_review_for_levels_2_and_1():
    rule = SkillCertificateRule.objects.get()
    assert rule.levels_needing_review == {2, 1}
    review = Component.objects.get(code="review")
    assert (review.name, review.kind, review.max_score) == ("综合评审", "exam", 100)


def test_no_qualification_type_requires_the_comprehensive_review():
    assert QualificationComponent.objects.filter(component__code="review").count() == 0
