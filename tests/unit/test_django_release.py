"""The release engine (plugins/modules/django_release.py) on a real file system.

The service and the app's HTTP answers are played by FakeHost; everything
else (unpacking, links, history, pruning, dependency detection, the Python
requirement) runs for real in a temporary directory. The molecule scenarios
prove the same engine against systemd, gunicorn and nginx.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from conftest import load_plugin

release = load_plugin("modules", "django_release")


class FakeHost(release.Host):
    """systemctl, the service's state and the app's answers, scripted."""

    def __init__(self, answers=None, check_mode=False, application="proj.asgi:application"):
        super().__init__(check_mode=check_mode)
        self.calls: list[str] = []
        self.answers = list(answers or [])
        self.clock = 0.0
        self.application = application
        self.state = {"ActiveState": "active", "WorkingDirectory": "", "ExecStart": ""}
        # ActiveState of other services (background services) by name; active if not named.
        self.others: dict[str, str] = {}

    def run(self, argv, *, env=None, cwd=None, timeout=3600):
        self.calls.append(" ".join(map(str, argv)))
        if argv[0] == "tar":
            return release.Host.run(self, argv, env=env, cwd=cwd, timeout=timeout)
        if argv[:2] == ["python3", "-VV"]:
            return 0, "Python 3.11.2 (main) [GCC 12.2.0]"
        return 0, "0 static files copied"

    def service_state(self, service):
        if service != "app":
            return {"ActiveState": self.others.get(service, "active")}
        return dict(self.state)

    def systemctl(self, verb, service):
        self.calls.append(f"systemctl {verb} {service}")

    def http_get(self, listen, host, path, headers, timeout):
        assert listen == "/run/app/gunicorn.sock", listen
        self.calls.append(f"GET {path}")
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def sleep(self, seconds):
        self.clock += seconds

    def now(self):
        return self.clock


def app_contract(root: Path) -> dict:
    return {
        "user": "app",
        "group": "app",
        "home": str(root),
        "releases_dir": str(root / "releases"),
        "venvs_dir": str(root / "venvs"),
        "current": str(root / "current"),
        "static_root": str(root / "static"),
        "env_file": str(root / "env"),
        "service": "app",
        "listen": ["/run/app/gunicorn.sock"],
        "serving_mode": "channels",
        "application": "proj.asgi:application",
        "check_program": "/usr/local/lib/channels-stack/check_app.py",
    }


def make_release(root: Path, name: str, venv: str = "v1", version: str = "") -> Path:
    """A prepared release: its directory, its virtualenv and its release env."""
    release_dir = root / "releases" / name
    release_dir.mkdir(parents=True)
    (root / "venvs" / venv).mkdir(parents=True, exist_ok=True)
    (release_dir / ".venv").symlink_to(root / "venvs" / venv)
    (release_dir / ".release.env").write_text(
        f"DJANGO_APP_VERSION='{version or name}'\nDJANGO_APP_RELEASE='{name}'\n"
    )
    return release_dir


def serving_app(host: FakeHost, root: Path) -> None:
    host.state.update(
        WorkingDirectory=str(root / "current"),
        ExecStart="{ path=/x/bin/gunicorn ; argv[]=/x/bin/gunicorn proj.asgi:application ; }",
    )


OK = (200, {}, "<html>")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "releases").mkdir()
    (tmp_path / "static").mkdir()
    return tmp_path


# --- Switching ------------------------------------------------------------------------------


def test_a_switch_points_current_at_the_release_reloads_and_records_it(root):
    make_release(root, "r1")
    make_release(root, "r2")
    release.point_link(root / "current", root / "releases" / "r1")
    (root / "release-history").write_text("r1\n")
    host = FakeHost([OK])
    serving_app(host, root)

    result = release.Releases(app_contract(root), host).activate("r2", False, {}, 5)

    assert release.serving(root / "current") == "r2"
    assert "systemctl reload app" in host.calls
    assert (root / "release-history").read_text().split() == ["r1", "r2"]
    assert result["previous"] == "r1"


def test_a_release_on_another_virtualenv_restarts_the_service_instead_of_reloading(root):
    make_release(root, "r1", venv="v1")
    make_release(root, "r2", venv="v2")
    release.point_link(root / "current", root / "releases" / "r1")
    host = FakeHost([OK])
    serving_app(host, root)

    release.Releases(app_contract(root), host).activate("r2", False, {}, 5)

    assert "systemctl restart app" in host.calls
    assert "systemctl reload app" not in host.calls


def test_a_release_that_fails_its_health_check_is_switched_back_and_named(root):
    make_release(root, "r1")
    make_release(root, "r2")
    release.point_link(root / "current", root / "releases" / "r1")
    (root / "release-history").write_text("r1\n")
    host = FakeHost([(500, {}, "Server Error")] * 3 + [OK])
    serving_app(host, root)

    with pytest.raises(release.ReleaseError) as failure:
        release.Releases(app_contract(root), host).activate("r2", False, {}, 5)

    message = str(failure.value)
    assert "release r2 failed after the switch and was rolled back" in message
    assert "HTTP 500" in message and "Release r1 serves again" in message
    assert release.serving(root / "current") == "r1"
    assert (root / "release-history").read_text().split() == ["r1"]
    assert host.calls.count("systemctl reload app") == 2


def test_the_health_check_waits_for_the_new_release_to_answer(root):
    make_release(root, "r1")
    make_release(root, "r2", version="2.0")
    release.point_link(root / "current", root / "releases" / "r1")
    host = FakeHost(
        [
            (200, {"x-release": "r1"}, json.dumps({"status": "ok", "version": "1.0"})),
            (200, {"x-release": "r2"}, json.dumps({"status": "ok", "version": "1.0"})),
            (200, {"x-release": "r2"}, json.dumps({"status": "ok", "version": "2.0"})),
        ]
    )
    serving_app(host, root)
    health = {"path": "/healthz", "statuses": [200], "json": {"status": "ok"}, "version": True}

    release.Releases(app_contract(root), host).activate("r2", False, health, 5)

    assert host.calls.count("GET /healthz") == 3


def test_a_health_check_that_never_passes_gives_up_after_the_timeout(root):
    make_release(root, "r1")
    release.point_link(root / "current", root / "releases" / "r1")
    make_release(root, "r2")
    host = FakeHost([ConnectionRefusedError("refused")])
    serving_app(host, root)

    with pytest.raises(release.ReleaseError) as failure:
        release.Releases(app_contract(root), host).activate("r2", False, {"timeout": 3}, 5)

    assert "gave up after 3 s" in str(failure.value)
    assert host.clock >= 3


def test_check_mode_reports_the_switch_and_changes_nothing(root):
    make_release(root, "r1")
    make_release(root, "r2")
    release.point_link(root / "current", root / "releases" / "r1")
    host = FakeHost([OK], check_mode=True)
    serving_app(host, root)
    releases = release.Releases(app_contract(root), host)

    result = releases.activate("r2", False, {}, 5)

    assert result["changed"] and releases.steps == ["switch from r1 to r2, then reload"]
    assert release.serving(root / "current") == "r1"
    assert not any(call.startswith("systemctl") for call in host.calls)


def test_nothing_happens_when_the_release_is_served_and_no_restart_is_asked(root):
    make_release(root, "r1")
    release.point_link(root / "current", root / "releases" / "r1")
    (root / "release-history").write_text("r1\n")
    host = FakeHost([OK])
    serving_app(host, root)
    releases = release.Releases(app_contract(root), host)

    releases.activate("r1", False, {}, 5)

    assert releases.steps == [] and host.calls == []


# --- Background services ------------------------------------------------------------------


def with_background(root: Path) -> dict:
    return {**app_contract(root), "background_services": [{"name": "worker"}, {"name": "beat"}]}


def r1_serving_r2_ready(root: Path, host: FakeHost) -> FakeHost:
    """Releases r1 (served) and r2 on disk; host answers for the app."""
    make_release(root, "r1")
    make_release(root, "r2")
    release.point_link(root / "current", root / "releases" / "r1")
    serving_app(host, root)
    return host


def r1_served_alone(root: Path, host: FakeHost) -> FakeHost:
    """Release r1 served and recorded, nothing else; host answers for the app."""
    make_release(root, "r1")
    release.point_link(root / "current", root / "releases" / "r1")
    (root / "release-history").write_text("r1\n")
    serving_app(host, root)
    return host


def test_background_services_restart_after_the_switched_release_answers(root):
    host = r1_serving_r2_ready(root, FakeHost([OK]))

    release.Releases(with_background(root), host).activate("r2", False, {}, 5)

    assert host.calls.index("GET /") < host.calls.index("systemctl restart app-worker")
    assert "systemctl restart app-beat" in host.calls


def test_background_services_go_back_with_a_release_that_fails_its_health_check(root):
    host = r1_serving_r2_ready(root, FakeHost([(500, {}, "Server Error")] * 3 + [OK]))

    with pytest.raises(release.ReleaseError):
        release.Releases(with_background(root), host).activate("r2", False, {}, 5)

    # Restarted once, after the previous release answers again.
    assert host.calls.count("systemctl restart app-worker") == 1
    last_get = len(host.calls) - 1 - host.calls[::-1].index("GET /")
    assert host.calls.index("systemctl restart app-worker") > last_get
    assert release.serving(root / "current") == "r1"


class FailingRestart(FakeHost):
    """systemctl restart of one service fails (its unit is missing, say)."""

    def systemctl(self, verb, service):
        super().systemctl(verb, service)
        if verb == "restart" and service == "app-worker":
            raise release.ReleaseError(f"systemctl {verb} {service}.service failed: not found")


def test_a_background_service_that_cannot_restart_switches_back_and_says_the_app_serves(root):
    host = r1_serving_r2_ready(root, FailingRestart([OK]))

    with pytest.raises(release.ReleaseError) as failure:
        release.Releases(with_background(root), host).activate("r2", False, {}, 5)

    message = str(failure.value)
    assert "release r2 failed after the switch and was rolled back" in message
    assert "Release r1 serves again." in message, message
    assert "Its background services did not all restart" in message
    assert release.serving(root / "current") == "r1"


def test_without_a_switch_only_changed_or_stopped_background_services_restart(root):
    host = r1_served_alone(root, FakeHost([OK]))
    host.others["app-beat"] = "failed"
    releases = release.Releases(
        {
            **with_background(root),
            "background_services": [{"name": n} for n in "abc"] + [{"name": "beat"}],
        },
        host,
    )

    releases.activate("r1", False, {}, 5, background_changed=["a"])

    restarts = [c for c in host.calls if c.startswith("systemctl")]
    assert restarts == ["systemctl restart app-a", "systemctl restart app-beat"]
    assert releases.steps == ["restart app-a", "restart app-beat"]


def test_no_background_service_restarts_when_nothing_changed(root):
    host = r1_served_alone(root, FakeHost([OK]))
    releases = release.Releases(with_background(root), host)

    releases.activate("r1", False, {}, 5)

    assert releases.steps == [] and not any(c.startswith("systemctl") for c in host.calls)


# --- Rollback and history --------------------------------------------------------------


def test_rollback_goes_one_step_back_and_the_release_rolled_back_from_leaves_the_history(root):
    for name in ("r1", "r2", "r3"):
        make_release(root, name)
    release.point_link(root / "current", root / "releases" / "r3")
    (root / "release-history").write_text("r1\nr2\nr3\n")
    host = FakeHost([OK])
    serving_app(host, root)
    releases = release.Releases(app_contract(root), host)

    chosen = releases.rollback("", collectstatic=False)
    releases.activate(chosen["release"], False, {}, 5, rollback=True)

    assert chosen["release"] == "r2"
    assert (root / "release-history").read_text().split() == ["r1", "r2"]
    assert release.Releases(app_contract(root), host).choose("") == "r1"


def test_rollback_to_a_version_finds_the_release_deployed_as_it(root):
    make_release(root, "1.4.1-local-aaaa")
    make_release(root, "1.4.2-local-bbbb")
    release.point_link(root / "current", root / "releases" / "1.4.2-local-bbbb")

    chosen = release.Releases(app_contract(root), FakeHost([OK])).choose("1.4.1")

    assert chosen == "1.4.1-local-aaaa"


def test_rollback_names_the_releases_there_when_the_one_asked_for_is_missing(root):
    make_release(root, "r1")
    with pytest.raises(release.ReleaseError, match=r"no release named v9 .* releases here: r1"):
        release.Releases(app_contract(root), FakeHost([OK])).choose("v9")


def test_pruning_keeps_the_last_releases_their_virtualenvs_and_named_static_files(root):
    for n in range(1, 5):
        make_release(root, f"r{n}", venv=f"v{n}")
        (root / "releases" / f"r{n}" / ".staticfiles.json").write_text(
            json.dumps({"paths": {"app.css": f"app.{n:012x}.css"}})
        )
        (root / "static" / f"app.{n:012x}.css").write_text("css")
    (root / "static" / "plain.txt").write_text("kept")

    done = release.prune(
        root / "releases",
        root / "venvs",
        root / "static",
        ["r1", "r2", "r3", "r4"],
        "r4",
        2,
        False,
    )

    assert sorted(p.name for p in (root / "releases").iterdir()) == ["r3", "r4"]
    assert sorted(p.name for p in (root / "venvs").iterdir()) == ["v3", "v4"]
    assert sorted(p.name for p in (root / "static").iterdir()) == [
        "app.000000000003.css",
        "app.000000000004.css",
        "plain.txt",
    ]
    assert "removed release r1" in done and "removed virtualenv v2" in done


# --- Unpacking and dependencies ---------------------------------------------------------


def tar_of(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_a_release_appears_under_its_name_only_once_complete_and_is_reused(root):
    archive = root / "source.tar"
    archive.write_bytes(tar_of({"manage.py": "x", "requirements.txt": "Django==5.2"}))
    releases = release.Releases(app_contract(root), FakeHost([OK]))

    first = releases.unpack(archive, "local-abc")
    archive.write_bytes(tar_of({"manage.py": "changed"}))
    again = releases.unpack(archive, "local-abc")

    assert first == again and (first / "manage.py").read_text() == "x"
    assert not (root / "releases" / "local-abc.partial").exists()


@pytest.mark.parametrize(
    "files, method",
    [
        (["pyproject.toml", "uv.lock", "requirements.txt"], "uv"),
        (["pyproject.toml", "poetry.lock"], "poetry"),
        (["requirements.txt", "pyproject.toml"], "requirements"),
        (["pyproject.toml"], "pyproject"),
    ],
)
def test_the_dependency_method_follows_the_files_the_project_ships(tmp_path, files, method):
    for name in files:
        (tmp_path / name).write_text("")
    assert release.dependency_plan(tmp_path)["method"] == method


def test_a_project_without_dependency_files_is_refused_naming_what_was_looked_for(tmp_path):
    with pytest.raises(release.ReleaseError, match=r"no uv\.lock, poetry\.lock, requirements\.txt"):
        release.dependency_plan(tmp_path)


def test_the_virtualenv_hash_changes_with_the_locked_dependencies_and_server_packages(tmp_path):
    (tmp_path / "requirements.txt").write_text("Django==5.2\n")
    plan = release.dependency_plan(tmp_path)
    base = release.venv_hash(tmp_path, plan, ["gunicorn==27"], "Python 3.11")
    assert base == release.venv_hash(tmp_path, plan, ["gunicorn==27"], "Python 3.11")
    assert base != release.venv_hash(tmp_path, plan, ["gunicorn==28"], "Python 3.11")
    assert base != release.venv_hash(tmp_path, plan, ["gunicorn==27"], "Python 3.13")
    (tmp_path / "requirements.txt").write_text("Django==5.2.1\n")
    assert base != release.venv_hash(tmp_path, plan, ["gunicorn==27"], "Python 3.11")


def test_uv_and_poetry_use_the_index_and_ca_bundle_pip_uses_on_the_host(tmp_path):
    conf = tmp_path / "pip.conf"
    conf.write_text(
        "[global]\ncache-dir = /var/cache/pip\ncert = /etc/pip-ca-bundle.pem\n"
        "index-url = https://pypi.example/simple\n"
    )
    env = release.installer_env(conf)
    assert env["SSL_CERT_FILE"] == env["REQUESTS_CA_BUNDLE"] == "/etc/pip-ca-bundle.pem"
    assert env["UV_DEFAULT_INDEX"] == "https://pypi.example/simple"
    assert env["UV_CACHE_DIR"] == "/var/cache/uv"


def test_requirement_names_are_normalised():
    assert release.requirement_name("uvicorn-worker==0.4.0") == "uvicorn-worker"
    assert release.requirement_name("psycopg[binary]==3.3.9") == "psycopg"
    assert release.requirement_name("Uvicorn_Worker>=0.4") == "uvicorn-worker"


# --- The Python requirement --------------------------------------------------------------


def test_a_project_needing_a_newer_python_names_the_debian_release_that_has_it(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nrequires-python = ">=3.12"\n')
    problem = release.python_problem(tmp_path, "3.11.2", "12")
    assert problem == (
        "the project's requires-python needs Python >=3.12, and this host has Python 3.11.2 "
        "(Debian 12); Debian 13 (Python 3.13) would"
    )
    assert release.python_problem(tmp_path, "3.13.5", "13") is None


def test_the_django_version_a_lock_file_pins_sets_a_python_floor(tmp_path):
    (tmp_path / "uv.lock").write_text('[[package]]\nname = "django"\nversion = "6.1.3"\n')
    assert "Django 6.1.3 needs Python >=3.12" in release.python_problem(tmp_path, "3.11.2")
    (tmp_path / "uv.lock").write_text('[[package]]\nname = "django"\nversion = "5.2.19"\n')
    assert release.python_problem(tmp_path, "3.11.2") is None


def test_a_requirements_file_pin_of_django_counts_too(tmp_path):
    (tmp_path / "requirements.txt").write_text("channels==4.3\nDjango==6.0.1\n")
    assert release.django_version(tmp_path) == "6.0.1"


def test_the_env_file_is_read_as_systemd_and_the_shell_read_it(tmp_path):
    env = tmp_path / "env"
    env.write_text("# comment\nA='x y'\nB='{\"k\": 1}'\nEMPTY=\n")
    assert release.read_env_file(env) == {"A": "x y", "B": '{"k": 1}', "EMPTY": ""}


def test_a_service_that_is_not_running_is_started_and_asked_for_its_health(root):
    make_release(root, "r1")
    release.point_link(root / "current", root / "releases" / "r1")
    host = FakeHost([OK])
    serving_app(host, root)
    host.state["ActiveState"] = "inactive"
    releases = release.Releases(app_contract(root), host)

    releases.activate("r1", False, {}, 5)

    assert "systemctl restart app" in host.calls and "GET /" in host.calls
    assert releases.steps[0] == "start the app"


class InstallHost(FakeHost):
    """Records the installers' commands; the project pins uvicorn itself."""

    def run(self, argv, *, env=None, cwd=None, timeout=3600):
        self.calls.append(" ".join(map(str, argv)))
        if argv[:2] == ["python3", "-VV"]:
            return 0, "Python 3.13.5"
        if argv[:3] == ["python3", "-m", "venv"]:
            Path(argv[3]).mkdir(parents=True)
        if "sync" in argv:
            Path(env["UV_PROJECT_ENVIRONMENT"]).mkdir(parents=True)
        if len(argv) > 2 and argv[1] == "-c" and "distributions" in argv[2]:
            return 0, json.dumps({"django": "6.1.3", "uvicorn": "0.52.4"})
        return 0, ""


