"""Releases: deploy, a broken release that undoes itself, rollback, git, pruning.

The tests run in order and build on each other, like a day of deploys:
site.yml (converge) served release 1; here release 2 goes out while clients
use the site, broken releases are refused or switched back, rollback.yml
returns to release 1, and two git deploys push older releases out. The
background service (the demo's announcer) follows every switch.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import shlex
import subprocess
import time
from pathlib import Path

import pytest
from clients import SiteLoad
from conftest import APP, replace_in
from stack_testing import run_playbook
from websockets.asyncio.client import connect

HOME = "/srv/channels-app"
KEEP = 3  # django_app_keep_releases in molecule.yml
CHAT_BACK_WITHIN = 5.0
RELOAD_WINDOW = 15.0
CODE_ONLY_DEPLOY_LIMIT = 60.0
NO_CHANGE_DEPLOY_LIMIT = 30.0
GIT_REPO = "/srv/git/chatdemo.git"
ANNOUNCER = "channels-app-announcer"  # django_app_background_services in molecule.yml
ANNOUNCEMENT = re.compile(r"^release (\S+): announcement \d+$")

state: dict[str, str] = {}


def healthz(port: int) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/healthz", headers={"Host": "localhost"})
        resp = conn.getresponse()
        body = json.loads(resp.read())
        assert resp.status == 200, body
        return body
    finally:
        conn.close()


def current_release(host) -> str:
    return Path(host.check_output(f"readlink -f {HOME}/current")).name


def releases_on_host(host) -> set[str]:
    out = host.check_output(f"find {HOME}/releases -mindepth 1 -maxdepth 1 -printf '%f\\n'")
    return set(out.split())


def bump_code(app: Path, label: str) -> None:
    """A code-only change: same requirements, so the virtualenv is reused."""
    with (app / "chat" / "views.py").open("a") as views:
        views.write(f"\n# {label}\n")
    # A new stylesheet too: a new hashed file in the static root.
    with (app / "chat" / "static" / "chat" / "chat.css").open("a") as css:
        css.write(f"\n/* {label} */\n")


def announced_release(port: int, within: float = 20.0) -> str:
    """The release the next live announcement in the room announcements names, read by a
    chat client through nginx."""

    async def listen() -> str:
        async with connect(
            "ws://localhost/ws/chat/announcements/",
            host="127.0.0.1",
            port=port,
            origin="http://localhost",
            open_timeout=10,
        ) as ws:
            while True:
                frame = json.loads(await ws.recv())
                if not frame.get("history") and (found := ANNOUNCEMENT.match(frame["message"])):
                    return found.group(1)

    return asyncio.run(asyncio.wait_for(listen(), within))


def hashed_static_name(host, name: str) -> str:
    """The hashed file name the static manifest gives `name` now."""
    manifest = json.loads(host.file(f"{HOME}/static/staticfiles.json").content_string)
    return manifest["paths"][name]


def test_site_yml_serves_release_1_from_the_release_layout(host, http_port):
    current = host.file(f"{HOME}/current")
    assert current.is_symlink
    assert current.linked_to.startswith(f"{HOME}/releases/")
    venv = host.file(f"{current.linked_to}/.venv")
    assert venv.is_symlink and venv.linked_to.startswith(f"{HOME}/venvs/")
    release = current_release(host)
    state["release1"] = release
    state["version1"] = healthz(http_port)["version"]
    assert release.endswith(state["version1"]), (release, state["version1"])
    assert host.file(f"{HOME}/release-history").content_string.split() == [release]
    props = host.check_output("systemctl show -p WorkingDirectory channels-app.service")
    assert props == f"WorkingDirectory={HOME}/current"


def test_the_background_service_runs_release_1_as_the_app_in_its_sandbox(host, http_port):
    announcer = host.service(ANNOUNCER)
    assert announcer.is_running and announcer.is_enabled
    shown = "-p User -p WorkingDirectory -p NoNewPrivileges -p ProtectSystem"
    props = host.check_output(f"systemctl show {shown} {ANNOUNCER}").splitlines()
    assert sorted(props) == [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "User=channels-app",
        f"WorkingDirectory={HOME}/current",
    ]
    assert announced_release(http_port) == state["version1"]


def test_code_only_deploy_of_release_2_keeps_http_and_chat_working(
    host, http_port, playbook, app_copy
):
    app = app_copy("release2", lambda p: bump_code(p, "release 2"))
    master_before = host.check_output("systemctl show -p MainPID --value channels-app.service")
    with SiteLoad(http_port) as load:
        run = playbook("deploy", django_app_local_path=str(app), django_app_version="2")
    print(f"code-only deploy: {run.seconds:.1f} s; clients: {load.report.summary()}")
    assert run.rc == 0, run.output[-3000:]
    assert healthz(http_port)["version"] == "2"
    state["release2"] = current_release(host)
    assert state["release2"].startswith("2-local-")
    state["release2_css"] = hashed_static_name(host, "chat/chat.css")
    # A graceful reload (HUP): the same master, new workers.
    assert host.check_output("systemctl show -p MainPID --value channels-app.service") == (
        master_before
    )
    assert load.report.failures == [], load.report.failures
    assert {"2", state["version1"]} >= set(load.report.versions)
    assert load.report.close_codes, "the chat socket was not closed by the reload"
    assert set(load.report.close_codes) <= {1001, 1012}, load.report.close_codes
    assert load.report.reconnect_gaps, "the chat client never came back"
    assert load.report.longest_gap < CHAT_BACK_WITHIN, load.report.summary()
    assert load.report.chat_errors == []
    assert run.seconds < CODE_ONLY_DEPLOY_LIMIT
    # Both releases share one virtualenv: the requirements did not change.
    venvs = host.check_output(f"readlink -f {HOME}/releases/*/.venv | sort -u")
    assert len(venvs.split()) == 1, venvs
    state["release2_src"] = str(app)
    # The background service follows the switch.
    assert announced_release(http_port) == "2"
    state["announcer_pid"] = host.check_output(f"systemctl show -p MainPID --value {ANNOUNCER}")


def test_deploy_without_changes_changes_nothing_within_30s(host, playbook):
    run = playbook("deploy", django_app_local_path=state["release2_src"], django_app_version="2")
    print(f"no-change deploy: {run.seconds:.1f} s")
    assert run.rc == 0, run.output[-3000:]
    assert run.recap()["changed"] == 0 and run.recap()["failed"] == 0, run.output[-3000:]
    assert run.seconds < NO_CHANGE_DEPLOY_LIMIT
    assert current_release(host) == state["release2"]
    # Nothing switched: the background service kept running.
    pid = host.check_output(f"systemctl show -p MainPID --value {ANNOUNCER}")
    assert pid == state["announcer_pid"]


def test_release_whose_asgi_app_fails_to_import_is_never_switched_to(
    host, http_port, playbook, app_copy
):
    def break_import(app: Path) -> None:
        with (app / "chatdemo" / "asgi.py").open("a") as asgi:
            asgi.write('\nraise ImportError("release 3 is broken on purpose")\n')

    app = app_copy("release3-import", break_import)
    with SiteLoad(http_port) as load:
        run = playbook("deploy", django_app_local_path=str(app), django_app_version="3")
    print(f"refused release: {run.seconds:.1f} s; clients: {load.report.summary()}")
    assert run.rc != 0
    flat = " ".join(run.output.split())
    assert "release 3-local-" in flat and "was not switched to" in flat, run.output[-3000:]
    assert "importing chatdemo.asgi:application failed" in flat, run.output[-3000:]
    assert "release 3 is broken on purpose" in run.output
    assert current_release(host) == state["release2"]
    assert healthz(http_port)["version"] == "2"
    assert load.report.failures == []
    assert load.report.close_codes == [], "nothing was switched, no socket should close"


def test_release_failing_its_health_check_is_switched_back_to_release_2(
    host, http_port, playbook, app_copy
):
    app = app_copy(
        "release3-unhealthy",
        lambda p: replace_in(
            p / "chat" / "views.py",
            'healthy = database == "ok" and channel_layer == "ok"',
            "healthy = False",
        ),
    )
    announcer_before = host.check_output(f"systemctl show -p MainPID --value {ANNOUNCER}")
    with SiteLoad(http_port) as load:
        run = playbook("deploy", django_app_local_path=str(app), django_app_version="3")
        play_ended = time.time()
    print(f"switched-back release: {run.seconds:.1f} s; clients: {load.report.summary()}")
    assert run.rc != 0
    assert "release 3-local-" in run.output, run.output[-3000:]
    assert "failed after the switch and was rolled back" in run.output, run.output[-3000:]
    assert f"Release {state['release2']} serves again." in run.output, run.output[-3000:]
    assert current_release(host) == state["release2"]
    assert healthz(http_port)["version"] == "2"
    # /healthz of release 3 answers 503 by design, and two reloads follow each
    # other: failures may only fall inside that window, before the play ends.
    if load.report.failures:
        first, last = load.report.failures[0][0], load.report.failures[-1][0]
        assert last - first < RELOAD_WINDOW, load.report.failures
        assert last < play_ended
    assert load.report.longest_gap < CHAT_BACK_WITHIN, load.report.summary()
    # The background service went back with the release: restarted, into release 2.
    assert host.check_output(f"systemctl show -p MainPID --value {ANNOUNCER}") != announcer_before
    assert announced_release(http_port) == "2"


def test_rollback_returns_to_release_1(host, http_port, playbook):
    run = playbook("rollback")
    assert run.rc == 0, run.output[-3000:]
    assert current_release(host) == state["release1"]
    assert healthz(http_port)["version"] == state["version1"]
    assert host.file(f"{HOME}/release-history").content_string.split() == [state["release1"]]
    assert announced_release(http_port) == state["version1"]


def test_rollback_to_an_unknown_release_fails_naming_it(host, playbook):
    run = playbook("rollback", django_app_rollback_to="no-such-release")
    assert run.rc != 0
    assert "no release named no-such-release (django_app_rollback_to)" in run.output
    assert current_release(host) == state["release1"]


@pytest.fixture(scope="module")
def git_repo(host, container) -> dict[str, str]:
    """A bare repository on the host with a tag (v4) and a later commit."""
    assert host.run("command -v git || apt-get install -y -q git").rc == 0
    assert host.run("mkdir -p /srv/git && rm -rf /srv/git/chatdemo-src").rc == 0
    subprocess.run(["docker", "cp", f"{APP}/.", f"{container}:/srv/git/chatdemo-src"], check=True)
    script = f"""
        set -e
        cd /srv/git/chatdemo-src
        rm -rf .git db.sqlite3 staticfiles
        git init -q -b main
        git -c user.name=ci -c user.email=ci@localhost add -A
        git -c user.name=ci -c user.email=ci@localhost commit -qm 'release 4'
        git tag v4
        echo '# release 5' >> chat/views.py
        git -c user.name=ci -c user.email=ci@localhost commit -qam 'release 5'
        rm -rf {GIT_REPO} && mkdir -p {GIT_REPO}
        git init -q --bare {GIT_REPO}
        git push -q {GIT_REPO} main --tags
        echo "$(git rev-parse v4^{{commit}}) $(git rev-parse HEAD)"
    """
    out = host.run("sh -c %s", script)
    assert out.rc == 0, out.stderr
    tag_commit, head_commit = out.stdout.split()
    return {"tag": tag_commit, "head": head_commit}


def test_git_deploy_at_a_tag_then_at_a_commit(host, http_port, playbook, git_repo):
    for version, commit in (("v4", git_repo["tag"]), (git_repo["head"], git_repo["head"])):
        with SiteLoad(http_port) as load:
            run = playbook(
                "deploy",
                django_app_source="git",
                django_app_git_repo=f"file://{GIT_REPO}",
                django_app_git_version=version,
            )
        print(f"git deploy of {version}: {run.seconds:.1f} s; clients: {load.report.summary()}")
        assert run.rc == 0, run.output[-3000:]
        assert healthz(http_port)["version"] == commit[:12]
        assert current_release(host) == f"git-{commit[:12]}"
        assert load.report.failures == []
        assert load.report.longest_gap < CHAT_BACK_WITHIN, load.report.summary()


def test_only_the_last_releases_and_their_virtualenv_are_kept(host):
    history = host.file(f"{HOME}/release-history").content_string.split()
    assert len(history) == KEEP, history
    assert history[0] == state["release1"]
    assert releases_on_host(host) == set(history[-KEEP:])
    assert state["release2"] not in releases_on_host(host)
    venvs = host.check_output(f"ls {HOME}/venvs").split()
    assert len(venvs) == 1, venvs


def test_hashed_static_files_of_removed_releases_are_removed(host, http_port):
    # Release 2's stylesheet went with release 2; the served one is still there.
    assert not host.file(f"{HOME}/static/{state['release2_css']}").exists
    css = hashed_static_name(host, "chat/chat.css")
    assert host.file(f"{HOME}/static/{css}").exists
    conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
    try:
        conn.request("GET", f"/static/{css}", headers={"Host": "localhost"})
        assert conn.getresponse().status == 200
    finally:
        conn.close()


def test_manage_wrapper_runs_in_the_current_release(host):
    out = host.run(f"{shlex.quote('/usr/local/bin/channels-app-manage')} check")
    assert out.rc == 0, out.stderr


def test_a_background_service_taken_off_the_list_is_stopped_and_removed(host):
    unit = f"/etc/systemd/system/{ANNOUNCER}.service"
    assert host.file(unit).exists
    run = run_playbook(
        "site", "--tags", "gunicorn", extra_vars={"django_app_background_services": []}
    )
    assert run.rc == 0, run.output[-3000:]
    assert not host.file(unit).exists
    assert host.run(f"systemctl is-active {ANNOUNCER}").stdout.strip() in ("inactive", "failed")
    assert host.service("channels-app").is_running
