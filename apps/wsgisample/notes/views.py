from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.utils.html import escape
from django.views.decorators.http import require_safe

from notes.models import Note


def interface(request):
    """How this request reached Django: "asgi" or "wsgi"."""
    return "asgi" if isinstance(request, ASGIRequest) else "wsgi"


@require_safe
def index(request):
    items = "".join(f"<li>{escape(note.text)}</li>" for note in Note.objects.all()[:20])
    return HttpResponse(f"<!doctype html><title>Notes</title><h1>Notes</h1><ul>{items}</ul>")


@require_safe
def detail(request, pk):
    note = get_object_or_404(Note, pk=pk)
    return JsonResponse({"id": note.pk, "text": note.text, "created": note.created.isoformat()})


@require_safe
def healthz(request):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    response = JsonResponse({"status": "ok", "database": "ok", "interface": interface(request)})
    response["Cache-Control"] = "no-store"
    return response


def latest_texts(limit):
    return [note.text for note in Note.objects.all()[:limit]]


@require_safe
async def notes_async(request):
    """An async view: the ORM is synchronous, so its calls go through sync_to_async."""
    count = await sync_to_async(Note.objects.count)()
    latest = await sync_to_async(latest_texts)(5)
    return JsonResponse({"count": count, "latest": latest, "interface": interface(request)})
