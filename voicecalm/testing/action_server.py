"""Start a real rasa-sdk action server on a free loopback port (tests and benchmarks)."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class ServerTls:
    """PEM files for serving over HTTPS: the server's certificate chain and key, and the CA a
    client must trust to reach it."""

    certificate: Path
    key: Path
    ca: Path


@contextmanager
def action_server(package: str, folder: Path, startup_seconds: float = 60, tls: ServerTls | None = None) -> Iterator[str]:
    """Serve `package` (importable from `folder`) with `python -m rasa_sdk`, over HTTPS with
    `tls`; yields the webhook URL."""
    port = free_port()
    scheme, verify = "http", True
    arguments = [sys.executable, "-m", "rasa_sdk", "--actions", package, "-p", str(port)]
    if tls is not None:
        scheme, verify = "https", ssl.create_default_context(cafile=str(tls.ca))
        arguments += ["--ssl-certificate", str(tls.certificate), "--ssl-keyfile", str(tls.key)]
    process = subprocess.Popen(
        arguments,
        cwd=folder,
        env={**os.environ, "SANIC_HOST": "127.0.0.1", "PYTHONPATH": str(folder)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + startup_seconds
        while True:
            try:
                if httpx.get(f"{scheme}://127.0.0.1:{port}/health", timeout=1, verify=verify).status_code == 200:
                    break
            except httpx.HTTPError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"the rasa-sdk action server for {package} did not start") from None
                time.sleep(0.2)
        yield f"{scheme}://127.0.0.1:{port}/webhook"
    finally:
        process.terminate()
        process.wait(timeout=10)
