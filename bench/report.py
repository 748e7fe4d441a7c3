"""Write docs/benchmarks.md and its charts from a benchmark result.

python -m bench.report bench/results/latest.json docs/benchmarks.md docs/img
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

MARKER = "<!-- make bench -->"
LAYERS = {
    "core": "RedisChannelLayer",
    "core-deflate": "RedisChannelLayer, deflate on",
    "pubsub": "RedisPubSubChannelLayer",
}


def fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        digits = 2 if abs(value) < 10 else 1 if abs(value) < 1000 else 0
        value = f"{value:,.{digits}f}"
    elif isinstance(value, int):
        value = f"{value:,}"
    return f"{value}{unit}"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**not met**")


def client_cpu(fig: dict[str, Any]) -> str:
    return (
        f"{fmt(fig.get('client_cpu_cores'))} cores over {fig.get('client_processes', '?')} "
        f"processes, busiest {fmt(fig.get('client_busiest_process_pct'), '%')}"
    )


def server_cpu(fig: dict[str, Any]) -> str:
    return ", ".join(
        f"{name} {fmt(fig.get(f'{name}_cpu_cores'))}"
        for name in ("channels-app", "nginx", "redis-server")
        if f"{name}_cpu_cores" in fig
    )


def chart_scale(scale: dict[str, Any], path: Path) -> None:
    points = scale["points"]
    held = [p["sockets"] for p in points]
    fig, (mem, lat) = plt.subplots(1, 2, figsize=(11, 4.2))
    base = scale["baseline_memory_kib"]
    for key, label in (("channels-app", "app workers"), ("nginx", "nginx")):
        mem.plot(
            held,
            [(p["memory_kib"][key] - base[key]) / 1024 for p in points],
            marker="o",
            label=label,
        )
    mem.set_xlabel("websockets held through nginx")
    mem.set_ylabel("memory above idle (MiB)")
    mem.set_title("Memory")
    mem.legend()
    mem.grid(alpha=0.3)
    lat.plot(held, [p["echo_while_held"]["p50_ms"] for p in points], marker="o", label="p50")
    lat.plot(held, [p["echo_while_held"]["p99_ms"] for p in points], marker="o", label="p99")
    for p in points:
        lat.annotate(
            f"client {p['echo_while_held']['client_busiest_process_pct']:.0f}%",
            (p["sockets"], p["echo_while_held"]["p99_ms"]),
            textcoords="offset points",
            xytext=(0, 6),
            ha="center",
            fontsize=7,
        )
    lat.set_xlabel("websockets held through nginx")
    lat.set_ylabel("echo round trip (ms)")
    lat.set_title("Echo latency of busy sockets among the idle ones\n(busiest client process)")
    lat.legend()
    lat.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def chart_echo(echo: dict[str, Any], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    names = ["nginx", "direct"]
    rates = [echo[n]["round_trips_per_s"] for n in names]
    bars = ax.bar(["through nginx", "straight to the app"], rates, color=["#4c72b0", "#55a868"])
    for bar, name in zip(bars, names, strict=True):
        rounds = [r for r in echo["rounds"] if r["path"] == name]
        busiest = max(r["client_busiest_process_pct"] for r in rounds)
        ax.annotate(
            f"p50 {echo[name]['p50_ms']} ms, p99 {echo[name]['p99_ms']} ms\n"
            f"busiest client process {busiest:.0f}%",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            textcoords="offset points",
            xytext=(0, 4),
            ha="center",
            fontsize=8,
        )
    ax.set_ylabel("round trips per second")
    ax.set_title(f"Echo, {echo['sockets']} sockets: ratio {echo['ratio']}")
    ax.set_ylim(0, max(rates) * 1.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def chart_fanout(fanout: dict[str, Any], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for layer, result in fanout.items():
        steps = [result["room_1000"], *result["steps"]]
        sizes = [s["room_size"] for s in steps]
        label = LAYERS.get(layer, layer)
        busiest = max(s["client_busiest_process_pct"] for s in steps)
        line = ax.plot(
            sizes,
            [s["p99_ms"] for s in steps],
            marker="o",
            label=f"{label} p99 (client ≤{busiest:.0f}%)",
        )
        ax.plot(
            sizes,
            [s["p50_ms"] for s in steps],
            marker=".",
            linestyle="--",
            color=line[0].get_color(),
            label=f"{label} p50",
        )
    ax.axhline(100, color="red", linewidth=0.8, label="p99 target 100 ms")
    ax.set_yscale("log")
    ax.set_xlabel("clients in the room (one message every 200 ms)")
    ax.set_ylabel("delivery latency (ms)")
    ax.set_title("Broadcast fan-out")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def section_summary(r: dict[str, Any]) -> list[str]:
    rows = ["| Target | Measured | |", "|---|---|---|"]
    scale = r.get("scale")
    if scale:
        top = scale["points"][-1]
        fails = sum(scale["handshake_failures"].values())
        rows.append(
            f"| 50,000 idle websockets through nginx, no handshake failure | "
            f"{fmt(scale['held'])} held, {fmt(fails)} failures, "
            f"{fmt(scale['still_open_after_hold'])} still open after {scale['hold_seconds']} s | "
            f"{verdict(scale['held'] >= 50_000 and fails == 0)} |"
        )
        rows.append(
            f"| App memory ≤ 30 KiB per socket | {fmt(top['app_kib_per_socket'])} KiB "
            f"at {fmt(top['sockets'])} | {verdict(top['app_kib_per_socket'] <= 30)} |"
        )
        rows.append(
            f"| nginx memory ≤ 15 KiB per socket | {fmt(top['nginx_kib_per_socket'])} KiB "
            f"at {fmt(top['sockets'])} | {verdict(top['nginx_kib_per_socket'] <= 15)} |"
        )
    echo = r.get("echo")
    if echo:
        rows.append(
            f"| Echo through nginx ≥ 0.9 of direct | {echo['ratio']} "
            f"({fmt(echo['nginx']['round_trips_per_s'])} against "
            f"{fmt(echo['direct']['round_trips_per_s'])} round trips/s) | "
            f"{verdict(echo['ratio'] >= 0.9)} |"
        )
    for layer, result in r.get("fanout", {}).items():
        room = result["room_1000"]
        ok99 = result["largest_room_p99_100ms"] is not None
        ok = (
            room["p50_ms"] is not None
            and room["p50_ms"] <= 20
            and room["p99_ms"] <= 100
            and room["missed"] == 0
        )
        mark = verdict(ok)
        if not ok and ok99:
            mark = "p99 met, **p50 not met**"
        rows.append(
            f"| Fan-out to 1,000, p50 ≤ 20 ms, p99 ≤ 100 ms, none missed "
            f"({LAYERS.get(layer, layer)}) | p50 {room['p50_ms']} ms, "
            f"p99 {room['p99_ms']} ms, {fmt(room['missed'])} missed; largest room "
            f"within p99 100 ms: {fmt(result['largest_room_p99_100ms']) if ok99 else 'none'} | "
            f"{mark} |"
        )
    for layer, burst in r.get("burst", {}).items():
        ok = burst["http_500"] == 0 and burst["connected"] == burst["clients"]
        left = burst["group_members_left"] if "pubsub" not in layer else None
        rows.append(
            f"| 2,000 connect at once, no 500 ({LAYERS.get(layer, layer)}) | "
            f"{fmt(burst['connected'])} connected, {fmt(burst['http_500'])} HTTP 500, "
            f"failures {burst['failures'] or 'none'} | {verdict(ok)} |"
        )
        if left is not None:
            rows.append(
                f"| No group member left after they disconnect ({LAYERS.get(layer, layer)}) | "
                f"{fmt(left)} left | {verdict(left == 0)} |"
            )
    conv = r.get("converge", {})
    if "idempotent" in conv:
        spt = conv["idempotent"]["seconds_per_task"]
        rows.append(
            f"| Idempotent re-run ≤ 0.2 s per task | {fmt(spt)} s per task "
            f"({conv['idempotent']['tasks']} tasks, changed={conv['idempotent']['changed']}) | "
            f"{verdict(spt <= 0.2)} |"
        )
    return rows


def section_scale(scale: dict[str, Any]) -> list[str]:
    rows = [
        "| Sockets | Failures | Opened in | Handshake p50 / p99 | App KiB/socket | "
        "nginx KiB/socket | Echo p50 / p99 | Client CPU while opening | "
        "Server CPU while opening (cores) | Sockets per app worker |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in scale["points"]:
        rows.append(
            f"| {fmt(p['sockets'])} | {sum(p['failures'].values())} | {p['open_seconds']} s | "
            f"{fmt(p['handshake']['p50_ms'])} / {fmt(p['handshake']['p99_ms'])} ms | "
            f"{p['app_kib_per_socket']} | {p['nginx_kib_per_socket']} | "
            f"{p['echo_while_held']['p50_ms']} / "
            f"{p['echo_while_held']['p99_ms']} ms | {client_cpu(p['open_client'])} | "
            f"{server_cpu(p['open_server'])} | {', '.join(map(str, p['app_sockets_per_worker']))} |"
        )
    return rows


def section_echo(echo: dict[str, Any]) -> list[str]:
    rows = [
        "| Round | Path | Round trips/s | Client CPU | Server CPU (cores) |",
        "|---|---|---|---|---|",
    ]
    for i, rnd in enumerate(echo["rounds"], 1):
        rows.append(
            f"| {i} | {rnd['path']} | {fmt(rnd['round_trips_per_s'])} | {client_cpu(rnd)} | "
            f"{server_cpu(rnd)} |"
        )
    rows += [
        "",
        "| Path | Round trips/s | p50 | p99 |",
        "|---|---|---|---|",
    ]
    for name in ("nginx", "direct"):
        e = echo[name]
        rows.append(
            f"| {name} | {fmt(e['round_trips_per_s'])} | {e['p50_ms']} ms | {e['p99_ms']} ms |"
        )
    return rows


def section_fanout(fanout: dict[str, Any]) -> list[str]:
    rows = [
        "| Layer | Room | Messages | Deliveries | Missed | p50 | p99 | max | "
        "First / last recipient, p50 | Client CPU | Server CPU (cores) | Members left |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for layer, result in fanout.items():
        for s in [result["room_1000"], *result["steps"]]:
            rows.append(
                f"| {LAYERS.get(layer, layer)} | {fmt(s['room_size'])} | {s['messages']} | "
                f"{fmt(s['deliveries'])} | {fmt(s['missed'])} | {fmt(s['p50_ms'])} ms | "
                f"{fmt(s['p99_ms'])} ms | {fmt(s['max_ms'])} ms | "
                f"{fmt(s.get('first_recipient_p50_ms'))} / {fmt(s.get('last_recipient_p50_ms'))} ms"
                f" | {client_cpu(s)} | {server_cpu(s)} | "
                f"{'n/a' if 'pubsub' in layer else fmt(s.get('group_members_left'))} |"
            )
    rows += [
        "",
        "CPU time per delivery in the 1,000-client room (CPU used during the run divided by",
        "the messages delivered):",
        "",
        "| Layer | App | nginx | Redis | Client | All |",
        "|---|---|---|---|---|---|",
    ]
    for layer, result in fanout.items():
        s = result["room_1000"]
        parts = [s.get(f"{k}_us_per_delivery") for k in ("app", "nginx", "redis", "client")]
        if None in parts:
            continue
        cells = " | ".join(f"{fmt(p)} µs" for p in parts)
        rows.append(f"| {LAYERS.get(layer, layer)} | {cells} | {fmt(sum(parts))} µs |")
    spread = {
        LAYERS.get(k, k): v["room_1000"].get("app_connections_per_worker")
        for k, v in fanout.items()
    }
    rows += ["", "Connections of the 1,000-client room per app worker:", ""]
    rows += [f"- {name}: {', '.join(map(str, s or []))}" for name, s in spread.items()]
    return rows


def section_burst(bursts: dict[str, Any]) -> list[str]:
    rows = [
        "| Layer | Clients | Connected | Failures | Handshake p50 / p99 | Members while open | "
        "Members left | Client CPU | Server CPU (cores) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for layer, b in bursts.items():
        pubsub = "pubsub" in layer
        rows.append(
            f"| {LAYERS.get(layer, layer)} | {fmt(b['clients'])} | {fmt(b['connected'])} | "
            f"{b['failures'] or 'none'} | {fmt(b['handshake']['p50_ms'])} / "
            f"{fmt(b['handshake']['p99_ms'])} ms | "
            f"{'n/a' if pubsub else fmt(b['group_members_while_open'])} | "
            f"{'n/a' if pubsub else fmt(b['group_members_left'])} | {client_cpu(b)} | "
            f"{server_cpu(b)} |"
        )
    return rows


def section_converge(conv: dict[str, Any]) -> list[str]:
    names = {
        "cold": "Cold converge (`site.yml` on a fresh container)",
        "idempotent": "Idempotent re-run (`site.yml`, nothing to change)",
        "deploy": "App-only deploy (`deploy.yml`, a new release)",
        "reconverge": "`site.yml` back to the previous release",
    }
    rows = ["| Run | Seconds | Tasks | Changed | s/task |", "|---|---|---|---|---|"]
    for key, label in names.items():
        if key in conv:
            c = conv[key]
            rows.append(
                f"| {label} | {c['seconds']} | {c['tasks']} | {c['changed']} | "
                f"{c['seconds_per_task']} |"
            )
    return rows


def section_deflate(d: dict[str, Any]) -> list[str]:
    rows = [
        "| Client offers | App KiB/socket | nginx KiB/socket | Loopback bytes per round trip | "
        "Client CPU |",
        "|---|---|---|---|---|",
    ]
    for key, label in (("plain", "no deflate"), ("deflate", "permessage-deflate")):
        if key in d:
            x = d[key]
            rows.append(
                f"| {label} | {x['app_kib_per_socket']} | {x['nginx_kib_per_socket']} | "
                f"{x['loopback_bytes_per_round_trip']} | {client_cpu(x)} |"
            )
    return rows


def main(argv: list[str]) -> int:
    result_path, doc_path, img_dir = Path(argv[1]), Path(argv[2]), Path(argv[3])
    r = json.loads(result_path.read_text())
    img_dir.mkdir(parents=True, exist_ok=True)
    rel = Path("img")
    machine = r.get("machine", {})
    # What stands before the marker (the default profile's sections, kept by
    # bench/steps_report.py and bench/converge_report.py) stays as it is.
    kept = doc_path.read_text().partition(MARKER) if doc_path.exists() else ("", "", "")
    out = [
        *([kept[0].rstrip(), "", MARKER] if kept[1] else ["# Benchmarks", "", MARKER]),
        "",
        "## The tuned profile (`make bench`)",
        "",
        "Measured by `make bench` (`scripts/bench.sh`, `bench/`): a demo stack in a systemd",
        "container converged with `playbooks/site.yml` and `bench/vars.yml`, then an asyncio",
        "client (the `websockets` library, several processes) run in the container's network",
        "namespace. Clients reach nginx on 127.0.0.1:80 from several loopback source addresses",
        "(`IP_BIND_ADDRESS_NO_PORT`), and the app's unix socket directly for the comparison.",
        "Every figure shows the client's CPU beside it: *busiest process* near 100% means the",
        "client, not the stack, set the pace. Server CPU is summed over each service's processes.",
        "",
        f"Run of {machine.get('date', '?')} on {machine.get('cpus', '?')} CPUs shared with other",
        f"jobs (load average at start {machine.get('load_average_at_start', '?')}), where every",
        "process may open 20,000 files at most. Raw figures: `bench/results/latest.json`.",
        "",
        "### Targets",
        "",
        *section_summary(r),
    ]
    if "scale" in r:
        chart_scale(r["scale"], img_dir / "bench-scaling.png")
        out += [
            "",
            "### Idle websockets held, and the scaling curve",
            "",
            "Sockets on `/ws/echo/`, opened in steps through nginx and held; at each step",
            "memory is read (resident memory of every process of the service, minus the",
            "figure before the first socket) and 20 sockets per client process "
            f"({20 * r['scale']['points'][0]['echo_while_held']['client_processes']} in all)",
            "echo a chat-sized frame for 5 s. The most sockets are then held for "
            f"{r['scale']['hold_seconds']} s, past uvicorn's 20 s pings.",
            "",
            f"![Memory and latency against sockets held]({rel / 'bench-scaling.png'})",
            "",
            *section_scale(r["scale"]),
        ]
    if "echo" in r:
        chart_echo(r["echo"], img_dir / "bench-echo.png")
        out += [
            "",
            "### Echo through nginx against straight to the app",
            "",
            f"{r['echo']['sockets']} sockets each send a {r['echo']['payload_bytes']}-byte frame",
            "and wait for it back, in alternating rounds through nginx and straight to the",
            "app's unix socket, same client processes.",
            "",
            f"![Echo round trips]({rel / 'bench-echo.png'})",
            "",
            *section_echo(r["echo"]),
        ]
    if "fanout" in r:
        chart_fanout(r["fanout"], img_dir / "bench-fanout.png")
        out += [
            "",
            "### Broadcast fan-out",
            "",
            "A sender posts a numbered, time-stamped chat message every 200 ms to a room of",
            "`/ws/chat/<room>/` clients opened 16 at a time through nginx (so they spread over",
            "the app workers); latency runs from the send to each client's receipt.",
            "The 1,000-client room gets 150 messages, the larger rooms 50 each, until p99",
            "passes 100 ms or a message is missed.",
            "",
            f"![Fan-out latency]({rel / 'bench-fanout.png'})",
            "",
            *section_fanout(r["fanout"]),
        ]
    if "deflate" in r:
        out += [
            "",
            "### Per-message deflate: memory against bandwidth",
            "",
            f"{fmt(r['deflate']['sockets'])} idle echo sockets with the app offering deflate",
            "(`gunicorn_ws_per_message_deflate: true`), clients offering it or not; then",
            f"{r['deflate']['payload_bytes']}-byte chat frames echoed on 100 of them.",
            "",
            *section_deflate(r["deflate"]),
        ]
    if "burst" in r:
        out += [
            "",
            "### Burst of connections",
            "",
            "2,000 chat clients in one room connect at once, then all close; Redis's",
            "`asgi:group:*` sets are read with `redis-cli` in the container.",
            "",
            *section_burst(r["burst"]),
        ]
    if "converge" in r:
        out += [
            "",
            "### Converge",
            "",
            "Wall time of `ansible-playbook` against the container through the Docker API;",
            "tasks are the recap's ok + skipped + failed.",
            "",
            *section_converge(r["converge"]),
        ]
    notes = Path(__file__).with_name("notes.md")
    if notes.exists():
        out += ["", notes.read_text().rstrip()]
    doc_path.write_text("\n".join(out) + "\n")
    print(f"wrote {doc_path} and charts in {img_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
