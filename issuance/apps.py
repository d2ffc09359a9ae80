from django.apps import AppConfig


class IssuanceConfig(AppConfig):
    name = "issuance"
    verbose_name = "发证"

    def ready(self):
        from exams.signals import session_approved
        from jobs.registry import register

        from .jobs import APPROVE, ISSUE

        register(APPROVE)
        register(ISSUE)

        session_approved.connect(_open_certificates, dispatch_uid="issuance.open_certificates")


def _open_certificates(sender, *, passed_case_ids, **kwargs):
    """No logic here: hand the passed cases to the issuance task (exams.signals)."""
    from .tasks import certificates_open_for

    if passed_case_ids:
        certificates_open_for.delay(list(passed_case_ids))
