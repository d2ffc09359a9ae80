from rest_framework.routers import SimpleRouter

router = SimpleRouter()
# Each exams API module registers its viewsets here (one line each).

urlpatterns = [*router.urls]
