from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from config.health import healthz

api_v1 = [
    path("catalog/", include("catalog.api.urls")),
    path("", include("cases.api.urls")),
    path("", include("exams.api.urls")),
    path("", include("issuance.api.urls")),
    path("", include("jobs.api_urls")),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
]

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/v1/", include(api_v1)),
    path("exams/", include("exams.urls")),
    path("jobs/", include("jobs.urls")),
    path("", include("issuance.urls")),
    path("", include("cases.urls")),
]