@pytest.mark.parametrize(
    "files, installs",
    [
        (
            {"pyproject.toml": "[project]\nname='x'\n", "uv.lock": ""},
            ["uv sync --frozen --no-dev --no-install-project"],
        ),
        (
            {"pyproject.toml": "[project]\nname='x'\n", "poetry.lock": ""},
            ["poetry install --only main --no-root --no-interaction"],
        ),
        (
            {"requirements.txt": "Django==6.1.3\n"},
            ["-m pip install --disable-pip-version-check -r"],
        ),
        (
            {"pyproject.toml": "[project]\nname='x'\ndependencies=['Django==6.1.3', 'redis']\n"},
            ["-m pip install --disable-pip-version-check Django==6.1.3 redis"],
        ),
    ],
)
def test_the_virtualenv_is_built_the_way_the_project_ships_its_dependencies(root, files, installs):
    release_dir = root / "releases" / "r1"
    release_dir.mkdir()
    for name, text in files.items():
        (release_dir / name).write_text(text)
    host = InstallHost([OK])
    releases = release.Releases(app_contract(root), host)
    deps = {
        "server_packages": ["gunicorn==27.0.1", "uvicorn==0.54.0"],
        "tools": {"uv": "uv==0.13.9", "poetry": "poetry==2.5.1"},
    }

    venv, plan, packages = releases.venv_for(release_dir, deps)
    releases.build_venv(release_dir, venv, plan, packages, deps["tools"])

    for install in installs:
        assert any(install in call for call in host.calls), host.calls
    # The project's uvicorn pin is kept; gunicorn, which it does not pin, is added.
    added = [c for c in host.calls if c.endswith("gunicorn==27.0.1")]
    assert added and "-c" in added[0].split() and "uvicorn==0.54.0" not in added[0]
    assert (venv / ".complete").read_text().split() == ["gunicorn==27.0.1"]
    assert "project pins uvicorn==0.52.4; kept instead of uvicorn==0.54.0" in releases.steps


