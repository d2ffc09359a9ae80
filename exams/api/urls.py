from rest_framework.routers import SimpleRouter

from . import review, scoring, sessions

router = SimpleRouter()
router.register("venues", sessions.VenueViewSet, basename="venue")
router.register("rooms", sessions.RoomViewSet, basename="room")
router.register("sessions", sessions.ExamSessionViewSet, basename="session")
router.register("bookings", sessions.BookingViewSet, basename="booking")
router.register("marking", scoring.MarkingViewSet, basename="marking")
router.register("results", scoring.ResultViewSet, basename="result")
router.register("review/sessions", review.ReviewSessionViewSet, basename="review-session")
router.register("review/warnings", review.QualityWarningViewSet, basename="review-warning")

urlpatterns = [*router.urls]
