"""The project deployed as it is: its page, static files, admin, websocket, pins.

Nothing in apps/realworld was written for this bundle: the settings module the
role writes imports config.settings.production and sets the database, cache,
static root, hosts, secret key and proxy settings; the environment also carries
the names the project reads itself (DATABASE_URL, REDIS_URL, ...).
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import json
import re
import shlex
import shutil
import urllib.parse
import urllib.request
from pathlib import Path

from conftest import APP, HOME, PROJECT
from stack_testing import PlaybookRun, run_playbook


def env_of(host) -> dict[str, str]:
    lines = host.check_output(f"cat /etc/{APP}/env").splitlines()
    return {
        k: shlex.split(v)[0] if v else ""
        for k, v in (
            line.split("=", 1) for line in lines if "=" in line and not line.startswith("#")
        )
    }


def test_the_project_files_are_deployed_unchanged(host):
    release = host.check_output(f"readlink -f {HOME}/current")
    for name in ("config/settings/production.py", "config/asgi.py", "pyproject.toml", "uv.lock"):
        deployed = host.file(f"{release}/{name}").content_string
        assert deployed == (PROJECT / name).read_text(), name


def test_the_page_is_served_and_the_redis_cache_counts_visits(site):
    counts = []
    for _ in range(2):
        status, _, body = site.get("/")
        assert status == 200, body[:500]
        counts.append(int(re.search(rb"Visit (\d+)", body).group(1)))
    assert counts[1] == counts[0] + 1, counts


def test_the_projects_static_files_are_collected_where_nginx_serves_them(site, host):
    _, _, page = site.get("/")
    css = re.search(rb'href="(/static/css/project\.[0-9a-f]{12}\.css)"', page)
    assert css, page[:500]
    status, headers, body = site.get(css.group(1).decode())
    assert status == 200 and b"font-family" in body
    assert "public" in headers.get("cache-control", "")
    # Collected into the deployment's static root, not the release's staticfiles/.
    assert host.file(f"{HOME}/static/staticfiles.json").exists
    release = host.check_output(f"readlink -f {HOME}/current")
    assert not host.file(f"{release}/staticfiles").exists


def test_the_admin_login_works_with_the_projects_secure_cookies(site, host):
    password = "correct-horse-battery-staple-1"
    made = host.run(
        f"DJANGO_SUPERUSER_PASSWORD={password} /usr/local/bin/{APP}-manage createsuperuser "
        "--noinput --username admin --email admin@example.com"
    )
    assert made.rc == 0 or "already taken" in made.stderr, made.stderr
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(jar),
        urllib.request.HTTPSHandler(context=site.ssl_context),
    )
    base = f"https://{site.host}:{site.port}"
    login = opener.open(f"{base}/manage/login/", timeout=10).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login).group(1)
    data = urllib.parse.urlencode(
        {
            "csrfmiddlewaretoken": token,
            "username": "admin",
            "password": password,
            "next": "/manage/",
        }
    ).encode()
    # As a browser on the site's own port (443) sends it; the test reaches nginx
    # through a published port, which Django's Referer check would not know.
    referer = f"https://{site.host}/manage/login/"
    request = urllib.request.Request(
        f"{base}/manage/login/", data=data, headers={"Referer": referer}
    )
    landed = opener.open(request, timeout=10)
    assert landed.url.endswith("/manage/"), landed.url
    assert "Site administration" in landed.read().decode()


def test_the_projects_websocket_answers_ping_through_nginx(site):
    async def ping() -> str:
        async with site.ws("/ws/") as ws:
            await ws.send("ping")
            return await asyncio.wait_for(ws.recv(), 5)

    assert asyncio.run(ping()) == "pong!"


def test_websockets_get_the_websocket_location_and_its_long_timeouts(host):
    config = host.check_output("nginx -T 2>/dev/null")
    location = re.search(r"location /ws/ \{(.*?)\}", config, re.S)
    assert location, "no websocket location in the asgi mode"
    assert "proxy_read_timeout 7200s;" in location.group(1)


def test_the_projects_pins_of_the_server_packages_are_kept(host):
    python = f"{HOME}/current/.venv/bin/python"
    script = (
        "import json, importlib.metadata as m; "
        "print(json.dumps({p: m.version(p) for p in ('uvicorn', 'django', 'psycopg')}))"
    )
    versions = json.loads(host.check_output("%s -c %s", python, script))
    assert versions["uvicorn"] == "0.52.4", "the project pins uvicorn 0.52.4, the bundle 0.54.0"
    assert versions["django"] == "6.1.3"


def test_the_environment_carries_the_names_the_project_reads(host):
    env = env_of(host)
    assert env["DATABASE_URL"].startswith("postgres://")
    assert env["REDIS_URL"].startswith("redis://")
    assert env["DJANGO_ADMIN_URL"] == "manage/"
    assert env["DJANGO_SETTINGS_MODULE"] == "notes_deploy_settings"


def deploy(local_path: Path) -> PlaybookRun:
    return run_playbook("deploy", extra_vars={"django_app_local_path": str(local_path)})


def test_a_redeploy_serves_the_new_stylesheet_and_a_second_one_changes_nothing(
    site, host, tmp_path
):
    project = tmp_path / "realworld"
    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns("__pycache__", ".venv"))
    with (project / "realworld" / "static" / "css" / "project.css").open("a") as css:
        css.write("\n.visits { color: #555; }\n")

    first = deploy(project)
    assert first.rc == 0, first.output[-3000:]
    _, _, page = site.get("/")
    url = re.search(rb'href="(/static/css/project\.[0-9a-f]{12}\.css)"', page).group(1).decode()
    status, _, body = site.get(url)
    assert status == 200 and b".visits" in body

    second = deploy(project)
    print(f"\nredeploy: {first.seconds:.1f} s; again: {second.seconds:.1f} s, {second.recap()}")
    assert second.rc == 0 and second.recap()["changed"] == 0, second.output[-3000:]


def test_the_apps_redis_user_was_refused_no_command(host):
    """Redis logs each command it refused an ACL user: none of the cache's."""
    password = host.file("/etc/redis/default.password").content_string.strip()
    log = host.check_output(
        "redis-cli --no-auth-warning --user default --pass %s ACL LOG", password
    ).splitlines()
    refused = [log[i + 1] for i, line in enumerate(log[:-1]) if line == "username"]
    assert "channels" not in refused, log
