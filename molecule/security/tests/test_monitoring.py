"""Monitoring of what clients see: Prometheus (this host is also the monitoring host) probes
the site's certificate through the blackbox exporter, and counts nginx's answers by status
from its access log (mtail), which is what the 5xx-rate alert reads.

Prometheus scrapes and evaluates every 2 s here and the 5xx alert fires at once over a
1-minute window (molecule.yml); its HTTP API is read from inside the container.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

from conftest import APP
from cryptography import x509
from stack_testing import prometheus_api as prometheus

BLACKBOX = "http://127.0.0.1:9115"
MTAIL_PORT = 3903


def query(host, expr: str) -> list[dict]:
    return prometheus(host, "query", expr)["result"]


def poll(what: str, read, ok, within: float = 40):
    deadline = time.monotonic() + within
    while not ok(got := read()):
        assert time.monotonic() < deadline, f"{what}: {got}"
        time.sleep(0.5)
    return got


def served_chain_expiry(host, address: str) -> tuple[float, list[str]]:
    """The earliest notAfter of the chain nginx sends to a client naming localhost, and the
    chain's subjects."""
    out = host.check_output(
        "openssl s_client -connect %s -servername localhost -showcerts </dev/null 2>/dev/null",
        address,
    )
    pems = re.findall(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", out, re.S)
    assert pems, out
    chain = [x509.load_pem_x509_certificate(pem.encode()) for pem in pems]
    return (
        min(cert.not_valid_after_utc.timestamp() for cert in chain),
        [cert.subject.rfc4514_string() for cert in chain],
    )


def test_the_tls_probe_verifies_the_served_chain_and_reports_its_earliest_expiry(host):
    probes = poll(
        "probe_success of the tls job",
        lambda: query(host, 'probe_success{job="tls"}'),
        lambda r: len(r) == 1 and r[0]["value"][1] == "1",
    )
    labels = probes[0]["metric"]
    assert labels["server_name"] == "localhost"
    address = labels["instance"]
    assert address.endswith(":443") and not address.startswith("127."), address

    expiry, subjects = served_chain_expiry(host, address)
    assert len(subjects) >= 2, f"nginx sends the leaf alone: {subjects}"
    # The forced renewal of test_acme.py changed the certificate: the probe follows it.
    reported = poll(
        "probe_ssl_earliest_cert_expiry against the served chain's",
        lambda: float(query(host, 'probe_ssl_earliest_cert_expiry{job="tls"}')[0]["value"][1]),
        lambda v: v == expiry,
    )
    days = (reported - time.time()) / 86400
    print(
        f"\ntls probe of {address}: chain {subjects}, earliest expiry "
        f"{datetime.fromtimestamp(reported, UTC):%Y-%m-%d %H:%M} UTC ({days:.0f} days)"
    )


def test_the_expiry_and_probe_alerts_are_loaded_and_quiet_for_a_good_certificate(host):
    rules = {
        rule["name"]: rule
        for group in prometheus(host, "rules")["groups"]
        for rule in group["rules"]
    }
    for name in ("TlsCertificateExpiresSoon", "TlsProbeFailed", "Nginx5xxRate"):
        assert rules[name]["health"] == "ok", rules[name]
    assert "< 14 * 86400" in rules["TlsCertificateExpiresSoon"]["query"]
    assert rules["TlsCertificateExpiresSoon"]["state"] == "inactive"
    assert rules["TlsProbeFailed"]["state"] == "inactive"
    # What the expiry rule compares to 14 days, evaluated by Prometheus.
    left = float(query(host, 'probe_ssl_earliest_cert_expiry{job="tls"} - time()')[0]["value"][1])
    assert left > 14 * 86400, left


def test_the_probe_refuses_a_certificate_for_the_right_name_from_another_ca(host):
    """pebble's own listener has a certificate for localhost signed by a CA the probe does not
    trust: the probe fails, so TlsProbeFailed would fire for a wrong chain."""
    module = query(host, 'probe_success{job="tls"}')[0]["metric"]
    assert module["server_name"] == "localhost"

    def probe(target: str) -> str:
        return host.check_output(
            "python3 -c %s",
            "import urllib.request as u;"
            f"print(u.urlopen('{BLACKBOX}/probe?module=tls_1&target={target}',timeout=10).read().decode())",
        )

    assert re.search(r"^probe_success 1$", probe(module["instance"]), re.M)
    other = probe("127.0.0.1:15000&debug=true")
    assert re.search(r"^probe_success 0$", other, re.M), other
    # Refused for its issuer, not for want of a connection.
    assert "certificate signed by unknown authority" in other, other


def mtail_count(host, status: str) -> float:
    """nginx's answers of one status so far, as mtail counts them (on loopback, molecule.yml)."""
    address = "127.0.0.1"
    text = host.check_output(
        "python3 -c %s",
        "import urllib.request as u;"
        f"print(u.urlopen('http://{address}:{MTAIL_PORT}/metrics',timeout=5).read().decode())",
    )
    found = re.findall(
        rf'^channels_stack_nginx_responses_total{{[^}}]*status="{status}"[^}}]*}} (\S+)$',
        text,
        re.M,
    )
    return float(found[0]) if found else 0.0


def test_502s_while_the_app_is_down_are_counted_and_fire_the_5xx_alert(host, site):
    assert site.get("/")[0] == 200
    before = mtail_count(host, "502")
    failed = 0
    host.check_output("systemctl stop %s.socket %s.service", APP, APP)
    try:
        # Over several scrapes, so that Prometheus sees the series grow.
        for _ in range(12):
            failed += site.get("/")[0] == 502
            time.sleep(0.5)
    finally:
        host.check_output("systemctl start %s.socket", APP)
    assert failed == 12
    poll(
        "502s counted by mtail",
        lambda: mtail_count(host, "502") - before,
        lambda n: n == failed,
        within=10,
    )
    firing = poll(
        "Nginx5xxRate alert",
        lambda: query(host, 'ALERTS{alertname="Nginx5xxRate",alertstate="firing"}'),
        lambda r: len(r) == 1,
    )
    ratio = query(
        host,
        'sum(rate(channels_stack_nginx_responses_total{status=~"5.."}[1m]))'
        " / sum(rate(channels_stack_nginx_responses_total[1m]))",
    )
    print(
        f"\n{failed} answers 502 counted by mtail; Nginx5xxRate firing on "
        f"{firing[0]['metric']['instance']}, "
        f"5xx ratio {float(ratio[0]['value'][1]):.2f}"
    )
    poll("the site back", lambda: site.get("/")[0], lambda status: status == 200, within=20)