def test_the_release_env_file_quotes_its_values_as_the_env_file_does(root):
    release_dir = make_release(root, "2-local-abc")
    releases = release.Releases(app_contract(root), FakeHost([OK]))
    releases.link_venv(release_dir, root / "venvs" / "v1", "2")
    assert (release_dir / ".release.env").read_text() == (
        "DJANGO_APP_VERSION='2'\nDJANGO_APP_RELEASE='2-local-abc'\n"
    )


@pytest.mark.parametrize("was, pending", [("asgi", True), ("channels", False)])
def test_a_change_of_serving_mode_checks_the_served_release_again(root, was, pending):
    release_dir = make_release(root, "r1")
    (release_dir / "requirements.txt").write_text("Django==5.2\n")
    release.point_link(root / "current", release_dir)
    (root / "serving-mode").write_text(f"{was}\n")
    host = FakeHost([OK])
    serving_app(host, root)
    releases = release.Releases(app_contract(root), host)  # its serving mode: channels
    venv, _, _ = releases.venv_for(release_dir, {})
    venv.mkdir(parents=True)
    (venv / ".complete").write_text("")

    result = releases.prepare(root / "unused.tar", "r1", "1", {}, False, False)

    assert result["pending"] is pending
    assert any("check_app.py" in call for call in host.calls) is pending


def test_pruning_keeps_the_virtualenv_in_use_when_the_home_is_reached_through_a_link(tmp_path):
    real = tmp_path / "data"
    (real / "releases").mkdir(parents=True)
    (real / "static").mkdir()
    (tmp_path / "srv").symlink_to(real)
    root = tmp_path / "srv"
    make_release(root, "r1", venv="v1")
    release.point_link(root / "current", root / "releases" / "r1")
    (root / "release-history").write_text("r1\n")
    host = FakeHost([OK])
    serving_app(host, root)

    releases = release.Releases(app_contract(root), host)
    releases.record("r1", 5)

    assert (real / "venvs" / "v1").is_dir(), releases.steps
    assert releases.steps == []
