"""Fixtures of the realworld scenario: the project's site over https, its host, its release."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from stack_testing import Site, container, published_port

__all__ = ["container"]

APP = "notes"
HOME = f"/srv/{APP}"
SITE_HOST = "localhost"
PROJECT = Path(__file__).resolve().parents[3] / "apps" / "realworld"


@pytest.fixture(scope="module")
def site(host, tmp_path_factory) -> Iterator[Site]:
    """https through nginx by the site's name, trusting the certificate the host made."""
    cert = tmp_path_factory.mktemp("tls") / "site.crt"
    cert.write_text(host.file(f"/etc/nginx/tls/{APP}.crt").content_string)
    context = ssl.create_default_context(cafile=str(cert))
    yield Site(published_port(host.backend.get_hostname(), 443), SITE_HOST, "https", context)
