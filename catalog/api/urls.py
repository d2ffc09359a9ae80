from django.urls import path
from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter()
router.register("departments", views.DepartmentViewSet)
router.register("occupations", views.OccupationViewSet)
router.register("levels", views.SkillLevelViewSet)
router.register("components", views.ComponentViewSet)
router.register("qualification-types", views.QualificationTypeViewSet)
router.register("recognition-rules", views.RecognitionRuleViewSet)
router.register("equivalence-rules", views.EquivalenceRuleViewSet)

urlpatterns = [
    path("recognition/", views.RecognitionView.as_view(), name="catalog-recognition"),
    *router.urls,
]
