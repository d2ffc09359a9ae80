from rest_framework import serializers

from catalog.models import (
    Component,
    Department,
    EquivalenceRule,
    Occupation,
    QualificationComponent,
    QualificationType,
    RecognitionRule,
    SkillLevel,
)


class DepartmentSerializer(serializers.ModelSerializer):
    class Meta:
        model = Department
        fields = ["code", "name"]


class OccupationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Occupation
        fields = ["code", "name"]


class SkillLevelSerializer(serializers.ModelSerializer):
    class Meta:
        model = SkillLevel
        fields = ["level", "name"]


class ComponentSerializer(serializers.ModelSerializer):
    class Meta:
        model = Component
        fields = ["code", "name", "kind", "max_score"]


class QualificationComponentSerializer(serializers.ModelSerializer):
    component = serializers.CharField(source="component.code")

    class Meta:
        model = QualificationComponent
        fields = ["component", "label", "pass_mark", "order"]


class QualificationTypeSerializer(serializers.ModelSerializer):
    department = serializers.CharField(source="department.code")
    occupation = serializers.CharField(source="occupation.code")
    components = QualificationComponentSerializer(many=True)

    class Meta:
        model = QualificationType
        fields = [
            "code",
            "name",
            "department",
            "occupation",
            "validity_years",
            "review_interval_years",
            "theory_before_practical",
            "number_pattern",
            "number_format",
            "components",
            "source",
            "effective_from",
            "effective_to",
        ]


class RecognitionRuleSerializer(serializers.ModelSerializer):
    held = serializers.CharField(source="held.code")
    target = serializers.CharField(source="target.code")
    exempt = serializers.SerializerMethodField()

    class Meta:
        model = RecognitionRule
        fields = [
            "row",
            "held",
            "target",
            "exempt",
            "condition",
            "source",
            "effective_from",
            "effective_to",
        ]

    def get_exempt(self, rule) -> list[str]:
        return sorted(c.code for c in rule.exempt.all())


class EquivalenceRuleSerializer(serializers.ModelSerializer):
    held = serializers.CharField(source="held.code")
    occupation = serializers.CharField(source="occupation.code")

    class Meta:
        model = EquivalenceRule
        fields = [
            "held",
            "occupation",
            "level",
            "may_apply",
            "source",
            "effective_from",
            "effective_to",
        ]


class RecognitionQuerySerializer(serializers.Serializer):
    held = serializers.ListField(
        child=serializers.CharField(max_length=32), required=False, default=list
    )
    target = serializers.CharField(max_length=32)
    on = serializers.DateField(required=False)


class EquivalentSerializer(serializers.Serializer):
    occupation = serializers.CharField()
    level = serializers.IntegerField()
    may_apply = serializers.IntegerField()


class RecognitionResultSerializer(serializers.Serializer):
    target = serializers.CharField()
    rows = serializers.ListField(child=serializers.IntegerField())
    exempt = serializers.ListField(child=serializers.CharField())
    equivalent = EquivalentSerializer(many=True)
