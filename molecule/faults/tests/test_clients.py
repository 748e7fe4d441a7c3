"""Real clients nobody here wrote: headless Chromium running the chat page, and wscat."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import tempfile
import time
import uuid

import pytest
from conftest import APP, ARTIFACTS, REPO, inject, main_pid, new_room, report, wait_until

WSCAT = REPO / ".cache" / "node" / "node_modules" / ".bin" / "wscat"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def wscat(site, path: str, *frames: str) -> list[str]:
    """Run wscat through nginx, send frames, return the lines it printed.

    wscat prints what it receives only to a terminal, so it runs under script(1).
    """
    assert WSCAT.exists(), f"{WSCAT} is missing: run `make test-clients`"
    argv = [str(WSCAT), "-c", f"ws://127.0.0.1:{site.port}{path}"]
    argv += ["-H", f"Host: {site.host}", "-o", site.origin, "-w", "2"]
    for frame in frames:
        argv += ["-x", frame]
    out = subprocess.run(
        ["script", "-qec", shlex.join(argv), "/dev/null"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    text = ANSI.sub("", out.stdout).replace("\r", "\n")
    return [line.strip() for line in text.splitlines() if line.strip()]


def test_wscat_completes_a_handshake_and_an_echo_through_nginx(site):
    text = f"echo from wscat {uuid.uuid4().hex[:8]}"

    lines = wscat(site, "/ws/echo/", text)

    assert text in lines, lines


def test_wscat_chats_through_nginx(site, ledger):
    room = new_room("wscat")
    text = f"chat from wscat {uuid.uuid4().hex[:8]}"

    lines = wscat(site, f"/ws/chat/{room}/", json.dumps({"message": text}))

    frames = [json.loads(line) for line in lines if line.startswith("{")]
    assert any(f.get("message") == text and f.get("room") == room for f in frames), lines
    ledger.acked[room].append(text)


@pytest.fixture
def browser():
    """Headless Debian Chromium through Debian's chromedriver (no browser download)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profiles = []

    def open_page():
        profile = tempfile.mkdtemp(prefix="faults-chromium-")
        profiles.append(profile)
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in (
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=900,700",
            f"--user-data-dir={profile}",
        ):
            options.add_argument(arg)
        driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
        drivers.append(driver)
        return driver

    drivers: list = []
    yield open_page
    for driver in drivers:
        driver.quit()
    for profile in profiles:
        shutil.rmtree(profile, ignore_errors=True)


def test_two_chromium_pages_chat_and_reconnect_after_an_app_restart(host, site, browser, ledger):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    room = new_room("browser")
    url = f"http://localhost:{site.port}/?room={room}"
    alice, bob = browser(), browser()

    def connected(driver) -> bool:
        return driver.find_element(By.ID, "status").get_attribute("data-state") == "open"

    def say(sender, receivers, text: str) -> float:
        box = sender.find_element(By.ID, "message")
        box.send_keys(text)
        sender.find_element(By.ID, "send").click()
        start = time.monotonic()
        for driver in (sender, *receivers):
            WebDriverWait(driver, 10).until(
                ec.text_to_be_present_in_element((By.ID, "messages"), text)
            )
        return time.monotonic() - start

    for driver in (alice, bob):
        driver.get(url)
        WebDriverWait(driver, 15).until(connected)

    first = say(alice, [bob], "typed in Alice's page")
    ledger.acked[room].append("typed in Alice's page")

    before = main_pid(host)
    start = inject(host, f"systemctl restart {APP}.service")
    for driver in (alice, bob):
        WebDriverWait(driver, 10).until(lambda d: not connected(d))
    for driver in (alice, bob):
        WebDriverWait(driver, 30).until(connected)
    back = time.time() - start
    assert main_pid(host) != before

    second = say(bob, [alice], "typed in Bob's page after the restart")
    ledger.acked[room].append("typed in Bob's page after the restart")
    # History survives the restart: both pages show the first message again.
    for driver in (alice, bob):
        assert "typed in Alice's page" in driver.find_element(By.ID, "messages").text

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "faults-chromium-chat.png"
    alice.save_screenshot(str(shot))
    print(f"\nscreenshot: {shot}")
    wait_until(shot.exists, 5)
    report(
        "app restart with two Chromium pages open",
        "both pages reconnect and still exchange messages",
        f"message shown on both pages in {first:.2f} s; both reconnected {back:.2f} s after "
        f"the restart; next message shown in {second:.2f} s",
        back,
    )
