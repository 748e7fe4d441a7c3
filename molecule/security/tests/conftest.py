"""Fixtures of the security scenario: the site over https, its ACME CA.

The shared helpers of ../../resources/tests/stack_testing.py are reused;
only what TLS changes is added here.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

# Shared with the other single-host scenarios (molecule/resources/tests/stack_testing.py);
# listed in __all__ so that pytest registers the fixtures and tests import the helpers.
from stack_testing import SITE_HOST, Site, container, http_port, published_port, redis_admin

__all__ = ["SITE_HOST", "Site", "container", "http_port", "published_port", "redis_admin"]

APP = "channels-app"
CERT = f"/etc/nginx/tls/{APP}.crt"
KEY = f"/etc/nginx/tls/{APP}.key"
# pebble, the scenario's ACME CA (prepare.yml): its management interface hands
# out the root it issues from, over HTTPS with pebble's own certificate.
ACME_ROOT_URL = "https://localhost:15000/roots/0"
ACME_LISTENER_CERT = "/etc/pebble/cert.pem"


def acme_root(host) -> str:
    """The PEM root certificate pebble issues from (a new one each time pebble starts)."""
    script = (
        "import ssl, urllib.request; "
        f"ctx = ssl.create_default_context(cafile='{ACME_LISTENER_CERT}'); "
        f"print(urllib.request.urlopen('{ACME_ROOT_URL}', context=ctx, timeout=10).read().decode())"
    )
    return host.check_output(f'python3 -c "{script}"') + "\n"


@pytest.fixture(scope="module")
def https_port(container: str) -> int:
    return published_port(container, 443)


@pytest.fixture(scope="module")
def site_ca(host, tmp_path_factory) -> Path:
    """The ACME CA's root, as the only CA a client trusts."""
    path = tmp_path_factory.mktemp("tls") / "acme-root.crt"
    path.write_text(acme_root(host))
    return path


@pytest.fixture(scope="module")
def tls_context(site_ca: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(site_ca))
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    return ctx


@pytest.fixture(scope="module")
def site(https_port: int, tls_context: ssl.SSLContext) -> Iterator[Site]:
    yield Site(https_port, scheme="https", ssl_context=tls_context)


@pytest.fixture(scope="module")
def plain_site(http_port: int) -> Iterator[Site]:
    yield Site(http_port)
