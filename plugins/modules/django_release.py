#!/usr/bin/python
"""Releases of a Django app on its host: build one, switch to it, roll back, prune."""

from __future__ import annotations

DOCUMENTATION = r"""
module: django_release
short_description: Build, switch to, roll back and prune releases of a Django app
description:
  - Runs on the app host as root. A release is a directory under O(app.releases_dir) named after
    its content; O(app.current) is a symbolic link to the release being served, replaced in one
    rename(2). Each release uses a virtualenv under O(app.venvs_dir) named after a hash of its
    dependency files, the server packages and the Python version, shared by every release with
    the same hash.
  - V(prepare) unpacks O(archive) as release O(release) (unless it is on the host), checks the
    project's Python requirement, builds or reuses the virtualenv, checks as the app user that
    the served application imports and that the database and the channel layer or cache answer,
    migrates (O(migrate)) and collects static files. Nothing being served changes.
  - V(activate) switches to O(release) and reloads the service (HUP), or restarts it when
    O(restart) is true, the virtualenv changed or the service runs another application; then
    asks the app through its own socket until O(health) is satisfied. A release that fails is
    switched back and the module fails naming it. It records the release in the history and
    removes releases beyond O(keep), unused virtualenvs and hashed static files no kept
    release names.
  - V(rollback) chooses the release to go back to (O(to), a release name or the version it was
    deployed as; default the one before the current one in the history) and prepares it
    (collectstatic); V(activate) with that release then switches to it.
  - V(python_check) only checks O(project_dir)'s Python requirement against O(python_version);
    it reads files and can run on the controller.
  - Supports check mode; V(prepare) then reports what it would build without building it.
options:
  command:
    type: str
    required: true
    choices: [prepare, activate, rollback, python_check]
  app:
    type: dict
    description:
      - The app contract (django_app role). Keys used here
        C(user), C(group), C(home), C(releases_dir), C(venvs_dir), C(current), C(static_root),
        C(env_file), C(service), C(listen), C(settings_module), C(application), C(serving_mode),
        C(check_program), C(background_services) (a list of C(name), each run as the service
        C(<service>-<name>)).
  release:
    type: str
    description: Name of the release directory.
  archive:
    type: path
    description: The release's source as a tar archive on the host (prepare).
  version:
    type: str
    default: ""
    description: DJANGO_APP_VERSION of the release (prepare).
  dependencies:
    type: dict
    default: {}
    description:
      - C(method) (auto, requirements, pyproject, uv, poetry), C(file) (the requirements file),
        C(server_packages), C(extra_packages), C(build_packages) (only used in the hash), C(tools)
        (pinned uv and poetry requirement strings).
  migrate:
    type: bool
    default: false
  collectstatic:
    type: bool
    default: true
  restart:
    type: bool
    default: false
    description: activate, restart the service even without a switch (new settings or units).
  recheck:
    type: bool
    default: false
    description: prepare, check the served release again (its settings changed).
  keep:
    type: int
    default: 5
  health:
    type: dict
    default: {}
    description:
      - C(path) (default /), C(host) (Host header), C(statuses) (accepted statuses; default any
        below 500), C(json) (key/value pairs the JSON body must hold), C(version) (the body's
        C(version) must be the release's), C(timeout) (seconds, default 30).
  to:
    type: str
    default: ""
    description: rollback, the release to go back to (a name, or the version it was deployed as).
  rollback:
    type: bool
    default: false
    description: activate, the switch is a rollback; the releases after it leave the history.
  background_changed:
    type: list
    elements: str
    default: []
    description:
      - activate, names of background services (contract key C(background_services)) whose units
        changed; restarted even when nothing switches. A switch or restart restarts them all, once
        the app answers its health check; a switch back restarts them again.
  project_dir:
    type: path
  python_version:
    type: str
  debian_version:
    type: str
    default: ""
"""

RETURN = r"""
release:
  description: The release prepared, switched to, or chosen to roll back to.
  type: str
  returned: success
previous:
  description: The release served before.
  type: str
  returned: success
pending:
  description: prepare and rollback, whether the release differs from the one being served.
  type: bool
  returned: success
venv:
  description: The virtualenv of the release.
  type: str
  returned: prepare
steps:
  description: What was done (or would be, in check mode), one line each.
  type: list
  returned: always
"""

import contextlib
import hashlib
import http.client
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import time
from configparser import ConfigParser
from pathlib import Path

try:
    from ansible.module_utils.basic import AnsibleModule
except ImportError:  # imported by the unit tests without Ansible's module machinery
    AnsibleModule = None

HISTORY = "release-history"
SERVING_MODE = "serving-mode"
RELEASE_ENV = ".release.env"
MANIFEST_COPY = ".staticfiles.json"
COMPLETE = ".complete"
HASHED_STATIC = re.compile(r"\.[0-9a-f]{12}\.[^/]+$")
ENV_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
# The Python each Debian release ships, and the oldest Python each Django series supports.
DEBIAN_PYTHON = {"12": "3.11", "13": "3.13"}
DJANGO_MIN_PYTHON = [
    ("6.0", "3.12"),
    ("5.0", "3.10"),
    ("4.2", "3.8"),
    ("4.0", "3.8"),
    ("3.2", "3.6"),
]


