from django.core.cache import cache
from django.shortcuts import render

from .models import Note


def home(request):
    visits = cache.get_or_set("home-visits", 0, None)
    cache.incr("home-visits")
    return render(
        request,
        "notes/home.html",
        {"notes": Note.objects.all()[:20], "visits": visits + 1},
    )
