"""The shared site tests, against this scenario's site: https and wss by the site's
name, trusting only the test's own root CA (so nginx must serve the whole chain)."""

from __future__ import annotations

from stack_testing import APP
from test_backup import test_the_backup_timer_is_waiting_and_the_backups_are_private
from test_http import (
    test_chat_page_and_its_static_files_are_served_by_nginx_with_cache_headers,
    test_each_request_has_one_id_in_the_response_the_app_and_the_access_log,
    test_healthz_is_ok_through_nginx,
)
from test_state import (
    test_app_service_is_notify_type_with_reload_and_restart,
    test_gunicorn_runs_uvicorn_workers,
    test_no_secret_was_replaced_by_ansibles_no_log_placeholder,
    test_redis_listens_on_loopback_only,
    test_redis_refuses_clients_without_a_password,
    test_the_journal_is_capped_as_the_journald_role_says,
    test_top_level_group_vars_reach_the_host,
    test_unit_is_enabled_and_running,
)
from test_websockets import (
    test_broadcast_reaches_every_client_in_the_room_across_workers,
    test_echo_through_nginx,
    test_foreign_origin_is_refused,
    test_group_members_are_removed_when_clients_leave,
)

__all__ = [
    "test_app_service_is_notify_type_with_reload_and_restart",
    "test_broadcast_reaches_every_client_in_the_room_across_workers",
    "test_chat_page_and_its_static_files_are_served_by_nginx_with_cache_headers",
    "test_each_request_has_one_id_in_the_response_the_app_and_the_access_log",
    "test_echo_through_nginx",
    "test_foreign_origin_is_refused",
    "test_group_members_are_removed_when_clients_leave",
    "test_gunicorn_runs_uvicorn_workers",
    "test_healthz_is_ok_through_nginx",
    "test_no_secret_was_replaced_by_ansibles_no_log_placeholder",
    "test_redis_listens_on_loopback_only",
    "test_redis_refuses_clients_without_a_password",
    "test_the_backup_timer_is_waiting_and_the_backups_are_private",
    "test_the_journal_is_capped_as_the_journald_role_says",
    "test_top_level_group_vars_reach_the_host",
    "test_unit_is_enabled_and_running",
]


def test_the_site_is_reached_over_https_by_its_name(site):
    assert site.scheme == "https" and site.host == "chat.example.com"
    status, headers, _ = site.get("/healthz")
    assert status == 200
    assert headers["strict-transport-security"].startswith("max-age=")


def test_secrets_from_the_vault_are_used_and_none_is_generated_on_the_host(host):
    env = host.file(f"/etc/{APP}/env")
    assert (env.user, env.group, env.mode) == ("root", "root", 0o600)
    conf = host.file("/etc/redis/redis.conf")
    assert (conf.user, conf.group, conf.mode) == ("root", "redis", 0o640)
    for generated in (
        f"/etc/{APP}/secret_key",
        "/etc/redis/default.password",
        "/etc/redis/channels.password",
    ):
        assert not host.file(generated).exists, (
            f"{generated}: generated although the vault gives it"
        )


def test_the_app_goes_by_the_users_name_and_nothing_by_another(host):
    assert APP == "mychat"
    assert host.service(f"{APP}.service").is_running
    for other in ("channels-app", "chat"):
        for path in (f"/etc/{other}", f"/srv/{other}", f"/var/lib/{other}", f"/run/{other}"):
            assert not host.file(path).exists, path
        assert not host.file(f"/usr/local/bin/{other}-manage").exists
        assert not host.file(f"/etc/nginx/sites-enabled/{other}.conf").exists
        units = host.run("systemctl list-unit-files --no-legend %s", f"{other}.*").stdout
        assert units.strip() == "", units
    leftovers = host.run("find /etc /srv /var/lib /run /usr/local -name '*channels-app*'").stdout
    assert leftovers.split() == [], leftovers