class ReleaseError(Exception):
    """A step failed; the message says which and why, and what is served now."""


# --- Small helpers --------------------------------------------------------------------------


def read_env_file(path: Path) -> dict[str, str]:
    """NAME='value' lines (the env file the django_app role writes), comments and blanks skipped."""
    values: dict[str, str] = {}
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text().splitlines():
            match = ENV_LINE.match(line.strip())
            if match:
                values[match.group(1)] = (
                    "".join(shlex.split(match.group(2))) if match.group(2) else ""
                )
    return values


def write_atomically(path: Path, text: str, mode: int = 0o644) -> bool:
    """Replace a file in one rename when its content differs; True when it changed."""
    with contextlib.suppress(FileNotFoundError):
        if path.read_text() == text:
            return False
    partial = path.with_name(path.name + ".new")
    partial.write_text(text)
    partial.chmod(mode)
    os.replace(partial, path)
    return True


def point_link(link: Path, target: Path) -> None:
    """Make link point at target, replacing it in one rename."""
    partial = link.with_name(link.name + ".new")
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()
    partial.symlink_to(target)
    os.replace(partial, link)


def serving(current: Path) -> str:
    """Name of the release the current link points at; empty when there is none."""
    return Path(os.path.realpath(current)).name if current.is_symlink() else ""


def read_history(home: Path) -> list[str]:
    with contextlib.suppress(FileNotFoundError):
        return [line.strip() for line in (home / HISTORY).read_text().splitlines() if line.strip()]
    return []


# --- Dependencies ---------------------------------------------------------------------------


def dependency_plan(release_dir: Path, method: str = "auto", requirements: str = "") -> dict:
    """How the release's dependencies are installed: method and the files that define them."""
    files = {
        "uv": ["pyproject.toml", "uv.lock"],
        "poetry": ["pyproject.toml", "poetry.lock"],
        "requirements": [requirements or "requirements.txt"],
        "pyproject": ["pyproject.toml"],
    }
    if method == "auto":
        if requirements and (release_dir / requirements).is_file():
            method = "requirements"
        else:
            order = ["uv", "poetry", "requirements", "pyproject"]
            found = [m for m in order if all((release_dir / f).is_file() for f in files[m])]
            if not found:
                raise ReleaseError(
                    "the project names no dependencies: no uv.lock, poetry.lock, requirements.txt "
                    "or pyproject.toml at its top (set django_app_requirements_file)"
                )
            method = found[0]
    if method not in files:
        raise ReleaseError(f"unknown dependency method {method!r}")
    missing = [f for f in files[method] if not (release_dir / f).is_file()]
    if missing:
        raise ReleaseError(
            f"dependency method {method}: {', '.join(missing)} not found in the release"
        )
    return {"method": method, "files": files[method]}


def venv_hash(release_dir: Path, plan: dict, packages: list[str], python_id: str) -> str:
    digest = hashlib.sha256()
    digest.update(python_id.encode() + b"\0" + plan["method"].encode() + b"\0")
    for name in plan["files"]:
        digest.update(name.encode() + b"\0" + (release_dir / name).read_bytes() + b"\0")
    for package in packages:
        digest.update(package.encode() + b"\n")
    return digest.hexdigest()[:16]


