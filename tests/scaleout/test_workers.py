"""`voicecalm run --workers N`: uvicorn workers built by the app factory, sharing Redis state."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.channels.test_rest import WEBHOOK, bank_project
from tests.scaleout.test_kill_worker import ACTIONS, free_port, script
from tests.tracker.services import (
    drop_redis_prefix,
    redis_options,
    redis_ready,
    unique_name,
)
from voicecalm.project.schema import StoreConfig
from voicecalm.tracker.events import UserUttered
from voicecalm.tracker.stores import create_tracker_store

REPO_ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-c", "from voicecalm.cli import app; app()"]


def run_cli(*args: str, **popen: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*CLI, *args], env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, **popen)


async def test_workers_share_conversations(tmp_path: Path) -> None:
    await (await redis_ready()).aclose()
    prefix = unique_name("workers")
    tracker_store = redis_options(prefix)
    project = bank_project(tmp_path, tracker_store)
    (project / "actions").mkdir()
    (project / "actions" / "__init__.py").write_text("")
    (project / "actions" / "bank.py").write_text(ACTIONS.replace("0.15", "0.01"))
    endpoints = {
        "tracker_store": tracker_store,
        "lock_store": redis_options(prefix + "_lock"),
        "action_endpoint": {"actions_module": "actions"},
    }
    (project / "endpoints.yml").write_text(yaml.safe_dump(endpoints))
    port = free_port()
    log = tmp_path / "server.log"
    server = run_cli("run", str(project), "--port", str(port), "--workers", "2", "--log-level", "warning", stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            deadline = time.monotonic() + 40
            while True:
                assert server.poll() is None, log.read_text()
                assert time.monotonic() < deadline, f"no answer in 40 s:\n{log.read_text()}"
                try:
                    if (await client.get("/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)

            async def converse(n: int) -> None:
                for index, (payload, expected) in enumerate(script(n)):
                    body = {"sender": f"c{n}", "message": payload, "metadata": {"turn": index}}
                    response = await client.post(WEBHOOK, json=body)
                    assert response.status_code == 200, response.text
                    assert [m.get("text") for m in response.json()] == expected

            await asyncio.gather(*(converse(n) for n in range(20)))

        store = create_tracker_store(StoreConfig(**tracker_store), tmp_path)
        try:
            for n in range(20):
                turns = [e.metadata["turn"] for e in await store.events(f"c{n}") if isinstance(e, UserUttered)]
                assert turns == list(range(10))
        finally:
            await store.close()
        # Two worker processes served (uvicorn's supervisor plus its workers).
        children = subprocess.run(["pgrep", "-P", str(server.pid)], capture_output=True, text=True).stdout.split()
        assert len(children) >= 2
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            assert server.wait(40) == 0, log.read_text()
        finally:
            if server.poll() is None:
                server.kill()
            await drop_redis_prefix(prefix)
            await drop_redis_prefix(prefix + "_lock")


def test_workers_refuse_an_in_memory_tracker_store(tmp_path: Path) -> None:
    project = bank_project(tmp_path, {"type": "InMemoryTrackerStore"})
    result = run_cli("run", str(project), "--port", str(free_port()), "--workers", "2", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, stderr = result.communicate(timeout=60)
    assert result.returncode == 2
    assert b"--workers needs a tracker store" in stderr
