"""The program serving an app's figures (roles/metrics_exporters/files/channels-stack-app-metrics).

Worker processes with PROMETHEUS_MULTIPROC_DIR set write figures, as the app's
gunicorn workers do; the program's registry must give their sum, and drop the
open-socket gauge of a worker that exited (gunicorn's child_exit hook calls
mark_process_dead).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.multiprocess import mark_process_dead

PROGRAM = (
    Path(__file__).resolve().parents[2] / "roles/metrics_exporters/files/channels-stack-app-metrics"
)

WORKER = """
import os, sys
from prometheus_client import Counter, Gauge
Gauge("open_sockets", "open", multiprocess_mode="livesum").inc(int(sys.argv[1]))
Counter("handshakes", "accepted").inc(int(sys.argv[1]))
print(os.getpid())
"""


@pytest.fixture(scope="module")
def program():
    loader = importlib.machinery.SourceFileLoader("channels_stack_app_metrics", str(PROGRAM))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def worker(directory: Path, sockets: int) -> int:
    """A process that opens `sockets` sockets and exits; its pid."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    out = subprocess.run(
        [sys.executable, "-c", WORKER, str(sockets)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return int(out.stdout)


def figures(program, directory: Path) -> dict[str, float]:
    text = generate_latest(program.registry_for(str(directory))).decode()
    return {
        line.split()[0]: float(line.split()[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def test_the_workers_figures_are_summed_and_a_dead_workers_gauge_is_dropped(program, tmp_path):
    first = worker(tmp_path, 2)
    worker(tmp_path, 3)

    assert figures(program, tmp_path) == {"open_sockets": 5.0, "handshakes_total": 5.0}

    mark_process_dead(first, str(tmp_path))

    # Its sockets are gone; what it counted stays counted.
    assert figures(program, tmp_path) == {"open_sockets": 3.0, "handshakes_total": 5.0}


def test_a_directory_not_made_yet_gives_an_empty_answer(program, tmp_path):
    assert figures(program, tmp_path / "not-yet") == {}
