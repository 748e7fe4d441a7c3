"""WSGI entry point: what the project is served with before the conversion."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wsgisample.settings")

application = get_wsgi_application()
