"""Settings for the test suite: the project settings with their defaults, plus test values.

Every DJANGO_* and CHAT_* variable of the calling shell is dropped first, so the suite runs
against the documented defaults whatever the environment holds.
"""

import os
import tempfile
from pathlib import Path

for _name in [name for name in os.environ if name.startswith(("DJANGO_", "CHAT_"))]:
    if _name != "DJANGO_SETTINGS_MODULE":
        del os.environ[_name]
os.environ["DJANGO_SECRET_KEY"] = "chatdemo-test-suite-only-not-a-secret"

from chatdemo.settings import *  # noqa: E402, F403

# Unhashed static names: the tests run without `collectstatic` and its manifest.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# A file, not Django's default in-memory test database: connections opened by the
# database check in worker threads can then be closed (in-memory ones never are).
DATABASES["default"]["TEST"] = {  # noqa: F405
    "NAME": str(Path(tempfile.gettempdir(), f"chatdemo-test-{os.getpid()}.sqlite3"))
}
