"""The provided certificate (README step 4): the test's own CA, an intermediate and
the leaf, from the vault. nginx serves the whole chain, the key stays root's, and a
key that is not the certificate's stops the run before nginx is touched."""

from __future__ import annotations

import json
import re
import subprocess

from conftest import EPHEMERAL
from stack_testing import APP, ENSURE_TASK

CERT = f"/etc/nginx/tls/{APP}.crt"
KEY = f"/etc/nginx/tls/{APP}.key"
WATCHED = [CERT, KEY, f"/etc/nginx/sites-available/{APP}.conf", "/etc/nginx/nginx.conf"]


def served_chain(site) -> list[str]:
    """Subjects of the certificates nginx sends, in order, as openssl s_client shows them."""
    argv = ["openssl", "s_client", "-connect", f"{site.address}:{site.port}"]
    argv += ["-servername", site.host, "-showcerts"]
    out = subprocess.run(
        argv, input="", capture_output=True, text=True, timeout=30, check=False
    ).stdout
    return re.findall(r"^\s*\d+ s:(.*)$", out, re.M)


def test_nginx_serves_the_leaf_and_its_intermediate(site):
    chain = served_chain(site)
    assert len(chain) == 2, chain
    assert "chat.example.com" in chain[0] and "intermediate" in chain[1], chain


def test_a_client_trusting_only_the_root_ca_verifies_the_site(site):
    # The site fixture trusts ca.pem alone: a missing intermediate would fail here.
    status, _, _ = site.get("/healthz")
    assert status == 200


def test_the_key_is_private_to_root_and_matches_the_vault(host):
    key = host.file(KEY)
    assert (key.user, key.group, key.mode) == ("root", "root", 0o600)
    assert host.file("/etc/nginx/tls").mode == 0o700
    installed = host.file(CERT).content_string.strip()
    assert installed == (EPHEMERAL / "tls" / "chain.pem").read_text().strip()


def test_a_key_that_is_not_the_certificates_stops_the_run_before_nginx_is_touched(
    host, operator, site
):
    before = host.check_output("sha256sum " + " ".join(WATCHED))
    other_key = (EPHEMERAL / "tls" / "other-key.pem").read_text()
    run = operator.site_yml("-e", json.dumps({"nginx_tls_certificate_key": other_key}))
    assert run.rc != 0, run.output[-3000:]
    assert (
        "nginx_tls_certificate_key: this key does not belong to the first certificate"
        in " ".join(run.output.split())
    ), run.output[-3000:]
    assert not ENSURE_TASK.search(run.output), "a task that changes things ran after the checks"
    assert run.recap()["changed"] == 0
    assert other_key.strip().splitlines()[1] not in run.output, "the key was printed"
    assert host.check_output("sha256sum " + " ".join(WATCHED)) == before
    assert site.get("/healthz")[0] == 200
