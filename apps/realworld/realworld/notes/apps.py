from django.apps import AppConfig


class NotesConfig(AppConfig):
    name = "realworld.notes"
    verbose_name = "Notes"
