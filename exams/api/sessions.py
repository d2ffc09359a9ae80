"""API of venues, rooms, exam sessions and bookings: thin views calling one service of
exams.sessions, exams.scheduling, exams.attendance or exams.tickets (STYLE.md §3).

Coordinators do everything here. Graders read the sessions they are staff of and
quality supervisors the sessions of their review (exams.selectors.session_list);
neither reads the roster, the tickets or anything else. A session outside the
reader's scope is a 404.
"""

from django.contrib.auth import get_user_model
from django.db.models import Count, Prefetch, Q
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import SAFE_METHODS
from rest_framework.response import Response

from cases.api.permissions import HasRole
from cases.models import Case, EvaluationPlan
from cases.roles import Role, has_role
from catalog.models import Component

from .. import attendance, scheduling, selectors, sessions, tickets
from ..models import (
    Booking,
    BookingStatus,
    ExamSession,
    Room,
    SessionStaff,
    StaffRole,
    Venue,
)

# Permissions ---------------------------------------------------------------------------


class Coordinators(HasRole):
    roles = (Role.COORDINATOR,)


class SessionReaders(HasRole):
    """Reads for coordinators, graders and supervisors (scoped by the selector);
    writes for coordinators."""

    def has_permission(self, request, view) -> bool:
        if request.method in SAFE_METHODS:
            return has_role(request.user, Role.COORDINATOR, Role.GRADER, Role.REVIEWER)
        return has_role(request.user, Role.COORDINATOR)


