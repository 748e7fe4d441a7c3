"""The environment contract of chatdemo.settings.

Each case starts a fresh interpreter with exactly the given environment, since the settings
are read once at import.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from chatdemo.settings import parse_channel_layers, parse_database_url
from django.core.exceptions import ImproperlyConfigured

APP_DIR = Path(__file__).resolve().parent.parent
LONG_SECRET = "k3V9-pXq2_wLr8ZsT1uYcN5bHd7fGj0mQe4aRo6iPv" * 2

PRINT_SETTINGS = """
import json, django
from django.conf import settings
django.setup()
print(json.dumps({name: getattr(settings, name, None) for name in %r}, default=str))
"""


def run(args, **env):
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "DJANGO_SETTINGS_MODULE": "chatdemo.settings",
    }
    environment.update(env)
    return subprocess.run(
        [sys.executable, *args],
        cwd=APP_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def settings_with(names, **env):
    result = run(["-c", PRINT_SETTINGS % (names,)], **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_missing_secret_key_is_refused_with_a_clear_message():
    result = run(["manage.py", "check"])

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "DJANGO_SECRET_KEY is not set" in result.stderr


def test_defaults():
    values = settings_with(
        [
            "DEBUG",
            "ALLOWED_HOSTS",
            "CSRF_TRUSTED_ORIGINS",
            "DATABASES",
            "STATIC_ROOT",
            "STATIC_URL",
            "STORAGES",
            "CHANNEL_LAYERS",
            "APP_VERSION",
            "SECURE_PROXY_SSL_HEADER",
            "SECURE_HSTS_SECONDS",
            "SESSION_COOKIE_SECURE",
            "USE_X_FORWARDED_HOST",
            "ASGI_APPLICATION",
            "FAULT_INJECTION",
            "WEBSOCKET_ORIGINS",
        ],
        DJANGO_SECRET_KEY="x",
    )

    assert values["DEBUG"] is False
    assert values["ALLOWED_HOSTS"] == ["localhost", "127.0.0.1"]
    assert values["CSRF_TRUSTED_ORIGINS"] == []
    assert values["DATABASES"]["default"]["ENGINE"] == "django.db.backends.sqlite3"
    assert values["DATABASES"]["default"]["NAME"] == str(APP_DIR / "db.sqlite3")
    assert values["STATIC_ROOT"] == str(APP_DIR / "staticfiles")
    assert values["STATIC_URL"] == "/static/"
    assert values["STORAGES"]["staticfiles"]["BACKEND"] == (
        "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"
    )
    assert values["CHANNEL_LAYERS"] == {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}
    }
    assert values["APP_VERSION"] == "dev"
    assert values["SECURE_PROXY_SSL_HEADER"] is None
    assert values["SECURE_HSTS_SECONDS"] == 0
    assert values["SESSION_COOKIE_SECURE"] is False
    assert values["USE_X_FORWARDED_HOST"] is False
    assert values["ASGI_APPLICATION"] == "chatdemo.asgi.application"
    assert values["FAULT_INJECTION"] is False
    assert values["WEBSOCKET_ORIGINS"] == []


def test_values_from_the_environment(tmp_path):
    layers = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [{"address": "redis://app:pw@127.0.0.1:6379/0", "socket_timeout": None}],
                "capacity": 100,
                "expiry": 60,
            },
        }
    }
    values = settings_with(
        [
            "DEBUG",
            "ALLOWED_HOSTS",
            "CSRF_TRUSTED_ORIGINS",
            "DATABASES",
            "STATIC_ROOT",
            "STORAGES",
            "CHANNEL_LAYERS",
            "APP_VERSION",
            "WEBSOCKET_ORIGINS",
        ],
        DJANGO_SECRET_KEY="x",
        DJANGO_DEBUG="true",
        DJANGO_ALLOWED_HOSTS=" chat.example.org, .example.net ,",
        DJANGO_CSRF_TRUSTED_ORIGINS="https://chat.example.org,https://*.example.net",
        DJANGO_DATABASE_URL=f"sqlite:///{tmp_path}/app.sqlite3",
        DJANGO_STATIC_ROOT=str(tmp_path / "static"),
        DJANGO_CHANNEL_LAYERS=json.dumps(layers),
        DJANGO_APP_VERSION="2.0.1",
        DJANGO_WEBSOCKET_ORIGINS="https://chat.example.org, http://localhost:8080",
    )

    assert values["DEBUG"] is True
    assert values["ALLOWED_HOSTS"] == ["chat.example.org", ".example.net"]
    assert values["CSRF_TRUSTED_ORIGINS"] == ["https://chat.example.org", "https://*.example.net"]
    assert values["DATABASES"]["default"]["NAME"] == str(tmp_path / "app.sqlite3")
    assert values["STATIC_ROOT"] == str(tmp_path / "static")
    assert values["STORAGES"]["staticfiles"]["BACKEND"] == (
        "django.contrib.staticfiles.storage.StaticFilesStorage"
    )
    assert values["CHANNEL_LAYERS"] == layers
    assert values["APP_VERSION"] == "2.0.1"
    assert values["WEBSOCKET_ORIGINS"] == ["https://chat.example.org:443", "http://localhost:8080"]


def test_chat_settings_defaults_and_values_from_the_environment():
    names = [
        "CHAT_SEND_QUEUE",
        "CHAT_SEND_TIMEOUT",
        "CHAT_RATE_PER_SECOND",
        "CHAT_RATE_BURST",
        "CHAT_HISTORY_KEEP",
        "CHAT_HISTORY_MAX_AGE_DAYS",
    ]

    assert settings_with(names, DJANGO_SECRET_KEY="x") == {
        "CHAT_SEND_QUEUE": 100,
        "CHAT_SEND_TIMEOUT": 10.0,
        "CHAT_RATE_PER_SECOND": 5.0,
        "CHAT_RATE_BURST": 20,
        "CHAT_HISTORY_KEEP": 1000,
        "CHAT_HISTORY_MAX_AGE_DAYS": 30,
    }
    assert settings_with(
        names,
        DJANGO_SECRET_KEY="x",
        CHAT_SEND_QUEUE="500",
        CHAT_SEND_TIMEOUT="2.5",
        CHAT_RATE_PER_SECOND="0.5",
        CHAT_RATE_BURST="3",
        CHAT_HISTORY_KEEP="0",
        CHAT_HISTORY_MAX_AGE_DAYS=" 7 ",
    ) == {
        "CHAT_SEND_QUEUE": 500,
        "CHAT_SEND_TIMEOUT": 2.5,
        "CHAT_RATE_PER_SECOND": 0.5,
        "CHAT_RATE_BURST": 3,
        "CHAT_HISTORY_KEEP": 0,
        "CHAT_HISTORY_MAX_AGE_DAYS": 7,
    }


def test_secure_proxy():
    values = settings_with(
        [
            "SECURE_PROXY_SSL_HEADER",
            "SESSION_COOKIE_SECURE",
            "CSRF_COOKIE_SECURE",
            "SECURE_SSL_REDIRECT",
            "SECURE_HSTS_SECONDS",
            "SECURE_HSTS_INCLUDE_SUBDOMAINS",
            "SECURE_HSTS_PRELOAD",
        ],
        DJANGO_SECRET_KEY="x",
        DJANGO_SECURE_PROXY="1",
    )

    assert values == {
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_SSL_REDIRECT": False,
        "SECURE_HSTS_SECONDS": 31536000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_HSTS_PRELOAD": False,
    }
    shorter = settings_with(
        ["SECURE_HSTS_SECONDS"],
        DJANGO_SECRET_KEY="x",
        DJANGO_SECURE_PROXY="true",
        DJANGO_HSTS_SECONDS="3600",
    )
    assert shorter["SECURE_HSTS_SECONDS"] == 3600


def test_check_deploy_is_clean_behind_a_tls_proxy(tmp_path):
    result = run(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        DJANGO_SECRET_KEY=LONG_SECRET,
        DJANGO_DEBUG="0",
        DJANGO_SECURE_PROXY="1",
        DJANGO_ALLOWED_HOSTS="chat.example.org",
        DJANGO_STATIC_ROOT=str(tmp_path / "static"),
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (2 silenced)." in result.stdout


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DJANGO_DATABASE_URL", "mysql://app:pw@localhost/app"),
        ("DJANGO_CHANNEL_LAYERS", "{not json"),
        ("DJANGO_DEBUG", "maybe"),
        ("DJANGO_HSTS_SECONDS", "a year"),
        ("DJANGO_LOG_LEVEL", "LOUD"),
        ("DJANGO_WEBSOCKET_ORIGINS", "chat.example.org"),
        ("CHAT_SEND_QUEUE", "0"),
        ("CHAT_SEND_TIMEOUT", "0"),
        ("CHAT_SEND_TIMEOUT", "-1"),
        ("CHAT_SEND_TIMEOUT", "inf"),
        ("CHAT_SEND_TIMEOUT", "ten"),
        ("CHAT_RATE_PER_SECOND", "0"),
        ("CHAT_RATE_PER_SECOND", "nan"),
        ("CHAT_RATE_BURST", "0"),
        ("CHAT_RATE_BURST", "2.5"),
        ("CHAT_HISTORY_KEEP", "-1"),
        ("CHAT_HISTORY_KEEP", "all"),
        ("CHAT_HISTORY_MAX_AGE_DAYS", "-5"),
    ],
)
def test_invalid_values_are_refused_naming_the_variable(variable, value):
    result = run(["manage.py", "check"], DJANGO_SECRET_KEY="x", **{variable: value})

    assert result.returncode != 0
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("django.core.exceptions.ImproperlyConfigured: " + variable)


def test_parse_sqlite_url():
    assert parse_database_url("sqlite:////srv/chat/db.sqlite3") == {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": "/srv/chat/db.sqlite3",
    }
    relative = parse_database_url("sqlite:///data/db.sqlite3", base_dir=Path("/srv/app"))
    assert relative["NAME"] == "/srv/app/data/db.sqlite3"


def test_parse_postgres_url():
    assert parse_database_url(
        "postgres://chat%40ops:p%40ss%3Aw%2Ford@db.example.org:6432/chat%2Dprod?sslmode=require"
    ) == {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "chat-prod",
        "USER": "chat@ops",
        "PASSWORD": "p@ss:w/ord",
        "HOST": "db.example.org",
        "PORT": "6432",
        "OPTIONS": {"sslmode": "require"},
    }


def test_parse_postgres_url_defaults_and_socket_directory():
    config = parse_database_url("postgresql://app@%2Frun%2FPostgreSQL/app")

    assert config["HOST"] == "/run/PostgreSQL"
    assert config["PORT"] == ""
    assert config["USER"] == "app"
    assert config["PASSWORD"] == ""
    ipv6 = parse_database_url("postgres://app:pw@[::1]:5433/app")
    assert (ipv6["HOST"], ipv6["PORT"]) == ("::1", "5433")


@pytest.mark.parametrize(
    "url", ["mysql://app@localhost/app", "redis://localhost/0", "postgres://app@localhost/"]
)
def test_parse_database_url_refuses_what_it_cannot_use(url):
    with pytest.raises(ImproperlyConfigured, match="DJANGO_DATABASE_URL"):
        parse_database_url(url)


@pytest.mark.parametrize("raw", ["{not json", "[]", '{"other": {}}', '{"default": {}}'])
def test_parse_channel_layers_refuses_what_it_cannot_use(raw):
    with pytest.raises(ImproperlyConfigured, match="DJANGO_CHANNEL_LAYERS"):
        parse_channel_layers(raw)


def test_fault_injection_routes_the_blocking_endpoint_only_when_enabled():
    probe = (
        "import django; django.setup(); from django.urls import resolve; "
        "print(resolve('/fault/block').url_name)"
    )

    enabled = run(["-c", probe], DJANGO_SECRET_KEY="x", DJANGO_FAULT_INJECTION="1")
    disabled = run(["-c", probe], DJANGO_SECRET_KEY="x")

    assert enabled.returncode == 0, enabled.stderr
    assert enabled.stdout.strip() == "fault-block"
    assert disabled.returncode != 0
    assert "Resolver404" in disabled.stderr
