from django.urls import path  # noqa: F401 - pages add their routes here

app_name = "exams"

urlpatterns: list = []
