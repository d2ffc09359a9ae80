from rest_framework.routers import SimpleRouter

from . import views
from .imports import CandidateImportViewSet

router = SimpleRouter()
router.register("candidates", views.CandidateViewSet, basename="candidate")
router.register("held-certificates", views.HeldCertificateViewSet, basename="held-certificate")
router.register("plans", views.PlanViewSet, basename="plan")
router.register("cases", views.CaseViewSet, basename="case")
router.register("candidate-imports", CandidateImportViewSet, basename="candidate-import")

urlpatterns = [*router.urls]
