"""Settings for wsgisample, a plain Django project as most begin: served over WSGI.

Every deployment-specific value comes from the same DJANGO_* environment variables as the
chatdemo app, so channels-stack deploys either one unchanged.
"""

import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_list(name, default=""):
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def parse_database_url(url, *, variable="DJANGO_DATABASE_URL"):
    """sqlite:////abs/path/db.sqlite3 or postgres://user:password@host:port/name."""
    parts = urlsplit(url.strip())
    if parts.scheme == "sqlite" and not parts.netloc and parts.path[1:]:
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(BASE_DIR / parts.path[1:])}
    if parts.scheme in ("postgres", "postgresql") and parts.path.lstrip("/"):
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parts.path.lstrip("/")),
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": unquote(parts.hostname or ""),
            "PORT": str(parts.port or ""),
        }
    raise ImproperlyConfigured(
        f"{variable} must be sqlite:////abs/path/db.sqlite3 or postgres://user:pw@host/name"
    )


SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    raise ImproperlyConfigured("DJANGO_SECRET_KEY is not set")
DEBUG = os.environ.get("DJANGO_DEBUG", "0").strip().lower() in {"1", "true", "yes", "on"}
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")
APP_VERSION = os.environ.get("DJANGO_APP_VERSION", "").strip() or "dev"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.staticfiles",
    "notes",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "wsgisample.urls"
WSGI_APPLICATION = "wsgisample.wsgi.application"
TEMPLATES = []

_database_url = os.environ.get("DJANGO_DATABASE_URL", "").strip()
DATABASES = {
    "default": parse_database_url(_database_url)
    if _database_url
    else {"ENGINE": "django.db.backends.sqlite3", "NAME": str(BASE_DIR / "db.sqlite3")}
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

STATIC_URL = "/static/"
STATIC_ROOT = Path(os.environ.get("DJANGO_STATIC_ROOT", "").strip() or BASE_DIR / "staticfiles")

USE_TZ = True
TIME_ZONE = "UTC"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["stderr"], "level": os.environ.get("DJANGO_LOG_LEVEL", "INFO")},
}
