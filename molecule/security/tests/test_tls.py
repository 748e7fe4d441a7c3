"""TLS at nginx: redirects, protocols, certificate, headers, https and wss to the app."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import ssl
import uuid

import pytest
from conftest import APP, KEY, SITE_HOST
from websockets.exceptions import InvalidStatus

SECURITY_HEADERS = {
    "strict-transport-security": re.compile(r"max-age=\d{7,}"),
    "x-content-type-options": re.compile(r"^nosniff$"),
    "referrer-policy": re.compile(r"^(same-origin|strict-origin-when-cross-origin|no-referrer)$"),
    "x-frame-options": re.compile(r"^(DENY|SAMEORIGIN)$"),
}


def handshake(port: int, ctx: ssl.SSLContext, server_name: str = SITE_HOST) -> str:
    """Open a TLS connection to nginx and return the negotiated protocol."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        return tls.version() or ""


def test_plain_http_redirects_to_https_keeping_path_and_query(plain_site):
    status, headers, _ = plain_site.get("/ws-less/page?room=a&x=1")
    assert status == 301
    assert headers["location"] == f"https://{SITE_HOST}/ws-less/page?room=a&x=1"


def test_healthz_is_ok_over_https_with_the_certificate_for_the_site_name(site):
    status, body = site.get_json("/healthz")
    assert status == 200
    assert body["status"] == "ok"
    assert body["channel_layer"] == "ok"


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_tls_1_2_and_1_3_are_accepted(https_port, site_ca, version):
    ctx = ssl.create_default_context(cafile=str(site_ca))
    ctx.minimum_version = ctx.maximum_version = version
    assert handshake(https_port, ctx) == version.name.replace("_", ".")


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_tls_before_1_2_is_refused(https_port, version):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    # Let this client offer the old protocol, so that a refusal is the server's.
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.minimum_version = ctx.maximum_version = version
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        handshake(https_port, ctx)


def test_tls_1_2_without_forward_secrecy_is_refused(https_port):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("AES128-GCM-SHA256:AES256-SHA:AES128-SHA")
    with pytest.raises(ssl.SSLError):
        handshake(https_port, ctx)


def test_tls_handshake_for_an_unknown_name_is_refused(https_port):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with pytest.raises(ssl.SSLError):
        handshake(https_port, ctx, server_name="not-our-site.example")


@pytest.mark.parametrize("path", ["/", "/healthz", "/no-such-page/"])
def test_app_responses_carry_hsts_and_security_headers(site, path):
    _, headers, _ = site.get(path)
    for name, pattern in SECURITY_HEADERS.items():
        assert name in headers, f"{path}: no {name} header in {headers}"
        assert pattern.search(headers[name]), f"{path}: {name}: {headers[name]!r}"
        assert "," not in headers[name], f"{path}: {name} sent twice: {headers[name]!r}"


def test_static_files_carry_hsts_and_security_headers(site):
    _, _, page = site.get("/")
    assets = re.findall(rb'(?:src|href)="(/static/[^"]+)"', page)
    assert assets
    for asset in assets:
        status, headers, _ = site.get(asset.decode())
        assert status == 200, asset
        assert "public" in headers["cache-control"]
        for name, pattern in SECURITY_HEADERS.items():
            assert pattern.search(headers.get(name, "")), f"{asset}: {name}: {headers}"


def test_wss_echo_through_nginx(site):
    async def scenario():
        async with site.ws("/ws/echo/") as ws:
            await ws.send("over tls")
            assert await asyncio.wait_for(ws.recv(), 5) == "over tls"

    asyncio.run(scenario())


def test_wss_chat_broadcast_reaches_every_client_through_redis(site):
    name = f"t-{uuid.uuid4().hex[:10]}"

    async def scenario():
        clients = [await site.ws(f"/ws/chat/{name}/") for _ in range(6)]
        try:
            await clients[0].send(json.dumps({"message": "secure hello"}))
            for ws in clients:
                got = json.loads(await asyncio.wait_for(ws.recv(), 5))
                assert got["message"] == "secure hello"
        finally:
            for ws in clients:
                await ws.close()

    asyncio.run(scenario())


def test_wss_from_a_plain_http_origin_is_refused(site):
    async def scenario():
        with pytest.raises(InvalidStatus) as refused:
            async with site.ws("/ws/echo/", origin="http://evil.example"):
                pass
        assert refused.value.response.status_code == 403

    asyncio.run(scenario())


def test_private_key_is_readable_by_root_only(host):
    # With acme, nginx's path is a link to certbot's current key.
    link = host.file(KEY)
    assert link.is_symlink
    key = host.file(link.linked_to)
    assert (key.user, key.group, key.mode) == ("root", "root", 0o600)
    assert host.file("/etc/nginx/tls").mode == 0o700
    assert host.file("/etc/letsencrypt/archive").mode == 0o700


def test_nginx_overwrites_the_forwarded_scheme(host):
    config = host.check_output("nginx -T 2>/dev/null")
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in config
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in config


def test_django_trusts_the_proxy_scheme_and_marks_cookies_secure(host):
    out = host.check_output(
        f"/usr/local/bin/{APP}-manage shell -c "
        '"from django.conf import settings as s; '
        "print(s.SECURE_PROXY_SSL_HEADER, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, "
        's.SECURE_HSTS_SECONDS, s.CSRF_TRUSTED_ORIGINS)"'
    ).splitlines()[-1]
    assert out == "('HTTP_X_FORWARDED_PROTO', 'https') True True 31536000 ['https://localhost']"


def test_django_check_deploy_reports_no_issues(host):
    cmd = host.run(f"/usr/local/bin/{APP}-manage check --deploy --fail-level WARNING")
    print(cmd.stdout, cmd.stderr)
    assert cmd.rc == 0, cmd.stdout + cmd.stderr
    assert "System check identified no issues" in cmd.stdout
    assert "WARNINGS" not in cmd.stdout + cmd.stderr
