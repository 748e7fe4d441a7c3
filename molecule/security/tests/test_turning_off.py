"""Turning things off, one site.yml run each: leaving acme for a self-signed certificate (certbot
no longer holds or renews the site's certificate, nginx serves the new one, and the blackbox
exporter, with no certificate left to probe, stops while Prometheus goes on), then the metrics
(every exporter and Prometheus stop). Runs last in this scenario."""

from __future__ import annotations

import json

import pytest
from conftest import APP, CERT
from stack_testing import run_playbook

RENEWAL = f"/etc/letsencrypt/renewal/{APP}.conf"
LIVE = f"/etc/letsencrypt/live/{APP}"
METRICS_UNITS = [
    "prometheus-node-exporter",
    "prometheus-nginx-exporter",
    "mtail",
    "prometheus-redis-exporter",
    f"{APP}-metrics",
    "prometheus",
    "prometheus-blackbox-exporter",
]
EXPORTER_PORTS = [9100, 9113, 3903, 9121, 9808]


BLACKBOX = "prometheus-blackbox-exporter"
BLACKBOX_FILES = [
    "/etc/prometheus/channels-stack-blackbox.yml",
    "/etc/prometheus/channels-stack-tls-ca.pem",
]


@pytest.fixture(scope="module")
def acme_left(host):
    """The site.yml run that leaves acme for a self-signed certificate, the metrics still on."""
    assert host.file(RENEWAL).exists and host.file(LIVE).is_directory
    assert host.file(CERT).is_symlink
    for unit in METRICS_UNITS:
        assert host.service(unit).is_running, unit
    for path in BLACKBOX_FILES:
        assert host.file(path).exists, path
    run = run_playbook("site", extra_vars={"nginx_tls_mode": "selfsigned"}, timeout=600)
    assert run.rc == 0, run.output[-4000:]
    return run


@pytest.fixture(scope="module")
def turned_off(host, acme_left):
    """The site.yml run that turns the metrics off, the certificate still self-signed.

    The blackbox exporter, stopped by the run before, is enabled by hand again: turning the
    metrics off must stop it too (as it does with certificates to probe)."""
    host.check_output("systemctl enable %s", BLACKBOX)
    assert host.service(BLACKBOX).is_enabled
    run = run_playbook(
        "site",
        extra_vars={"nginx_tls_mode": "selfsigned", "channels_stack_metrics": False},
        timeout=600,
    )
    assert run.rc == 0, run.output[-4000:]
    return run


def test_leaving_acme_deletes_certbots_lineage_and_serves_the_new_certificate(host, acme_left):
    assert not host.file(RENEWAL).exists
    assert not host.file(LIVE).exists
    assert "No certificates found" in host.check_output("certbot certificates 2>&1")
    # What certbot.timer runs now renews nothing, and asks no CA.
    renew = host.check_output("certbot renew --non-interactive 2>&1")
    assert "No renewals were attempted" in renew, renew
    # nginx serves a certificate of its own file, self-signed, for the site's name.
    cert = host.file(CERT)
    assert cert.exists and not cert.is_symlink
    served = host.check_output(
        "openssl s_client -connect 127.0.0.1:443 -servername localhost </dev/null 2>/dev/null"
        " | openssl x509 -noout -subject -issuer -nameopt RFC2253"
    )
    subject, issuer = (line.split("=", 1)[1] for line in served.splitlines())
    assert subject == issuer, served
    assert host.check_output("openssl x509 -in %s -noout -fingerprint", CERT) == host.check_output(
        "openssl s_client -connect 127.0.0.1:443 -servername localhost </dev/null 2>/dev/null"
        " | openssl x509 -noout -fingerprint"
    )


def test_no_certificate_to_probe_stops_the_blackbox_exporter_not_prometheus(host, acme_left):
    blackbox = host.service(BLACKBOX)
    assert not blackbox.is_running and not blackbox.is_enabled
    assert ":9115 " not in host.check_output("ss -Htln")
    for path in BLACKBOX_FILES:
        assert not host.file(path).exists, path
    assert host.service("prometheus").is_running
    config = host.file("/etc/prometheus/prometheus.yml").content_string
    assert "/probe" not in config, config
    # Prometheus, reloaded, scrapes its exporters and nothing through the stopped one.
    targets = json.loads(
        host.check_output(
            "python3 -c %s",
            "import urllib.request as u;"
            "print(u.urlopen('http://127.0.0.1:9090/api/v1/targets',timeout=10).read().decode())",
        )
    )
    scraped = [t["scrapeUrl"] for t in targets["data"]["activeTargets"]]
    assert scraped and not any(":9115/" in url for url in scraped), scraped


def test_turning_the_metrics_off_stops_every_exporter_and_prometheus(host, turned_off):
    for unit in METRICS_UNITS:
        service = host.service(unit)
        assert not service.is_running and not service.is_enabled, unit
    listening = host.check_output("ss -Htln")
    for port in EXPORTER_PORTS:
        assert f":{port} " not in listening, port
    # The site still serves, over the new certificate (trusted as itself).
    status = host.check_output(
        "python3 -c %s",
        "import ssl, urllib.request as u; "
        f"ctx = ssl.create_default_context(cafile='{CERT}'); "
        "print(u.urlopen('https://localhost/healthz', context=ctx, timeout=10).status)",
    )
    assert status == "200"
