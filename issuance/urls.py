from django.urls import path

from .views import officer, public

app_name = "issuance"

urlpatterns = [
    # Public verification (no login): the QR landing page.
    path("verify/", public.verify, name="verify"),
    path("verify/<str:code>/", public.verify_code, name="verify-code"),
    # Officers of an issuer.
    path("certificates/", officer.certificate_queue, name="certificate-queue"),
    path("certificates/<int:pk>/", officer.certificate_detail, name="certificate-detail"),
    path("certificates/<int:pk>/pdf/", officer.certificate_pdf, name="certificate-pdf"),
    path(
        "certificates/<int:pk>/<str:name>/",
        officer.certificate_transition,
        name="certificate-transition",
    ),
    path("certificates/batch/<str:name>/", officer.certificate_batch, name="certificate-batch"),
    path("certificates/zip/", officer.certificate_zip, name="certificate-zip"),
    path("certificates/print/", officer.certificate_print, name="certificate-print"),
    path("certificates/review-due/", officer.certificate_review_due, name="certificate-review-due"),
]
