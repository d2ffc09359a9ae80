import pytest

from jobs import registry
from jobs.registry import JobKind, Prepared


@pytest.fixture
def probe_kind():
    """A kind of the test's own. Its run reports progress and, at each step, looks at
    the job from outside (what the page and API would answer). Yields what it saw and
    how it behaves (steps, an exception to raise at the end)."""
    seen = []
    behaviour = {"raise": None, "steps": 3}

    def prepare(*, actor, data):
        if data.get("bad"):
            from django.core.exceptions import ValidationError

            raise ValidationError({"bad": ["不能为真"]})
        return Prepared(params=dict(data), total=behaviour["steps"])

    def run(*, job, progress):
        from jobs.models import Job
        from jobs.services import job_progress

        for step in range(1, behaviour["steps"] + 1):
            progress(step, behaviour["steps"])
            seen.append(job_progress(Job.objects.get(pk=job.pk)))
        if behaviour["raise"] is not None:
            raise behaviour["raise"]
        return {"steps": behaviour["steps"]}

    registry.register(JobKind(code="test.probe", label="测试任务", prepare=prepare, run=run))
    yield seen, behaviour
    registry._KINDS.pop("test.probe", None)
