from django.urls import include, path
from rest_framework.routers import SimpleRouter

from . import certificates, verify

router = SimpleRouter()
router.register("certificates", certificates.CertificateViewSet, basename="certificate")

urlpatterns = [
    path("verify/", verify.VerifyView.as_view(), name="api-verify"),
    path("", include(router.urls)),
]
