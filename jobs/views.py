"""Pages to follow a long batch: my recent jobs, one job (a progress bar that polls,
then the outcome), and the small JSON the bar polls."""

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.cache import never_cache

from . import services
from .registry import kind_get

PAGE_SIZE = 25


@login_required
def job_list(request):
    jobs = Paginator(services.job_list(user=request.user), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    for job in jobs:
        job.label = kind_get(job.kind).label
    return render(request, "jobs/job_list.html", {"page": jobs})


@login_required
def job_detail(request, pk):
    job = get_object_or_404(services.job_list(user=request.user), pk=pk)
    job_kind = kind_get(job.kind)
    back = job_kind.back(job) if job_kind.back else None
    context = {
        "job": job,
        "kind": job_kind,
        "progress": services.job_progress(job),
        "back": back,
    }
    return render(request, "jobs/job_detail.html", context)


@never_cache
@login_required
def job_progress(request, pk):
    job = get_object_or_404(services.job_list(user=request.user), pk=pk)
    return JsonResponse(services.job_progress(job))
