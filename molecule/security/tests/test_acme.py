"""nginx_tls_mode acme: the certificate certbot got from the scenario's ACME CA.

The CA is pebble on the host (prepare.yml), which checked the HTTP-01
challenges through nginx on port 80 as a public CA would. Renewal is forced
here, as certbot's timer would run it, with websockets open across it.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import time
import uuid

from conftest import APP, SITE_HOST

HOOK = "/etc/letsencrypt/renewal-hooks/deploy/channels-stack-nginx"
WEBROOT = "/var/www/acme-challenge"
LIVE = f"/etc/letsencrypt/live/{APP}"


def served_certificate(https_port: int, ctx: ssl.SSLContext) -> dict:
    """The certificate nginx presents for the site's name, verified against the CA's root only."""
    with (
        socket.create_connection(("127.0.0.1", https_port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=SITE_HOST) as tls,
    ):
        return tls.getpeercert()


def serial_of(https_port: int, ctx: ssl.SSLContext) -> str:
    return served_certificate(https_port, ctx)["serialNumber"]


def test_the_certificate_served_chains_to_the_acme_ca_and_names_the_site(https_port, tls_context):
    # The context trusts pebble's root alone: the handshake passing proves nginx
    # sends the intermediate with the leaf.
    cert = served_certificate(https_port, tls_context)
    issuer = dict(part[0] for part in cert["issuer"])
    print(f"serial {cert['serialNumber']}, issuer {issuer}, until {cert['notAfter']}")
    assert issuer["commonName"].startswith("Pebble Intermediate CA")
    assert ("DNS", SITE_HOST) in cert["subjectAltName"]


def test_nginx_serves_certbots_current_files(host):
    assert (
        host.file(f"/etc/nginx/tls/{APP}.crt").linked_to
        == host.file(f"{LIVE}/fullchain.pem").linked_to
    )
    assert (
        host.file(f"/etc/nginx/tls/{APP}.key").linked_to
        == host.file(f"{LIVE}/privkey.pem").linked_to
    )
    renewal = host.file(f"/etc/letsencrypt/renewal/{APP}.conf").content_string
    assert "server = https://localhost:14000/dir" in renewal
    assert "authenticator = webroot" in renewal


def test_plain_http_answers_challenges_and_redirects_everything_else(host, plain_site):
    token = uuid.uuid4().hex
    path = f"{WEBROOT}/.well-known/acme-challenge/{token}"
    host.run_expect(
        [0], f"mkdir -p {WEBROOT}/.well-known/acme-challenge && echo {token}.key > {path}"
    )
    try:
        status, _, body = plain_site.get(f"/.well-known/acme-challenge/{token}")
        assert (status, body.strip()) == (200, f"{token}.key".encode())
        status, _, _ = plain_site.get("/.well-known/acme-challenge/no-such-token")
        assert status == 404
        status, headers, _ = plain_site.get(f"/.well-known/{token}")
        assert status == 301 and headers["location"].startswith("https://")
    finally:
        host.run(f"rm -f {path}")


def test_the_renewal_timer_runs_with_the_private_ca(host):
    timer = host.service("certbot.timer")
    assert timer.is_enabled and timer.is_running
    env = host.check_output("systemctl show certbot.service -p Environment --value")
    assert "REQUESTS_CA_BUNDLE=/etc/letsencrypt/channels-stack-acme-ca.pem" in env
    hook = host.file(HOOK)
    assert (hook.user, hook.mode) == ("root", 0o755)


def nginx_workers(host) -> set[str]:
    master = host.check_output("systemctl show nginx -p MainPID --value")
    return set(host.check_output(f"pgrep -P {master}").split())


def test_the_deploy_hook_reloads_nothing_when_nginx_t_fails(host, https_port, tls_context):
    serial = serial_of(https_port, tls_context)
    workers = nginx_workers(host)
    broken = "/etc/nginx/conf.d/zz-broken.conf"
    host.run_expect([0], f"echo 'this is not nginx' > {broken}")
    try:
        run = host.run(HOOK)
        assert run.rc != 0
        assert "zz-broken.conf" in run.stderr
    finally:
        host.run(f"rm -f {broken}")
    # A reload would have started new workers.
    assert nginx_workers(host) == workers
    assert host.service("nginx").is_running
    assert serial_of(https_port, tls_context) == serial
    # And with the configuration whole again, the same hook does reload.
    assert host.run(HOOK).rc == 0
    deadline = time.monotonic() + 10
    while nginx_workers(host) & workers and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not nginx_workers(host) & workers


def test_a_forced_renewal_changes_the_certificate_and_drops_no_open_websocket(
    host, site, https_port, tls_context
):
    room = f"renew-{uuid.uuid4().hex[:8]}"
    sockets = 20
    before = serial_of(https_port, tls_context)

    async def scenario() -> None:
        clients = [await site.ws(f"/ws/chat/{room}/") for _ in range(sockets)]
        try:
            # As certbot's timer runs it (the unit's environment), but due now.
            env = host.check_output("systemctl show certbot.service -p Environment --value")
            renew = host.run(
                f"env {env} certbot renew --force-renewal --cert-name {APP}"
                " --no-random-sleep-on-renew"
            )
            assert renew.rc == 0, renew.stdout + renew.stderr
            # The reload is signalled, then done by nginx's master: new
            # connections meet the new workers a moment later.
            deadline = time.monotonic() + 10
            after = serial_of(https_port, tls_context)
            while after == before and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                after = serial_of(https_port, tls_context)
            print(f"serial before {before}, after {after}; {sockets} websockets open across it")
            assert after != before
            await clients[0].send(json.dumps({"message": "after renewal"}))
            for ws in clients:
                got = json.loads(await asyncio.wait_for(ws.recv(), 5))
                assert got["message"] == "after renewal"
            async with site.ws(f"/ws/chat/{room}/") as late:
                await late.send(json.dumps({"message": "new socket"}))
                frame = json.loads(await asyncio.wait_for(late.recv(), 5))
                while frame.get("history"):  # the room's past comes first
                    frame = json.loads(await asyncio.wait_for(late.recv(), 5))
                assert frame["message"] == "new socket"
        finally:
            for ws in clients:
                await ws.close()

    asyncio.run(scenario())
