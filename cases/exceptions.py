from audit.exceptions import DomainError


class EligibilityError(DomainError):
    """Submit or approve refused: `problems` lists every reason, in Chinese."""

    code = "not_eligible"

    def __init__(self, problems: list[str]):
        super().__init__("；".join(problems), problems=problems)
        self.problems = problems
