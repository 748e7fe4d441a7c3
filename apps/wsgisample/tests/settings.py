"""The project settings with every DJANGO_* variable of the shell ignored."""

import os

for _name in [name for name in os.environ if name.startswith("DJANGO_")]:
    if _name != "DJANGO_SETTINGS_MODULE":
        del os.environ[_name]
os.environ["DJANGO_SECRET_KEY"] = "wsgisample-test-suite-only-not-a-secret"

from wsgisample.settings import *  # noqa: E402, F403
