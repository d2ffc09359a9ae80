from django.apps import AppConfig


class CasesConfig(AppConfig):
    name = "cases"
    verbose_name = "报名与资格审核"
