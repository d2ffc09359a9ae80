from rest_framework.routers import SimpleRouter

router = SimpleRouter()
# Each exams API module registers its viewsets here (one line each).
from exams.api.review import QualityWarningViewSet, ReviewSessionViewSet  # noqa: E402

router.register("review/sessions", ReviewSessionViewSet, basename="review-session")
router.register("review/warnings", QualityWarningViewSet, basename="review-warning")
from exams.api import sessions as session_views  # noqa: E402

router.register("venues", session_views.VenueViewSet, basename="venue")
router.register("rooms", session_views.RoomViewSet, basename="room")
router.register("sessions", session_views.ExamSessionViewSet, basename="session")
router.register("bookings", session_views.BookingViewSet, basename="booking")
from exams.api import scoring as scoring_views  # noqa: E402

router.register("marking", scoring_views.MarkingViewSet, basename="marking")
router.register("results", scoring_views.ResultViewSet, basename="result")

urlpatterns = [*router.urls]
