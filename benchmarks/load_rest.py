"""Loopback load over the REST channel: `voicecalm run --workers N` on shared Redis/PostgreSQL.

Builds the test bank project (tests/dialogue/bank) with payload-triggered flows and in-process
actions, serves it with N uvicorn workers sharing a tracker store (Redis or PostgreSQL) and a Redis
lock store, and keeps C conversations talking for D seconds from one client process: every
conversation sends its next turn as soon as the answer to the last one is in, and starts over as
a new conversation after its 10-turn script. Checks every answer's texts. Sends traffic to
127.0.0.1 only, bounded in time; removes its keys or schema afterwards.

    .venv/bin/python benchmarks/load_rest.py                   # 200 conversations, 60 s, 2 workers, redis
    .venv/bin/python benchmarks/load_rest.py --store postgresql --duration 20

Prints turns/s, p50/p99 latency and errors; writes benchmarks/results/load_rest[_<store>].json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))

from tests.channels.test_rest import WEBHOOK, bank_project
from tests.scaleout.test_kill_worker import ACTIONS, script
from tests.tracker.services import (
    drop_postgres_schema,
    drop_redis_prefix,
    postgres_options,
    redis_options,
)

FAST_ACTIONS = ACTIONS.replace("await asyncio.sleep(0.15)", "await asyncio.sleep(0)")


def build_project(root: Path, store: str, tag: str) -> tuple[Path, dict[str, Any]]:
    tracker_store = redis_options(tag) if store == "redis" else postgres_options(tag)
    project = bank_project(root, tracker_store)
    (project / "actions").mkdir()
    (project / "actions" / "__init__.py").write_text("")
    (project / "actions" / "bank.py").write_text(FAST_ACTIONS)
    endpoints = {
        "tracker_store": tracker_store,
        "lock_store": redis_options(tag + "_lock"),
        "action_endpoint": {"actions_module": "actions"},
    }
    import yaml

    (project / "endpoints.yml").write_text(yaml.safe_dump(endpoints))
    return project, tracker_store


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def wait_healthy(client: httpx.AsyncClient, url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"server exited with {server.returncode}:\n{log.read_text()}")
        try:
            if (await client.get(f"{url}/health")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.2)
    raise SystemExit(f"server did not come up in 60 s:\n{log.read_text()}")


async def load(url: str, concurrency: int, duration: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    conversations = 0
    limits = httpx.Limits(max_connections=concurrency + 10, max_keepalive_connections=concurrency + 10)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        stop_at = time.monotonic() + duration

        async def talk(slot: int) -> None:
            nonlocal conversations
            n = 0
            while time.monotonic() < stop_at:
                sender = f"load-{slot}-{n}"
                n += 1
                conversations += 1
                for payload, expected in script(slot):
                    if time.monotonic() >= stop_at:
                        return
                    started = time.perf_counter()
                    try:
                        response = await client.post(WEBHOOK, json={"sender": sender, "message": payload})
                    except httpx.HTTPError as error:
                        errors[type(error).__name__] = errors.get(type(error).__name__, 0) + 1
                        break
                    latencies.append(time.perf_counter() - started)
                    if response.status_code != 200:
                        errors[f"HTTP {response.status_code}"] = errors.get(f"HTTP {response.status_code}", 0) + 1
                        break
                    if [m.get("text") for m in response.json()] != expected:
                        errors["wrong answer"] = errors.get("wrong answer", 0) + 1
                        break

        started = time.monotonic()
        await asyncio.gather(*(talk(slot) for slot in range(concurrency)))
        elapsed = time.monotonic() - started
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000 if ordered else float("nan")

    return {
        "turns": len(latencies),
        "conversations_started": conversations,
        "seconds": round(elapsed, 1),
        "turns_per_second": round(len(latencies) / elapsed, 1),
        "p50_ms": round(pct(0.50), 1),
        "p99_ms": round(pct(0.99), 1),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 1) if latencies else None,
        "errors": errors,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", choices=["redis", "postgresql"], default="redis")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--duration", type=float, default=60.0)
    args = parser.parse_args()
    if not 1 <= args.duration <= 300:
        raise SystemExit("--duration must be between 1 and 300 seconds")

    tag = f"vcload_{uuid.uuid4().hex[:10]}"
    with tempfile.TemporaryDirectory() as tmp:
        project, _ = build_project(Path(tmp), args.store, tag)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = Path(tmp) / "server.log"
        command = [sys.executable, "-c", "from voicecalm.cli import app; app()", "run", str(project)]
        command += ["--port", str(port), "--workers", str(args.workers), "--log-level", "warning"]
        server = subprocess.Popen(
            command, stdout=log.open("wb"), stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(REPOSITORY)}
        )
        try:
            async with httpx.AsyncClient() as client:
                await wait_healthy(client, url, server, log)
            result = await load(url, args.concurrency, args.duration)
            if result["errors"]:
                problems = [line for line in log.read_text().splitlines() if "Error" in line or "error" in line]
                print("server log, error lines:", *problems[:20], sep="\n", file=sys.stderr)
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(40)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            if args.store == "redis":
                await drop_redis_prefix(tag)
            else:
                await drop_postgres_schema(tag)
            await drop_redis_prefix(tag + "_lock")
    report = {
        "store": args.store,
        "workers": args.workers,
        "concurrency": args.concurrency,
        "duration_s": args.duration,
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}",
        # Other work on the machine skews the figures: the 1-minute load average at the end.
        "load_average_1m": round(os.getloadavg()[0], 2),
        **result,
    }
    print(json.dumps(report, indent=2))
    suffix = "" if args.store == "redis" else f"_{args.store}"
    out = Path(__file__).parent / "results" / f"load_rest{suffix}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
