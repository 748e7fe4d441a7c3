"""ASGI entry point: Django's own ASGI application, for async views (no websockets).

Unused while the project is served over WSGI; gunicorn with uvicorn workers serves it
in the `asgi` mode.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wsgisample.settings")

application = get_asgi_application()
