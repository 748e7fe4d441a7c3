"""A configuration change that fails its check never reaches the running service."""

from __future__ import annotations

from stack_testing import run_playbook


def test_a_site_that_fails_nginx_t_is_rolled_back_and_nginx_keeps_serving(host, site):
    site_conf = "/etc/nginx/sites-available/channels-app.conf"
    before = host.file(site_conf).sha256sum
    master_before = host.check_output("cat /run/nginx.pid")

    run = run_playbook(
        "site", "--tags", "nginx", "-e", "nginx_extra_server_config='no_such_directive on;'"
    )

    assert run.returncode != 0, "the play must fail on a configuration nginx -t rejects"
    assert "nginx -t" in run.stdout and "no_such_directive" in run.stdout, run.stdout[-3000:]
    assert host.file(site_conf).sha256sum == before, "the previous site file must be restored"
    assert host.run("nginx -t").rc == 0
    assert host.check_output("cat /run/nginx.pid") == master_before
    status, body = site.get_json("/healthz")
    assert (status, body["status"]) == (200, "ok")