def requirement_name(requirement: str) -> str:
    """The normalised project name of a requirement string (gunicorn==27.0.1 -> gunicorn)."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else requirement.lower()


def installer_env(pip_conf: Path = Path("/etc/pip.conf")) -> dict[str, str]:
    """Environment that makes uv and poetry use the index and CA bundle pip uses on this host."""
    parser = ConfigParser()
    with contextlib.suppress(FileNotFoundError):
        parser.read_string(pip_conf.read_text())
    env: dict[str, str] = {"UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1"}
    if parser.has_option("global", "cert"):
        cert = parser.get("global", "cert")
        env.update(SSL_CERT_FILE=cert, REQUESTS_CA_BUNDLE=cert, UV_NATIVE_TLS="0")
    if parser.has_option("global", "index-url"):
        index = parser.get("global", "index-url")
        env.update(UV_DEFAULT_INDEX=index, PIP_INDEX_URL=index)
    if parser.has_option("global", "cache-dir"):
        env["UV_CACHE_DIR"] = str(Path(parser.get("global", "cache-dir")).parent / "uv")
    return env


# --- Python requirement ---------------------------------------------------------------------


def _read_toml(path: Path) -> dict:
    import tomllib

    with contextlib.suppress(FileNotFoundError, ValueError):
        return tomllib.loads(path.read_text())
    return {}


def django_version(project_dir: Path) -> str | None:
    """The Django version the project pins (uv.lock, poetry.lock or requirements.txt), if any."""
    for lock in ("uv.lock", "poetry.lock"):
        for package in _read_toml(project_dir / lock).get("package", []):
            if str(package.get("name", "")).lower() == "django":
                return str(package.get("version"))
    for name in ("requirements.txt",):
        with contextlib.suppress(FileNotFoundError):
            for line in (project_dir / name).read_text().splitlines():
                match = re.match(r"\s*[Dd]jango\s*==\s*([0-9][0-9.]*)", line)
                if match:
                    return match.group(1)
    return None


def python_problem(project_dir: Path, python_version: str, debian_version: str = "") -> str | None:
    """Why the project cannot run on this Python, naming the Debian release that could; or None."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    have = Version(python_version)
    needs: list[tuple[str, str]] = []  # (specifier, who asks for it)
    requires = _read_toml(project_dir / "pyproject.toml").get("project", {}).get("requires-python")
    if requires:
        needs.append((str(requires), "the project's requires-python"))
    django = django_version(project_dir)
    if django:
        for series, minimum in DJANGO_MIN_PYTHON:
            if Version(django) >= Version(series):
                needs.append((f">={minimum}", f"Django {django}"))
                break
    for spec, who in needs:
        if have not in SpecifierSet(spec):
            fitting = [
                f"Debian {deb} (Python {py})"
                for deb, py in sorted(DEBIAN_PYTHON.items())
                if all(
                    Version(py + ".0") in SpecifierSet(s) or Version(py + ".99") in SpecifierSet(s)
                    for s, _ in needs
                )
            ]
            here = f"Python {python_version}" + (
                f" (Debian {debian_version})" if debian_version else ""
            )
            hint = (
                f"; {' or '.join(fitting)} would"
                if fitting
                else "; no supported Debian release ships a Python that fits"
            )
            return f"{who} needs Python {spec}, and this host has {here}{hint}"
    return None


# --- The host: commands, the service, HTTP --------------------------------------------------