def _valid(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _pdf(content: bytes, filename: str) -> HttpResponse:
    response = HttpResponse(content, content_type="application/pdf")
    response["Content-Disposition"] = f'inline; filename="{filename}"'
    return response


# Serializers ---------------------------------------------------------------------------


class VenueOutput(serializers.ModelSerializer):
    class Meta:
        model = Venue
        fields = ["id", "name", "address"]


class VenueInput(serializers.Serializer):
    name = serializers.CharField(max_length=128)
    address = serializers.CharField(max_length=256, required=False, allow_blank=True)


class RoomOutput(serializers.ModelSerializer):
    venue_name = serializers.CharField(source="venue.name")

    class Meta:
        model = Room
        fields = ["id", "venue", "venue_name", "name", "capacity"]


class RoomInput(serializers.Serializer):
    venue = serializers.PrimaryKeyRelatedField(queryset=Venue.objects.all())
    name = serializers.CharField(max_length=64)
    capacity = serializers.IntegerField()


class StaffOutput(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username")
    component = serializers.SlugRelatedField(slug_field="code", read_only=True)

    class Meta:
        model = SessionStaff
        fields = ["id", "user", "username", "role", "component"]


class ExamSessionOutput(serializers.ModelSerializer):
    plan_name = serializers.CharField(source="plan.name")
    room_name = serializers.CharField(source="room.name")
    venue = serializers.CharField(source="room.venue.name")
    components = serializers.SlugRelatedField(slug_field="code", many=True, read_only=True)
    status_display = serializers.CharField(source="get_status_display")
    booked = serializers.IntegerField(help_text="未取消的考位数")
    staff = StaffOutput(many=True)

    class Meta:
        model = ExamSession
        fields = [
            "id",
            "code",
            "plan",
            "plan_name",
            "room",
            "room_name",
            "venue",
            "date",
            "start_time",
            "end_time",
            "capacity",
            "booked",
            "components",
            "status",
            "status_display",
            "review_notes",
            "staff",
        ]


class ExamSessionInput(serializers.Serializer):
    plan = serializers.PrimaryKeyRelatedField(queryset=EvaluationPlan.objects.all())
    room = serializers.PrimaryKeyRelatedField(queryset=Room.objects.select_related("venue"))
    date = serializers.DateField()
    start_time = serializers.TimeField()
    end_time = serializers.TimeField()
    capacity = serializers.IntegerField()
    components = serializers.ListField(child=serializers.SlugField(), allow_empty=True)
    code = serializers.CharField(max_length=32, required=False, allow_blank=True)


class AssignStaffInput(serializers.Serializer):
    user = serializers.PrimaryKeyRelatedField(queryset=get_user_model().objects.all())
    role = serializers.ChoiceField(choices=StaffRole.choices)
    component = serializers.SlugRelatedField(
        slug_field="code", queryset=Component.objects.all(), required=False, allow_null=True
    )


class CheckInInput(serializers.Serializer):
    code = serializers.CharField(max_length=32, help_text="准考证号或身份证号码（扫码枪输入）")


class AllocationOutput(serializers.Serializer):
    allocated = serializers.ListField(child=serializers.DictField())
    unallocated = serializers.ListField(child=serializers.DictField())


class BookingOutput(serializers.ModelSerializer):
    session_code = serializers.CharField(source="session.code")
    candidate_name = serializers.CharField(source="case.candidate.name")
    id_number_masked = serializers.CharField(source="case.candidate.masked_id_number")
    components = serializers.SlugRelatedField(slug_field="code", many=True, read_only=True)
    status_display = serializers.CharField(source="get_status_display")

    class Meta:
        model = Booking
        fields = [
            "id",
            "session",
            "session_code",
            "case",
            "candidate_name",
            "id_number_masked",
            "attempt",
            "seat_number",
            "ticket_number",
            "components",
            "status",
            "status_display",
            "checked_in_at",
        ]


class BookingInput(serializers.Serializer):
    session = serializers.PrimaryKeyRelatedField(queryset=ExamSession.objects.all())
    case = serializers.PrimaryKeyRelatedField(queryset=Case.objects.all())


class CancelInput(serializers.Serializer):
    reason = serializers.CharField(allow_blank=True, trim_whitespace=False)


class MisconductInput(serializers.Serializer):
    description = serializers.CharField(allow_blank=True)
    evidence = serializers.FileField(required=False, allow_null=True)


class MisconductOutput(serializers.Serializer):
    id = serializers.IntegerField()
    booking = serializers.IntegerField(source="booking_id")
    description = serializers.CharField()
    evidence = serializers.CharField(source="evidence.name")
    recorded_by = serializers.CharField(source="recorded_by.username")
    recorded_at = serializers.DateTimeField()


# Views ---------------------------------------------------------------------------------


class VenueViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    permission_classes = [Coordinators]
    serializer_class = VenueOutput
    queryset = Venue.objects.order_by("name")

    @extend_schema(request=VenueInput, responses={201: VenueOutput})
    def create(self, request):
        venue = sessions.venue_create(actor=request.user, **_valid(VenueInput, request.data))
        return Response(VenueOutput(venue).data, status=status.HTTP_201_CREATED)


class RoomViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    permission_classes = [Coordinators]
    serializer_class = RoomOutput
    queryset = Room.objects.select_related("venue").order_by("venue__name", "name")
    filterset_fields = ["venue"]

    @extend_schema(request=RoomInput, responses={201: RoomOutput})
    def create(self, request):
        room = sessions.room_create(actor=request.user, **_valid(RoomInput, request.data))
        return Response(RoomOutput(room).data, status=status.HTTP_201_CREATED)


def _session_transition(service):
    """A POST action calling one session transition service."""

    @extend_schema(request=None, responses=ExamSessionOutput)
    def view(self, request, pk=None):
        session = service(actor=request.user, session=self.get_object())
        return Response(ExamSessionOutput(self.get_queryset().get(pk=session.pk)).data)

    view.__name__ = service.__name__.removeprefix("session_")
    view.__doc__ = service.__doc__
    return action(detail=True, methods=["post"])(view)


class ExamSessionViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    permission_classes = [SessionReaders]
    serializer_class = ExamSessionOutput
    filterset_fields = ["plan", "status", "date"]

    def get_permissions(self):
        if self.action in {"tickets_pdf"}:
            return [Coordinators()]
        return super().get_permissions()

    def get_queryset(self):
        return (
            selectors.session_list(user=self.request.user)
            .annotate(booked=Count("bookings", filter=~Q(bookings__status=BookingStatus.CANCELLED)))
            .prefetch_related(
                Prefetch(
                    "staff",
                    queryset=SessionStaff.objects.select_related("user", "component").order_by(
                        "pk"
                    ),
                )
            )
        )

    @extend_schema(request=ExamSessionInput, responses={201: ExamSessionOutput})
    def create(self, request):
        session = sessions.session_create(
            actor=request.user, **_valid(ExamSessionInput, request.data)
        )
        return Response(
            ExamSessionOutput(self.get_queryset().get(pk=session.pk)).data,
            status=status.HTTP_201_CREATED,
        )

    open = _session_transition(sessions.session_open)
    freeze_roster = _session_transition(sessions.session_freeze_roster)
    start = _session_transition(sessions.session_start)
    close = _session_transition(sessions.session_close)

    @extend_schema(request=AssignStaffInput, responses={201: StaffOutput})
    @action(detail=True, methods=["post"])
    def assign_staff(self, request, pk=None):
        """Assign a proctor, a grader (per component) or a chief grader."""
        staff = sessions.session_assign_staff(
            actor=request.user, session=self.get_object(), **_valid(AssignStaffInput, request.data)
        )
        return Response(StaffOutput(staff).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=AllocationOutput)
    @action(detail=True, methods=["post"])
    def allocate(self, request, pk=None):
        """Seat every eligible unbooked case of the session's plan in this session, as
        far as capacity, components and clashes allow; lists who was left and why."""
        session = self.get_object()
        summary = scheduling.sessions_allocate(
            actor=request.user, plan=session.plan, sessions=[session]
        )
        return Response(summary.as_dict())

    @extend_schema(request=CheckInInput, responses=BookingOutput)
    @action(detail=True, methods=["post"])
    def check_in(self, request, pk=None):
        """The check-in desk: a ticket number or a full ID number, as scanned."""
        booking = attendance.check_in(
            actor=request.user,
            session=self.get_object(),
            ticket_or_id=_valid(CheckInInput, request.data)["code"],
        )
        return Response(BookingOutput(booking).data)

    @extend_schema(
        request=None,
        responses={(200, "application/pdf"): OpenApiResponse(OpenApiTypes.BINARY)},
    )
    @action(detail=True, methods=["get"], url_path="tickets.pdf", url_name="tickets-pdf")
    def tickets_pdf(self, request, pk=None):
        """Every admission ticket of the session, one page each."""
        session = self.get_object()
        return _pdf(tickets.session_tickets_pdf(session), f"tickets-{session.code}.pdf")


class BookingViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    permission_classes = [Coordinators]
    serializer_class = BookingOutput
    filterset_fields = ["session", "status", "case"]

    def get_queryset(self):
        return selectors.booking_list(user=self.request.user)

    @extend_schema(request=BookingInput, responses={201: BookingOutput})
    def create(self, request):
        booking = scheduling.booking_create(
            actor=request.user, **_valid(BookingInput, request.data)
        )
        return Response(BookingOutput(booking).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=CancelInput, responses=BookingOutput)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Give up the seat (before the roster is frozen); the case is eligible again."""
        booking = scheduling.booking_cancel(
            actor=request.user,
            booking=self.get_object(),
            reason=_valid(CancelInput, request.data)["reason"],
        )
        return Response(BookingOutput(booking).data)

    @extend_schema(
        request={"multipart/form-data": MisconductInput}, responses={201: MisconductOutput}
    )
    @action(detail=True, methods=["post"], parser_classes=[MultiPartParser, FormParser, JSONParser])
    def misconduct(self, request, pk=None):
        """Record misconduct with an evidence file: the booking and the case are void."""
        record = attendance.misconduct_record(
            actor=request.user, booking=self.get_object(), **_valid(MisconductInput, request.data)
        )
        return Response(MisconductOutput(record).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=None,
        responses={(200, "application/pdf"): OpenApiResponse(OpenApiTypes.BINARY)},
    )
    @action(detail=True, methods=["get"], url_path="ticket.pdf", url_name="ticket-pdf")
    def ticket_pdf(self, request, pk=None):
        """This booking's admission ticket."""
        booking = self.get_object()
        return _pdf(tickets.ticket_pdf(booking), f"ticket-{booking.ticket_number}.pdf")
