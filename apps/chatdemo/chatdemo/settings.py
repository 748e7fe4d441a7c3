"""Settings for chatdemo.

Every deployment-specific value comes from the environment (in production a systemd
EnvironmentFile). See README.md for the list of variables.
"""

import json
import logging
import math
import os
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

from chatdemo.origins import parse_websocket_origins

BASE_DIR = Path(__file__).resolve().parent.parent

TRUE_VALUES = {"1", "true", "yes", "on"}
FALSE_VALUES = {"", "0", "false", "no", "off"}


def env_bool(name, default=False):
    """Read a boolean flag: "1"/"true"/"yes"/"on" or "0"/"false"/"no"/"off" (any case)."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in TRUE_VALUES:
        return True
    if value in FALSE_VALUES:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean such as 1/0 or true/false, got {raw!r}")


def env_list(name, default=""):
    """Read a comma separated list, dropping blanks around and between items."""
    raw = os.environ.get(name, default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_int(name, default, *, minimum=None):
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {raw!r}")
    return value


def env_float(name, default):
    """Read a positive, finite number (seconds, a rate)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ImproperlyConfigured(f"{name} must be a number greater than 0, got {raw!r}")
    return value


def parse_database_url(url, *, base_dir=BASE_DIR, variable="DJANGO_DATABASE_URL"):
    """Turn a database URL into a Django DATABASES entry.

    Supported forms:
      sqlite:////absolute/path/db.sqlite3   (a relative path is taken from base_dir)
      postgres://user:password@host:port/name?sslmode=require   (also postgresql://)
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        if parts.netloc:
            raise ImproperlyConfigured(
                f"{variable}: a sqlite URL has no host part, use sqlite:////abs/path/db.sqlite3"
            )
        # sqlite:////abs/db.sqlite3 -> path "//abs/db.sqlite3" -> "/abs/db.sqlite3"
        name = unquote(parts.path[1:])
        if not name:
            raise ImproperlyConfigured(f"{variable}: the sqlite URL names no database file")
        if name != ":memory:":
            name = str(Path(base_dir, name))
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": name}
    if scheme in ("postgres", "postgresql"):
        name = unquote(parts.path.lstrip("/"))
        if not name:
            raise ImproperlyConfigured(f"{variable}: the postgres URL names no database")
        try:
            port = parts.port
        except ValueError:
            raise ImproperlyConfigured(f"{variable}: invalid port in the postgres URL") from None
        # Taken from netloc rather than .hostname, which lowercases: a percent-encoded
        # socket directory (postgres://app@%2Frun%2Fpostgresql/app) keeps its case.
        host = parts.netloc.rpartition("@")[2]
        host = host[1 : host.find("]")] if host.startswith("[") else host.partition(":")[0]
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": unquote(host),
            "PORT": str(port) if port else "",
            "OPTIONS": dict(parse_qsl(parts.query)),
        }
    raise ImproperlyConfigured(
        f"{variable}: unsupported database URL scheme {parts.scheme!r} "
        "(expected sqlite:// or postgres://)"
    )


def parse_channel_layers(raw, *, variable="DJANGO_CHANNEL_LAYERS"):
    """Parse the JSON document that is the CHANNEL_LAYERS setting."""
    try:
        layers = json.loads(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{variable} is not valid JSON: {exc}") from None
    if not isinstance(layers, dict) or not isinstance(layers.get("default"), dict):
        raise ImproperlyConfigured(
            f'{variable} must be a JSON object with a "default" layer, like the CHANNEL_LAYERS '
            "setting"
        )
    for alias, layer in layers.items():
        if not isinstance(layer, dict) or not isinstance(layer.get("BACKEND"), str):
            raise ImproperlyConfigured(f'{variable}: layer {alias!r} needs a "BACKEND" string')
    return layers


# --- Core -----------------------------------------------------------------------------------

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY is not set. Set it in the environment to a long random string, "
        'e.g. python -c "import secrets; print(secrets.token_urlsafe(50))"'
    )

DEBUG = env_bool("DJANGO_DEBUG", False)

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")
USE_X_FORWARDED_HOST = False
# Origins WebSocket handshakes may come from (scheme, host and port, normalised). Empty:
# http:// and https:// on the default ports of each ALLOWED_HOSTS entry. See chatdemo/origins.py.
WEBSOCKET_ORIGINS = parse_websocket_origins(os.environ.get("DJANGO_WEBSOCKET_ORIGINS", ""))

APP_VERSION = os.environ.get("DJANGO_APP_VERSION", "").strip() or "dev"

# Test-only endpoints that break the worker serving them (/fault/...). Never in production.
FAULT_INJECTION = env_bool("DJANGO_FAULT_INJECTION", False)

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "chat",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "chatdemo.urls"
WSGI_APPLICATION = "chatdemo.wsgi.application"
ASGI_APPLICATION = "chatdemo.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------

_database_url = os.environ.get("DJANGO_DATABASE_URL", "").strip()
if _database_url:
    DATABASES = {"default": parse_database_url(_database_url)}
else:
    DATABASES = {
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(BASE_DIR / "db.sqlite3")}
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Channels -------------------------------------------------------------------------------

_channel_layers_json = os.environ.get("DJANGO_CHANNEL_LAYERS", "").strip()
if _channel_layers_json:
    CHANNEL_LAYERS = parse_channel_layers(_channel_layers_json)
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- Chat (the app's own settings, documented in README.md) --------------------------------

# A client that does not read: the frames that may wait for it (besides the history sent on
# connect), and the seconds the server waits to write one. Beyond either it is closed (4001).
CHAT_SEND_QUEUE = env_int("CHAT_SEND_QUEUE", 100, minimum=1)
CHAT_SEND_TIMEOUT = env_float("CHAT_SEND_TIMEOUT", 10.0)

# Messages a chat client may send: a token bucket per connection, refilled at
# CHAT_RATE_PER_SECOND and holding at most CHAT_RATE_BURST. Frames over it get an error frame.
CHAT_RATE_PER_SECOND = env_float("CHAT_RATE_PER_SECOND", 5.0)
CHAT_RATE_BURST = env_int("CHAT_RATE_BURST", 20, minimum=1)

# History retention: the newest messages kept per room, and the age at which messages go
# (0: no limit). Pruned on store, see chat/history.py.
CHAT_HISTORY_KEEP = env_int("CHAT_HISTORY_KEEP", 1000, minimum=0)
CHAT_HISTORY_MAX_AGE_DAYS = env_int("CHAT_HISTORY_MAX_AGE_DAYS", 30, minimum=0)

# --- Static files ---------------------------------------------------------------------------

STATIC_URL = "/static/"
STATIC_ROOT = Path(os.environ.get("DJANGO_STATIC_ROOT", "").strip() or BASE_DIR / "staticfiles")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        # Hashed file names (served with a long cache lifetime) outside DEBUG; this needs
        # `manage.py collectstatic` to have written the manifest.
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "django.contrib.staticfiles.storage.ManifestStaticFilesStorage",
    },
}

# --- Security -------------------------------------------------------------------------------

SECURE_PROXY = env_bool("DJANGO_SECURE_PROXY", False)
SILENCED_SYSTEM_CHECKS = []
if SECURE_PROXY:
    # TLS ends at nginx, which sets X-Forwarded-Proto and redirects plain HTTP itself.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = False
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = False
    SILENCED_SYSTEM_CHECKS += [
        "security.W008",  # SECURE_SSL_REDIRECT: nginx does the redirect to HTTPS.
        "security.W021",  # SECURE_HSTS_PRELOAD: preload-list submission is a deliberate opt-in.
    ]
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31536000 if SECURE_PROXY else 0)

# --- Internationalisation -------------------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Logging (stderr, collected by journald) ------------------------------------------------

LOG_LEVEL = os.environ.get("DJANGO_LOG_LEVEL", "").strip().upper() or "INFO"
if LOG_LEVEL not in logging.getLevelNamesMapping():
    raise ImproperlyConfigured(
        f"DJANGO_LOG_LEVEL must be a level such as DEBUG, INFO or WARNING, got {LOG_LEVEL!r}"
    )

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
            "formatter": "plain",
        },
    },
    "root": {"handlers": ["stderr"], "level": LOG_LEVEL},
    "loggers": {
        # Replace Django's default handlers (console only under DEBUG, mail_admins).
        "django": {"handlers": ["stderr"], "level": LOG_LEVEL, "propagate": False},
    },
}
