"""Follow the README's "Deploy to your own server" as a new user would.

Every ``sh`` block of that section runs, in order and unchanged, in one shell,
in a copy of this checkout (the files git tracks or would track) whose
``.venv`` is this checkout's. ``$EDITOR`` is ``edit.py``, which makes the edits
a user makes at that step; SSH reaches the scenario's server as ``deploy``
with the key and known_hosts that prepare.yml made. When the README changes,
this runs the new text: a step a user cannot paste fails here.

Then, beyond the README: the same site.yml run again must change nothing,
and so must a ``--check --diff`` run. The times and task counts of the cold
converge, the re-run and the check run are written to walkthrough.json, and
site.json tells the tests where the site is.

    python walkthrough.py          # from molecule/production/converge.yml
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from edit import APP_NAME  # noqa: E402  (the name the user gives the app)

REPO = HERE.parents[1]
SECTION = "## Deploy to your own server"
SITE_NAME = "chat.example.com"
INVENTORY = "inventories/mysite"
SITE_YML = ".venv/bin/ansible-playbook -i inventories/mysite playbooks/site.yml"
MARK = "::walkthrough"


def readme_blocks(readme: str) -> list[str]:
    """The ``sh`` code blocks of the section, in order."""
    start = readme.index(SECTION + "\n")
    end = readme.find("\n## ", start + len(SECTION))
    section = readme[start : end if end >= 0 else len(readme)]
    blocks = re.findall(r"^[ \t]*```sh\n(.*?)^[ \t]*```", section, re.M | re.S)
    if not blocks:
        raise SystemExit(f"README.md: no sh block under {SECTION!r}")
    return [_dedent(block) for block in blocks]


def _dedent(block: str) -> str:
    lines = block.splitlines()
    indent = min(len(line) - len(line.lstrip()) for line in lines if line.strip())
    return "\n".join(line[indent:] for line in lines)


def commands(block: str) -> list[str]:
    """Logical command lines of a block: continuations joined, blank lines and comments left out."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [
        line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]


def script(blocks: list[str]) -> str:
    """One bash script running every block, with a marker line before each command."""
    out = [
        "set -euo pipefail",
        f'__mark() {{ printf \'\\n{MARK} %s %s\\n\' "$(date +%s.%N)" "$1"; }}',
    ]
    for number, block in enumerate(blocks, 1):
        out.append(f"export WALKTHROUGH_BLOCK={number}")
        for command in commands(block):
            out.append(f"__mark {shlex.quote(f'{number}: {command}')}")
            out.append(command)
    out.append("__mark end")
    return "\n".join(out) + "\n"


def copy_checkout(dest: Path) -> None:
    """The files of this checkout that git tracks or would track, with their times."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        check=True,
        capture_output=True,
    ).stdout
    existing = b"\0".join(f for f in files.split(b"\0") if f and (REPO / f.decode()).exists())
    pack = subprocess.Popen(
        ["tar", "--null", "-T", "-", "-cf", "-"],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    unpack = subprocess.Popen(["tar", "-xpf", "-"], cwd=dest, stdin=pack.stdout)
    assert pack.stdin is not None and pack.stdout is not None
    pack.stdin.write(existing)
    pack.stdin.close()
    pack.stdout.close()
    if unpack.wait() != 0 or pack.wait() != 0:
        raise SystemExit("copying the checkout failed")
    (dest / ".venv").symlink_to(REPO / ".venv")


def make_certificates(tls: Path) -> None:
    """A CA of the test's own, an intermediate and a leaf for the site (leaf first in the chain)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    tls.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def issue(subject, key, issuer, issuer_key, ca: bool, san: list[str] | None = None):
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                critical=False,
            )
        )
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
        else:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in san or []]), critical=False
            ).add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
        return builder.sign(issuer_key, hashes.SHA256())

    def pem(cert) -> str:
        return cert.public_bytes(serialization.Encoding.PEM).decode()

    def key_pem(key) -> str:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()

    root_key, mid_key, leaf_key, other_key = (
        ec.generate_private_key(ec.SECP256R1()) for _ in range(4)
    )
    root = issue(
        name("channels-stack test root CA"),
        root_key,
        name("channels-stack test root CA"),
        root_key,
        True,
    )
    mid = issue(name("channels-stack test intermediate CA"), mid_key, root.subject, root_key, True)
    leaf = issue(name(SITE_NAME), leaf_key, mid.subject, mid_key, False, [SITE_NAME])
    (tls / "ca.pem").write_text(pem(root))
    (tls / "chain.pem").write_text(pem(leaf) + pem(mid))
    (tls / "key.pem").write_text(key_pem(leaf_key))
    (tls / "other-key.pem").write_text(key_pem(other_key))
    for path in tls.iterdir():
        path.chmod(0o600)


