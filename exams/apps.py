from django.apps import AppConfig


class ExamsConfig(AppConfig):
    name = "exams"
    verbose_name = "考务"

    def ready(self):
        from jobs.registry import register

        from .jobs import ALLOCATE

        register(ALLOCATE)
