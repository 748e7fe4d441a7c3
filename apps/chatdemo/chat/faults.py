"""Fault injection for tests of the deployment: routed only with DJANGO_FAULT_INJECTION=1.

POST /fault/block?seconds=N blocks the event loop of the worker that serves it for N seconds
                            (1 to 600, default 300), as a runaway synchronous call would; the
                            ASGI server's watchdog (gunicorn's timeout) is expected to kill it.
                            POST, so that nginx never retries it on another worker.
"""

import logging
import os
import time

from django.http import HttpResponseBadRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

logger = logging.getLogger(__name__)

MAX_BLOCK_SECONDS = 600


@csrf_exempt
@require_POST
async def block(request):
    try:
        seconds = float(request.GET.get("seconds", "300"))
    except ValueError:
        return HttpResponseBadRequest("seconds must be a number\n")
    if not 1 <= seconds <= MAX_BLOCK_SECONDS:
        return HttpResponseBadRequest(f"seconds must be 1 to {MAX_BLOCK_SECONDS}\n")
    logger.warning(
        "fault injection: blocking the event loop of pid %d for %gs", os.getpid(), seconds
    )
    time.sleep(seconds)  # noqa: ASYNC251 -- blocking the loop is the point
    return JsonResponse({"pid": os.getpid(), "blocked_seconds": seconds})


urlpatterns = [
    path("fault/block", block, name="fault-block"),
]
