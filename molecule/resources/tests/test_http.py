"""HTTP through nginx: health, static files, unknown hosts."""

from __future__ import annotations

import http.client
import json
import re
import time

import pytest


def test_healthz_is_ok_through_nginx(site):
    status, body = site.get_json("/healthz")
    assert status == 200
    assert body["status"] == "ok"
    assert body["database"] == "ok"
    assert body["channel_layer"] == "ok"


def test_chat_page_and_its_static_files_are_served_by_nginx_with_cache_headers(site):
    status, _, page = site.get("/")
    assert status == 200
    assets = re.findall(rb'(?:src|href)="(/static/[^"]+)"', page)
    assert any(a.endswith(b".js") for a in assets), assets
    for asset in assets:
        status, headers, body = site.get(asset.decode())
        assert status == 200, asset
        assert body
        assert "public" in headers.get("cache-control", ""), headers
        assert "expires" in headers
        # Django adds X-Frame-Options to its responses; nginx adds it to static files
        # only with TLS on, with the other security headers.
        assert ("x-frame-options" in headers) == (site.scheme == "https"), headers


def test_unknown_host_gets_no_response(site):
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        site.get("/", host="not-our-site.example")


def test_healthz_names_the_channel_layer_while_redis_is_down(host, site):
    host.run_expect([0], "systemctl stop redis-server")
    try:
        status, body = site.get_json("/healthz")
        assert status == 503
        assert body["status"] == "error"
        assert body["database"] == "ok"
        assert body["channel_layer"] != "ok"
    finally:
        host.run_expect([0], "systemctl start redis-server")
    deadline = time.monotonic() + 15
    while True:
        status, body = site.get_json("/healthz")
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert status == 200, body


def test_each_request_has_one_id_in_the_response_the_app_and_the_access_log(host, site):
    # A client's own X-Request-ID is replaced: the id is nginx's.
    status, headers, body = site.get("/healthz", headers={"X-Request-ID": "forged"})
    assert status == 200
    request_id = headers.get("x-request-id", "")
    assert re.fullmatch(r"[0-9a-f]{32}", request_id), headers
    assert json.loads(body)["request_id"] == request_id
    log = host.run(f"grep -c request_id={request_id} /var/log/nginx/access.log")
    assert log.stdout.strip() == "1", log


def test_a_rotated_access_log_is_reopened_by_nginx(host, site):
    rotate = host.run("logrotate --force /etc/logrotate.d/nginx")
    assert rotate.rc == 0, rotate.stderr
    assert host.file("/var/log/nginx/access.log.1").exists
    _, headers, _ = site.get("/healthz")
    # nginx writes to the new file once it reopened its logs (USR1 from logrotate).
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if headers["x-request-id"] in host.file("/var/log/nginx/access.log").content_string:
            break
        time.sleep(0.2)
    assert headers["x-request-id"] in host.file("/var/log/nginx/access.log").content_string
    assert host.file("/var/log/nginx/access.log").user == "www-data"
