from django.urls import path
from notes import views

urlpatterns = [
    path("", views.index, name="index"),
    path("notes/<int:pk>/", views.detail, name="detail"),
    path("healthz", views.healthz, name="healthz"),
    path("async/notes/", views.notes_async, name="notes-async"),
]