def recap(output: str) -> dict[str, int]:
    """Totals of the last PLAY RECAP in an ansible-playbook output."""
    block = output[output.rindex("PLAY RECAP") :]
    totals: dict[str, int] = {}
    for line in block.splitlines()[1:]:
        if ":" not in line or "ok=" not in line:
            break
        for key, value in re.findall(r"(\w+)=(\d+)", line):
            totals[key] = totals.get(key, 0) + int(value)
    return totals


def tasks_run(output: str) -> int:
    return len(re.findall(r"^TASK \[", output, re.M))


def main() -> int:
    ephemeral = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
    address = (ephemeral / "address").read_text().strip()
    checkout = ephemeral / "checkout"
    home = ephemeral / "home"
    tls = ephemeral / "tls"
    log_path = ephemeral / "walkthrough.log"
    copy_checkout(checkout)
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir()
    make_certificates(tls)

    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ANSIBLE_", "MOLECULE_")) and key not in ("VIRTUAL_ENV",)
    }
    env.update(
        HOME=str(home),
        EDITOR=f"{sys.executable} {HERE / 'edit.py'}",
        WALKTHROUGH_ADDRESS=address,
        WALKTHROUGH_TLS=str(tls),
        # The operator's SSH setup: their key, and the server's host key known.
        ANSIBLE_PRIVATE_KEY_FILE=str(ephemeral / "id_ed25519"),
        ANSIBLE_SSH_COMMON_ARGS=(
            f"-o UserKnownHostsFile={ephemeral / 'known_hosts'} -o StrictHostKeyChecking=yes"
        ),
        # pip on the server trusts the CA bundle of this network, as in every scenario.
        CHANNELS_STACK_PIP_CA_BUNDLE=os.environ.get(
            "CHANNELS_STACK_PIP_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt"
        ),
        NO_COLOR="1",
        ANSIBLE_NOCOLOR="1",
        PYTHONUNBUFFERED="1",
    )
    blocks = readme_blocks((REPO / "README.md").read_text())
    results: dict[str, object] = {}
    with log_path.open("w") as log:
        start = time.monotonic()
        proc = subprocess.run(
            ["bash", "-c", script(blocks)],
            cwd=checkout,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        log.write(proc.stdout)
        steps = _steps(proc.stdout)
        for step in steps:
            print(f"{step['seconds']:7.1f} s  {step['command']}")
        if proc.returncode != 0:
            failed = steps[-1]["command"] if steps else "?"
            print(proc.stdout[-6000:])
            print(f"README step failed (exit {proc.returncode}): {failed}", file=sys.stderr)
            return 1
        results["readme_steps"] = [
            {"command": s["command"], "seconds": s["seconds"]}
            | ({"recap": recap(s["output"])} if "PLAY RECAP" in s["output"] else {})
            for s in steps
        ]
        converges = [
            s
            for s in steps
            if "playbooks/site.yml" in s["command"] and "--check" not in s["command"]
        ]
        cold = converges[0]
        results["cold_converge"] = {"seconds": cold["seconds"], "tasks": tasks_run(cold["output"])}
        results["readme_seconds"] = round(time.monotonic() - start, 1)

        # Beyond the README: nothing left to change, in a real run or in check mode.
        for key, extra in (("rerun", []), ("check", ["--check", "--diff"])):
            argv = SITE_YML.split() + extra
            began = time.monotonic()
            run = subprocess.run(
                argv, cwd=checkout, env=_with_vault(env, home), capture_output=True, text=True
            )
            seconds = round(time.monotonic() - began, 1)
            output = run.stdout + run.stderr
            log.write(f"\n{MARK} {' '.join(argv)}\n{output}")
            totals = recap(output) if "PLAY RECAP" in output else {}
            results[key] = {"seconds": seconds, "tasks": tasks_run(output), "recap": totals}
            print(f"{seconds:7.1f} s  {' '.join(argv)}: {totals}")
            if run.returncode != 0 or totals.get("changed", 1) != 0 or totals.get("failed", 1) != 0:
                print(output[-6000:])
                print(f"{' '.join(argv)} was expected to change nothing", file=sys.stderr)
                return 1

    for key in ("cold_converge", "rerun", "check"):
        entry = results[key]
        assert isinstance(entry, dict)
        entry["seconds_per_task"] = round(entry["seconds"] / max(entry["tasks"], 1), 3)
    (ephemeral / "walkthrough.json").write_text(json.dumps(results, indent=2) + "\n")
    (ephemeral / "operator-env.json").write_text(
        json.dumps(_operator_env(_with_vault(env, home)), indent=2) + "\n"
    )
    site = {
        "scheme": "https",
        "host": SITE_NAME,
        "address": address,
        "port": 443,
        "ca": str(tls / "ca.pem"),
        "app": APP_NAME,
    }
    # The Redis admin password is the vault's: the tests use it to look inside Redis.
    site["redis_admin_password"] = _vault_value(
        checkout, _with_vault(env, home), "vault_redis_password"
    )
    (ephemeral / "site.json").write_text(json.dumps(site) + "\n")
    (ephemeral / "site.json").chmod(0o600)
    print(json.dumps(results))
    return 0


def _with_vault(env: dict[str, str], home: Path) -> dict[str, str]:
    """The environment of the README's shell after its steps: the vault password file exported."""
    password_files = list((home / ".config" / "channels-stack").glob("*.vault-pass"))
    if len(password_files) != 1:
        raise SystemExit(f"expected one vault password file under {home}/.config/channels-stack")
    return {**env, "ANSIBLE_VAULT_PASSWORD_FILE": str(password_files[0])}


def _vault_value(checkout: Path, env: dict[str, str], name: str) -> str:
    """One value of the inventory's vault, decrypted with the operator's password file."""
    plain = subprocess.run(
        [".venv/bin/ansible-vault", "view", f"{INVENTORY}/group_vars/all/vault.yml"],
        cwd=checkout,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    found = re.search(rf"^{name}: \"?([^\"\n]+)\"?$", plain, re.M)
    if not found:
        raise SystemExit(f"the vault holds no {name}")
    return found.group(1)


def _operator_env(env: dict[str, str]) -> dict[str, str]:
    """What the tests need to run the operator's commands again: their home, SSH and vault."""
    keep = (
        "HOME",
        "ANSIBLE_PRIVATE_KEY_FILE",
        "ANSIBLE_SSH_COMMON_ARGS",
        "ANSIBLE_VAULT_PASSWORD_FILE",
    )
    return {key: env[key] for key in keep} | {
        "CHANNELS_STACK_PIP_CA_BUNDLE": env["CHANNELS_STACK_PIP_CA_BUNDLE"]
    }


def _steps(output: str) -> list[dict]:
    """Each command's text, seconds and output, from the marker lines."""
    marks = [
        (m.start(), m.end(), float(m.group(1)), m.group(2))
        for m in re.finditer(rf"^{MARK} (\S+) (.*)$", output, re.M)
    ]
    steps = []
    for (_, end, began, command), nxt in zip(marks, [*marks[1:], None], strict=True):
        if command == "end":
            break
        stop = nxt[0] if nxt else len(output)
        finished = nxt[2] if nxt else time.time()
        steps.append(
            {
                "command": command.split(": ", 1)[1],
                "seconds": round(finished - began, 1),
                "output": output[end:stop],
            }
        )
    return steps


if __name__ == "__main__":
    sys.exit(main())
