import pytest
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.wsgi import WSGIHandler
from notes.models import Note

pytestmark = pytest.mark.django_db(transaction=True)


def test_index_lists_the_notes(client):
    Note.objects.create(text="first <b>")

    response = client.get("/")

    assert response.status_code == 200
    assert b"<li>first &lt;b&gt;</li>" in response.content


def test_detail_returns_one_note_or_404(client):
    note = Note.objects.create(text="hello")

    assert client.get(f"/notes/{note.pk}/").json()["text"] == "hello"
    assert client.get(f"/notes/{note.pk + 1}/").status_code == 404


def test_healthz_over_wsgi(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "interface": "wsgi"}
    assert response["Cache-Control"] == "no-store"


async def test_async_view_reads_the_orm_through_sync_to_async(async_client):
    await Note.objects.acreate(text="older")
    await Note.objects.acreate(text="newer")

    response = await async_client.get("/async/notes/")

    assert response.status_code == 200
    assert response.json() == {"count": 2, "latest": ["newer", "older"], "interface": "asgi"}


def test_async_view_also_answers_over_wsgi(client):
    response = client.get("/async/notes/")

    assert response.status_code == 200
    assert response.json()["interface"] == "wsgi"


def test_views_refuse_writes(client):
    assert client.post("/healthz").status_code == 405
    assert client.post("/async/notes/").status_code == 405


def test_both_entry_points_expose_an_application():
    from wsgisample.asgi import application as asgi_application
    from wsgisample.wsgi import application as wsgi_application

    assert isinstance(wsgi_application, WSGIHandler)
    assert isinstance(asgi_application, ASGIHandler)