class Host:
    """What the module does to the host, in one place (the unit tests replace parts of it)."""

    def __init__(self, check_mode: bool = False) -> None:
        self.check_mode = check_mode

    def run(
        self,
        argv: list[str],
        *,
        env: dict | None = None,
        cwd: Path | None = None,
        timeout: float = 3600,
    ) -> tuple[int, str]:
        try:
            proc = subprocess.run(
                argv,
                env=env,
                cwd=cwd,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as expired:
            out = (
                expired.stdout.decode()
                if isinstance(expired.stdout, bytes)
                else expired.stdout or ""
            )
            return 124, f"{out}\n{argv[0]} did not finish within {timeout:g} s"
        return proc.returncode, proc.stdout

    def service_state(self, service: str) -> dict[str, str]:
        _, out = self.run(
            [
                "systemctl",
                "show",
                "-p",
                "ActiveState",
                "-p",
                "MainPID",
                "-p",
                "WorkingDirectory",
                "-p",
                "ExecStart",
                f"{service}.service",
            ]
        )
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def systemctl(self, verb: str, service: str) -> None:
        rc, out = self.run(["systemctl", verb, f"{service}.service"])
        if rc != 0:
            raise ReleaseError(f"systemctl {verb} {service}.service failed: {out.strip()[-300:]}")

    def http_get(
        self, listen: str, host: str, path: str, headers: dict[str, str], timeout: float
    ) -> tuple[int, dict[str, str], str]:
        if listen.startswith("/"):
            conn: http.client.HTTPConnection = _UnixConnection(listen, timeout)
        else:
            name, _, port = listen.rpartition(":")
            conn = http.client.HTTPConnection(
                name.strip("[]") or "127.0.0.1", int(port), timeout=timeout
            )
        try:
            conn.request("GET", path, headers={"Host": host, **headers})
            resp = conn.getresponse()
            return (
                resp.status,
                {k.lower(): v for k, v in resp.getheaders()},
                resp.read(65536).decode("utf-8", "replace"),
            )
        finally:
            conn.close()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def now(self) -> float:
        return time.monotonic()


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


# --- Releases -------------------------------------------------------------------------------


class Releases:
    """The releases of one app on its host."""

    def __init__(self, app: dict, host: Host) -> None:
        self.app = app
        self.host = host
        # Directories as the kernel resolves them, so that paths compared with the
        # targets of links (a home under a linked /srv, say) compare equal.
        self.home = Path(os.path.realpath(app["home"]))
        self.releases = Path(os.path.realpath(app["releases_dir"]))
        self.venvs = Path(os.path.realpath(app["venvs_dir"]))
        self.current = Path(app["current"])
        self.static_root = Path(os.path.realpath(app["static_root"]))
        self.steps: list[str] = []

    # -- running things as the app --

    def app_env(self, release_dir: Path) -> dict[str, str]:
        """The app's environment: its env file, then the release's own variables."""
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(self.home)}
        env.update(read_env_file(Path(self.app["env_file"])))
        env.update(read_env_file(release_dir / RELEASE_ENV))
        return env

    def as_app(self, release_dir: Path, args: list[str], timeout: float = 900) -> tuple[int, str]:
        python = str(release_dir / ".venv" / "bin" / "python")
        argv = [
            "setpriv",
            f"--reuid={self.app['user']}",
            f"--regid={self.app['group']}",
            "--init-groups",
            python,
            *args,
        ]
        return self.host.run(argv, env=self.app_env(release_dir), cwd=release_dir, timeout=timeout)

    def manage(self, release_dir: Path, *args: str) -> str:
        # Migrations may take long on a big database; a day is a bound, not a budget.
        rc, out = self.as_app(release_dir, ["-m", "django", *args], timeout=86400)
        if rc != 0:
            raise ReleaseError(
                f"manage.py {' '.join(args)} failed in release {release_dir.name}: "
                + _last_lines(out)
            )
        return out

    # -- prepare --

    def unpack(self, archive: Path, name: str) -> Path:
        release_dir = self.releases / name
        if release_dir.is_dir():
            return release_dir
        self.steps.append(f"unpack release {name}")
        if self.host.check_mode:
            return release_dir
        partial = self.releases / (name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(mode=0o755, parents=True)
        # Files get the time they were unpacked (-m): collectstatic copies what is
        # newer than its copy, and the archive's times are all 1970.
        rc, out = self.host.run(["tar", "-xmf", str(archive), "-C", str(partial)])
        if rc != 0:
            raise ReleaseError(f"unpacking {archive} failed: {_last_lines(out)}")
        os.replace(partial, release_dir)
        return release_dir

    def python_id(self) -> str:
        rc, out = self.host.run(["python3", "-VV"])
        if rc != 0:
            raise ReleaseError(f"python3 -VV failed: {out.strip()}")
        return out.strip()

    def venv_for(self, release_dir: Path, deps: dict) -> tuple[Path, dict, list[str]]:
        plan = dependency_plan(release_dir, deps.get("method", "auto"), deps.get("file", ""))
        packages = list(deps.get("server_packages", [])) + list(deps.get("extra_packages", []))
        hashed = packages + [f"# build: {p}" for p in deps.get("build_packages", [])]
        return self.venvs / venv_hash(release_dir, plan, hashed, self.python_id()), plan, packages

    def build_venv(
        self, release_dir: Path, venv: Path, plan: dict, packages: list[str], tools: dict
    ) -> None:
        """Build the virtualenv in place, marked complete last: a failed build starts over."""
        self.steps.append(f"build virtualenv {venv.name} ({plan['method']})")
        if self.host.check_mode:
            return
        shutil.rmtree(venv, ignore_errors=True)
        env = {**os.environ, **installer_env()}
        method = plan["method"]
        if method == "uv":
            uv = self.tool("uv", tools)
            self._install(
                [
                    uv,
                    "sync",
                    "--frozen",
                    "--no-dev",
                    "--no-install-project",
                    "--python",
                    "/usr/bin/python3",
                ],
                env={**env, "UV_PROJECT_ENVIRONMENT": str(venv)},
                cwd=release_dir,
                what="uv sync",
            )
        else:
            self._install(["python3", "-m", "venv", str(venv)], env=env, what="python3 -m venv")
            pip = [
                str(venv / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
            ]
            if method == "requirements":
                self._install(
                    [*pip, "-r", str(release_dir / plan["files"][0])],
                    env=env,
                    cwd=release_dir,
                    what="pip install -r",
                )
            elif method == "pyproject":
                dependencies = (
                    _read_toml(release_dir / "pyproject.toml")
                    .get("project", {})
                    .get("dependencies", [])
                )
                if dependencies:
                    self._install(
                        [*pip, *dependencies],
                        env=env,
                        cwd=release_dir,
                        what="pip install (pyproject dependencies)",
                    )
            elif method == "poetry":
                poetry = self.tool("poetry", tools)
                self._install(
                    [poetry, "install", "--only", "main", "--no-root", "--no-interaction"],
                    env={**env, "VIRTUAL_ENV": str(venv), "POETRY_VIRTUALENVS_CREATE": "false"},
                    cwd=release_dir,
                    what="poetry install",
                )
        kept, added = self.add_server_packages(
            venv, packages, env, uv_venv=method == "uv", tools=tools
        )
        for line in kept:
            self.steps.append(line)
        (venv / COMPLETE).write_text("\n".join(added) + "\n")

    def add_server_packages(
        self, venv: Path, packages: list[str], env: dict, uv_venv: bool, tools: dict
    ) -> tuple[list[str], list[str]]:
        """Install the server packages the project does not pin itself, keeping its pins."""
        python = str(venv / "bin" / "python")
        rc, out = self.host.run([python, "-c", _FREEZE], env=env)
        if rc != 0:
            raise ReleaseError(f"listing the virtualenv's packages failed: {_last_lines(out)}")
        installed = json.loads(out)
        kept = [
            f"project pins {name}=={installed[requirement_name(p)]}; kept instead of {p}"
            for p in packages
            if (name := requirement_name(p)) in installed
        ]
        missing = [p for p in packages if requirement_name(p) not in installed]
        if missing:
            constraints = venv / "constraints.txt"
            constraints.write_text("".join(f"{n}=={v}\n" for n, v in sorted(installed.items())))
            if uv_venv:
                argv = [
                    self.tool("uv", tools),
                    "pip",
                    "install",
                    "--python",
                    python,
                    "-c",
                    str(constraints),
                    *missing,
                ]
            else:
                argv = [
                    python,
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    "-c",
                    str(constraints),
                    *missing,
                ]
            rc, out = self.host.run(argv, env=env)
            if rc != 0:
                raise ReleaseError(
                    f"the server packages {', '.join(missing)} conflict with the project's pins: "
                    + _last_lines(out)
                )
        if not uv_venv:
            rc, out = self.host.run(
                [python, "-m", "pip", "check", "--disable-pip-version-check"], env=env
            )
            if rc != 0:
                raise ReleaseError(f"the virtualenv's packages conflict: {_last_lines(out)}")
        return kept, missing

    def tool(self, name: str, tools: dict) -> str:
        """A pinned installer (uv, poetry) in a virtualenv of its own under the venvs directory."""
        requirement = tools.get(name)
        if not requirement:
            raise ReleaseError(f"no pinned version of {name} to install it with")
        home = self.venvs / ".tools" / hashlib.sha256(requirement.encode()).hexdigest()[:12]
        binary = home / "bin" / name
        if not (home / COMPLETE).is_file():
            shutil.rmtree(home, ignore_errors=True)
            self._install(
                ["python3", "-m", "venv", str(home)], env=dict(os.environ), what=f"venv for {name}"
            )
            self._install(
                [str(home / "bin" / "pip"), "install", "--disable-pip-version-check", requirement],
                env={**os.environ, **installer_env()},
                what=f"pip install {requirement}",
            )
            (home / COMPLETE).write_text(requirement + "\n")
        return str(binary)

    def _install(self, argv: list[str], *, env: dict, what: str, cwd: Path | None = None) -> None:
        rc, out = self.host.run(argv, env=env, cwd=cwd)
        if rc != 0:
            raise ReleaseError(f"{what} failed: {_last_lines(out)}")

    def link_venv(self, release_dir: Path, venv: Path, version: str) -> bool:
        changed = False
        link = release_dir / ".venv"
        if os.path.realpath(link) != str(venv):
            changed = True
            if not self.host.check_mode:
                point_link(link, venv)
        env_text = "".join(
            f"{key}={_quoted(value)}\n"
            for key, value in (
                ("DJANGO_APP_VERSION", version),
                ("DJANGO_APP_RELEASE", release_dir.name),
            )
        )
        if self.host.check_mode:
            return changed
        return write_atomically(release_dir / RELEASE_ENV, env_text) or changed

    def check_app(self, release_dir: Path) -> None:
        """As the app user: settings load, the served application imports and fits the mode,
        the database and the channel layer or cache answer."""
        rc, out = self.as_app(
            release_dir,
            [
                self.app["check_program"],
                "--mode",
                self.app["serving_mode"],
                "--application",
                self.app["application"],
            ],
            timeout=120,
        )
        if rc != 0:
            raise ReleaseError(
                f"release {release_dir.name} was not switched to: {_last_lines(out, 3)}"
            )

    def prepare(
        self,
        archive: Path,
        name: str,
        version: str,
        deps: dict,
        migrate: bool,
        collectstatic: bool,
        recheck: bool = False,
    ) -> dict:
        previous = serving(self.current)
        release_dir = self.unpack(archive, name)
        state = self.host.service_state(self.app["service"])
        if self.host.check_mode and not release_dir.is_dir():
            return {"release": name, "previous": previous, "pending": True, "venv": ""}
        problem = python_problem(
            release_dir, _python_version(self.python_id()), deps.get("debian_version", "")
        )
        if problem:
            raise ReleaseError(f"release {name}: {problem}")
        venv, plan, packages = self.venv_for(release_dir, deps)
        if not (venv / COMPLETE).is_file():
            self.build_venv(release_dir, venv, plan, packages, deps.get("tools", {}))
        if self.link_venv(release_dir, venv, version):
            self.steps.append(f"release {name} uses virtualenv {venv.name}")
        serves_app = _serves(state, self.app)
        pending = (
            previous != name
            or not serves_app
            or self.served_mode() not in ("", self.app["serving_mode"])
        )
        if self.host.check_mode:
            if pending:
                self.steps.append(f"check, migrate and collect the static files of release {name}")
            return {"release": name, "previous": previous, "pending": pending, "venv": str(venv)}
        if pending or recheck:
            try:
                self.check_app(release_dir)
            except ReleaseError as failure:
                served = f" The app still serves release {previous}, as it was." if previous else ""
                raise ReleaseError(f"{failure}.{served}") from None
        if migrate and pending:
            out = self.manage(release_dir, "migrate", "--noinput")
            if "Applying " in out:
                applied = re.findall(r"Applying (\S+)", out)
                self.steps.append("migrated: " + ", ".join(applied))
        if collectstatic and pending:
            out = self.manage(release_dir, "collectstatic", "--noinput")
            copied = re.search(r"^(\d+) static files? copied", out, re.M)
            if copied and int(copied.group(1)) > 0:
                self.steps.append(f"collected {copied.group(1)} static files")
        if not previous:
            # Nothing is served yet: the first release is current at once, so the
            # service's units name a directory that exists when they are checked.
            point_link(self.current, release_dir)
            self.steps.append(f"first release {name} is current")
        return {"release": name, "previous": previous, "pending": pending, "venv": str(venv)}

    def served_mode(self) -> str:
        """The serving mode the app was last switched or restarted in; empty before the first."""
        with contextlib.suppress(FileNotFoundError):
            return (self.home / SERVING_MODE).read_text().strip()
        return ""

    # -- activate --

    def background(self) -> list[str]:
        """The app's background services (contract key background_services), as unit names."""
        return [
            f"{self.app['service']}-{s['name']}" for s in self.app.get("background_services") or []
        ]

    def restart_background(self, services: list[str], only: list[str] | None = None) -> None:
        """Restart the background services (all, or those in only and those not running)."""
        for service in services:
            if only is not None and service not in only:
                state = self.host.service_state(service).get("ActiveState")
                if state in ("active", "activating", "reloading"):
                    continue
            self.steps.append(f"restart {service}")
            if not self.host.check_mode:
                self.host.systemctl("restart", service)

    def activate(
        self,
        name: str,
        restart: bool,
        health: dict,
        keep: int,
        rollback: bool = False,
        background_changed: list[str] | None = None,
    ) -> dict:
        previous = serving(self.current)
        target = self.releases / name
        if not (target / ".venv").exists() and not self.host.check_mode:
            raise ReleaseError(f"release {name} is not prepared on this host")
        state = self.host.service_state(self.app["service"])
        live = state.get("ActiveState") in ("active", "reloading")
        serves_app = _serves(state, self.app)
        switch = previous != name
        venv_changed = previous and os.path.realpath(
            self.releases / previous / ".venv"
        ) != os.path.realpath(target / ".venv")
        verb = "restart" if restart or venv_changed or not serves_app or not live else "reload"
        background = self.background()
        if not switch and not restart and live:
            if self.served_mode() != self.app["serving_mode"] and not self.host.check_mode:
                write_atomically(self.home / SERVING_MODE, self.app["serving_mode"] + "\n")
            # Nothing switches: only background services with new units, or stopped, restart.
            self.restart_background(
                background,
                only=[f"{self.app['service']}-{n}" for n in background_changed or []],
            )
            self.record(name, keep, rollback)
            return {"release": name, "previous": previous, "changed": bool(self.steps)}
        if switch:
            self.steps.append(f"switch from {previous or 'nothing'} to {name}, then {verb}")
        else:
            self.steps.append(f"{verb} the app" if live else "start the app")
        if self.host.check_mode:
            return {"release": name, "previous": previous, "changed": True}
        if switch:
            point_link(self.current, target)
        try:
            started = self.host.now()
            self.host.systemctl(verb, self.app["service"])
            self.wait_healthy(name, health, started)
            # Once the app answers from the release: its background services follow it.
            self.restart_background(background)
        except ReleaseError as failure:
            if not switch:
                raise ReleaseError(
                    f"release {name} failed after the {verb} with its new settings or units: "
                    f"{failure}"
                ) from None
            if not previous:
                raise ReleaseError(
                    f"release {name} failed after the {verb}: {failure}. "
                    "There was no previous release to go back to."
                ) from None
            point_link(self.current, self.releases / previous)
            back = "restart" if verb == "restart" else "reload"
            try:
                with contextlib.suppress(ReleaseError):
                    self.manage(self.releases / previous, "collectstatic", "--noinput")
                self.host.systemctl(back, self.app["service"])
                self.wait_healthy(previous, {**health, "version": False}, self.host.now())
                again = f"Release {previous} serves again."
            except ReleaseError as second:
                again = f"Release {previous} was put back, but it does not answer either: {second}"
            try:
                # Any restarted on the failed release go back with it.
                self.restart_background(background)
            except ReleaseError as third:
                again += f" Its background services did not all restart: {third}"
            raise ReleaseError(
                f"release {name} failed after the switch and was rolled back: {failure}. {again}"
            ) from None
        write_atomically(self.home / SERVING_MODE, self.app["serving_mode"] + "\n")
        self.record(name, keep, rollback)
        return {"release": name, "previous": previous, "changed": True}

    def wait_healthy(self, name: str, health: dict, started: float) -> None:
        """Ask the app through its own socket until it answers as health says, or fail."""
        listen = (
            self.app["listen"][0] if isinstance(self.app["listen"], list) else self.app["listen"]
        )
        deadline = started + float(health.get("timeout", 30))
        path = health.get("path", "/")
        statuses = health.get("statuses") or []
        wanted_json = health.get("json") or {}
        want_release = health.get("release_header", True)
        version = read_env_file(self.releases / name / RELEASE_ENV).get("DJANGO_APP_VERSION", "")
        last = "no answer yet"
        bad_in_a_row = 0
        while True:
            try:
                status, headers, body = self.host.http_get(
                    listen,
                    health.get("host", "localhost"),
                    path,
                    {"X-Release-Probe": "1"},
                    5.0,
                )
            except (OSError, http.client.HTTPException) as exc:
                last = f"no answer from {listen}: {type(exc).__name__}: {exc}"
            else:
                ok_status = status in statuses if statuses else status < 500
                problem = (
                    None
                    if ok_status
                    else f"{path} answered HTTP {status}: {' '.join(body.split())[:200]}"
                )
                if problem is None and (wanted_json or health.get("version")):
                    try:
                        data = json.loads(body)
                    except ValueError:
                        data = None
                    if not isinstance(data, dict):
                        problem = f"{path} answered no JSON object"
                    elif any(data.get(k) != v for k, v in wanted_json.items()):
                        problem = (
                            f"{path} answered {json.dumps({k: data.get(k) for k in wanted_json})}"
                        )
                    elif health.get("version") and str(data.get("version", "")) != version:
                        problem = (
                            f"version {data.get('version')!r} answered, waiting for {version!r}"
                        )
                        ok_status = True  # old workers still answering: not a failure yet
                if (
                    problem is None
                    and want_release
                    and "x-release" in headers
                    and headers["x-release"] != name
                ):
                    problem = f"release {headers['x-release']} still answers"
                    ok_status = True
                if problem is None:
                    return
                last = problem
                bad_in_a_row = 0 if ok_status else bad_in_a_row + 1
                if bad_in_a_row >= 3:
                    raise ReleaseError(last)
            if self.host.now() >= deadline:
                raise ReleaseError(f"{last} (gave up after {health.get('timeout', 30)} s)")
            self.host.sleep(0.25)

    # -- history and pruning --

    def record(self, name: str, keep: int, rollback: bool = False) -> None:
        """Put the release last in the history (after a rollback: drop the releases
        switched to after it, so the next rollback goes one step further back); keep
        the last `keep` releases, their virtualenvs and the hashed static files their
        manifests name."""
        old = read_history(self.home)
        if rollback and name in old:
            history = old[: old.index(name) + 1]
        else:
            history = [r for r in old if r != name] + [name]
        if history != old:
            if not self.host.check_mode:
                write_atomically(self.home / HISTORY, "\n".join(history) + "\n")
            self.steps.append(f"history: {' '.join(history)}")
        if rollback:
            return  # the releases rolled back from stay until a later deploy prunes them
        for line in prune(
            self.releases, self.venvs, self.static_root, history, name, keep, self.host.check_mode
        ):
            self.steps.append(line)

    # -- rollback --

    def choose(self, to: str) -> str:
        """The release a rollback goes to."""
        on_host = sorted(
            p.name
            for p in self.releases.iterdir()
            if p.is_dir() and not p.name.endswith(".partial")
        )
        now = serving(self.current)
        if to:
            exact = [r for r in on_host if r == to]
            named = [r for r in on_host if r.startswith(to + "-")]
            found = exact or named
            if not found:
                raise ReleaseError(
                    f"no release named {to} (django_app_rollback_to) on this host; "
                    f"releases here: {', '.join(on_host) or 'none'}"
                )
            return found[0]
        earlier = [r for r in read_history(self.home) if r in on_host and r != now]
        if not earlier:
            raise ReleaseError(
                f"no earlier release to roll back to; releases here: {', '.join(on_host) or 'none'}"
            )
        return earlier[-1]

    def rollback(self, to: str, collectstatic: bool) -> dict:
        name = self.choose(to)
        previous = serving(self.current)
        if collectstatic and name != previous and not self.host.check_mode:
            self.manage(self.releases / name, "collectstatic", "--noinput")
        if name != previous:
            self.steps.append(f"roll back from {previous} to {name}")
        return {"release": name, "previous": previous, "pending": name != previous}


def prune(
    releases: Path,
    venvs: Path,
    static_root: Path,
    history: list[str],
    current: str,
    keep: int,
    check_mode: bool,
) -> list[str]:
    """Remove what no kept release needs; one line per removal."""
    done: list[str] = []
    kept = set(history[-keep:]) | {current}
    for path in sorted(releases.iterdir()):
        if path.is_dir() and path.name not in kept:
            done.append(f"removed release {path.name}")
            if not check_mode:
                shutil.rmtree(path)
    used = {
        os.path.realpath(releases / name / ".venv") for name in kept if (releases / name).is_dir()
    }
    with contextlib.suppress(FileNotFoundError):
        for path in sorted(venvs.iterdir()):
            if path.is_dir() and not path.name.startswith(".") and str(path) not in used:
                done.append(f"removed virtualenv {path.name}")
                if not check_mode:
                    shutil.rmtree(path)
    manifest = static_root / "staticfiles.json"
    kept_copy = releases / current / MANIFEST_COPY
    if manifest.is_file() and not kept_copy.exists() and (releases / current).is_dir():
        done.append(f"kept the static manifest with release {current}")
        if not check_mode:
            shutil.copyfile(manifest, kept_copy)
    named: set[str] | None = set()
    for name in kept:
        try:
            paths = json.loads((releases / name / MANIFEST_COPY).read_text()).get("paths", {})
        except (FileNotFoundError, ValueError):
            named = None  # a release without a manifest: keep every file
            break
        named |= set(paths.values())
    if named and static_root.is_dir():
        for top, _, files in os.walk(static_root):
            for file in sorted(files):
                path = os.path.relpath(os.path.join(top, file), static_root)
                base = path[:-3] if path.endswith((".gz", ".br")) else path
                if HASHED_STATIC.search(base) and base not in named:
                    done.append(f"removed static file {path}")
                    if not check_mode:
                        os.remove(os.path.join(static_root, path))
    return done


def _serves(state: dict[str, str], app: dict) -> bool:
    """Whether the service runs this app's application from the current link."""
    working = re.search(r"path=(\S+)", state.get("WorkingDirectory", "")) or None
    directory = working.group(1) if working else state.get("WorkingDirectory", "")
    return (
        directory == app["current"]
        and f" {app['application']} " in state.get("ExecStart", "") + " "
    )


def _quoted(value: str) -> str:
    """A value in single quotes, as the env files' NAME='value' lines have it."""
    return "'" + value.replace("'", "'\\''") + "'"


def _python_version(python_id: str) -> str:
    match = re.search(r"Python (\d+\.\d+\.\d+)", python_id)
    return match.group(1) if match else "0"


def _last_lines(text: str, count: int = 1) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " / ".join(lines[-count:]) if lines else "no output"


_FREEZE = (
    "import importlib.metadata as m, json, re\n"
    "print(json.dumps({re.sub(r'[-_.]+', '-', d.metadata['Name']).lower(): d.version"
    " for d in m.distributions() if d.metadata['Name']}))"
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "command": {
                "type": "str",
                "required": True,
                "choices": ["prepare", "activate", "rollback", "python_check"],
            },
            "app": {"type": "dict"},
            "release": {"type": "str"},
            "archive": {"type": "path"},
            "version": {"type": "str", "default": ""},
            "dependencies": {"type": "dict", "default": {}},
            "migrate": {"type": "bool", "default": False},
            "collectstatic": {"type": "bool", "default": True},
            "restart": {"type": "bool", "default": False},
            "recheck": {"type": "bool", "default": False},
            "keep": {"type": "int", "default": 5},
            "health": {"type": "dict", "default": {}},
            "to": {"type": "str", "default": ""},
            "rollback": {"type": "bool", "default": False},
            "background_changed": {"type": "list", "elements": "str", "default": []},
            "project_dir": {"type": "path"},
            "python_version": {"type": "str"},
            "debian_version": {"type": "str", "default": ""},
        },
        required_if=[
            ("command", "prepare", ["app", "release", "archive"]),
            ("command", "activate", ["app", "release"]),
            ("command", "rollback", ["app"]),
            ("command", "python_check", ["project_dir", "python_version"]),
        ],
        supports_check_mode=True,
    )
    p = module.params
    host = Host(check_mode=module.check_mode)
    try:
        if p["command"] == "python_check":
            problem = python_problem(
                Path(p["project_dir"]), p["python_version"], p["debian_version"]
            )
            if problem:
                module.fail_json(msg=problem)
            module.exit_json(changed=False, steps=[])
        releases = Releases(p["app"], host)
        if p["command"] == "prepare":
            deps = {**p["dependencies"], "debian_version": p["debian_version"]}
            result = releases.prepare(
                Path(p["archive"]),
                p["release"],
                p["version"],
                deps,
                p["migrate"],
                p["collectstatic"],
                p["recheck"],
            )
        elif p["command"] == "activate":
            result = releases.activate(
                p["release"],
                p["restart"],
                p["health"],
                p["keep"],
                p["rollback"],
                p["background_changed"],
            )
        else:
            result = releases.rollback(p["to"], p["collectstatic"])
    except ReleaseError as exc:
        module.fail_json(
            msg=f"django_app: {exc}", steps=releases.steps if "releases" in locals() else []
        )
    changed = bool(releases.steps)
    module.exit_json(
        changed=changed, steps=releases.steps, **{k: v for k, v in result.items() if k != "changed"}
    )


if __name__ == "__main__":
    main()
