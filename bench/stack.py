"""What the stack under test uses: memory and CPU of its services, Redis group members.

Read from the host: the processes of a container's systemd service are found
by their cgroup, and Redis is asked through `docker exec`.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

SERVICES = ("nginx", "channels-app", "redis-server")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class Stack:
    def __init__(self, container: str, pid: int) -> None:
        self.container = container
        unified = [
            line.split("::", 1)[1]
            for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines()
            if line.startswith("0::")
        ]
        # The container's own cgroup: its PID 1 sits in <cgroup>/init.scope.
        self.cgroup = unified[0].removesuffix("/init.scope") if unified else ""

    def pids(self, service: str) -> list[int]:
        suffix = f"{self.cgroup}/system.slice/{service}.service"
        found = []
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                text = Path(entry.path, "cgroup").read_text()
            except OSError:
                continue
            if any(line.startswith("0::") and line.endswith(suffix) for line in text.splitlines()):
                found.append(int(entry.name))
        return sorted(found)

    def workers(self, service: str) -> list[int]:
        """The service's processes other than its main one (nginx and gunicorn workers)."""
        pids = self.pids(service)
        return [p for p in pids if self.parent(p) in pids]

    @staticmethod
    def parent(pid: int) -> int:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return 0
        return int(stat.rsplit(")", 1)[1].split()[1])

    @staticmethod
    def rss_kib(pid: int) -> int:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    @staticmethod
    def cpu_seconds(pid: int) -> float:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    @staticmethod
    def socket_fds(pid: int) -> int:
        count = 0
        try:
            for fd in os.scandir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    count += os.readlink(fd.path).startswith("socket:")
        except OSError:
            pass
        return count

    def memory(self) -> dict[str, int]:
        """Resident memory of each service's processes (KiB) and the kernel's TCP buffers."""
        result = {s: sum(self.rss_kib(p) for p in self.pids(s)) for s in SERVICES}
        result["tcp_buffers"] = self.tcp_buffer_kib()
        return result

    @staticmethod
    def tcp_buffer_kib() -> int:
        # Pages of TCP buffers in this network namespace's view (the client's included).
        for line in Path("/proc/net/sockstat").read_text().splitlines():
            if line.startswith("TCP:"):
                parts = line.split()
                return int(parts[parts.index("mem") + 1]) * os.sysconf("SC_PAGE_SIZE") // 1024
        return 0

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far by each service's processes."""
        return {s: sum(self.cpu_seconds(p) for p in self.pids(s)) for s in SERVICES}

    def sockets_per_worker(self, service: str = "channels-app") -> list[int]:
        return [self.socket_fds(p) for p in self.workers(service)]

    def restart(self, *units: str) -> None:
        """Restart systemd units in the container, so memory is measured from a fresh start."""
        subprocess.run(
            ["docker", "exec", self.container, "systemctl", "restart", *units],
            check=True,
        )

    def redis(self, *command: str) -> str:
        """A redis-cli command as Redis's default user (its password stays in the container)."""
        script = (
            'REDISCLI_AUTH="$(cat /etc/redis/default.password)" '
            'exec redis-cli --no-auth-warning --raw "$@"'
        )
        done = subprocess.run(
            ["docker", "exec", self.container, "sh", "-c", script, "redis-cli", *command],
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout

    def group_members(self, prefix: str = "asgi", rooms: str = "*") -> dict[str, int]:
        """Members of the channel layer's group zsets in Redis (groups matching rooms)."""
        keys = self.redis("--scan", "--pattern", f"{prefix}:group:{rooms}").split()
        return {key: int(self.redis("ZCARD", key).strip() or 0) for key in keys}
