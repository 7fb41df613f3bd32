"""The embedded LLM, served to litellm: one llama.cpp server per model file and process.

`LocalLlmServer` runs `python -m llama_cpp.server` (llama-cpp-python's OpenAI-compatible server)
as a child process on a free loopback port, with a random API key, and `await server.start()`
returns a `LocalEndpoint` that litellm calls like any OpenAI endpoint:

    endpoint = await local_endpoint()                 # assembles the default model on first use
    await litellm.acompletion(model=endpoint.model, api_base=endpoint.api_base,
                              api_key=endpoint.api_key, messages=..., extra_body={"grammar": GBNF})

Why a child process rather than `llama_cpp.Llama` inside this one: the same prefix reuse and
latency (the HTTP hop costs a few ms), while a crash or a hung decode in native code cannot take
the assistant down, a timed-out call never leaves a thread holding the model, and the model's
~1 GB of weights and KV cache are released when the server stops.

Prefix reuse: the server keeps ONE `Llama` whose KV cache holds the previous request's tokens;
the next request evaluates only the tokens after the common prefix ("prefix-match hit" in its
log). Put the static part of the prompt first, and send it once at start-up (a warm-up): the
first 1,500-token prompt costs ~27 s on 2 cores, later turns ~1 s. Only the LAST request's
tokens are kept, so prompts that alternate between two prefixes lose the reuse. `--cache`
(LlamaRAMCache) is off on purpose: it was slower and doubled RAM (models.md). `logits_all` is off:
the server's default keeps logits for every prompt position (an n_ctx × vocab float array, up to
2.5 GB at 4096 × 151,936), which only logprobs need.

Supervision: a daemon thread waits on the child; if it dies unexpectedly it is restarted on the
same port (a few times, with back-off). Call `await server.start()` before each request: it
returns at once while the server runs and waits for a restart otherwise. The child gets SIGTERM
when the parent dies (PR_SET_PDEATHSIG) and at interpreter exit.

A non-streaming request that the client abandons (timeout) still runs to its end inside the
server, holding the model: bound `max_tokens`.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from voicecalm.models.catalog import ModelSpec

logger = logging.getLogger(__name__)

STARTUP_TIMEOUT_SECONDS = 180.0  # loading 1 GB from a cold disk cache on a slow machine
MAX_RESTARTS = 5  # within RESTART_WINDOW_SECONDS; then the server stays down and start() raises
RESTART_WINDOW_SECONDS = 300.0
STOP_TIMEOUT_SECONDS = 10.0


class LocalLlmError(RuntimeError):
    """The embedded model server could not be started or kept running."""


@dataclass(frozen=True, slots=True)
class LocalEndpoint:
    """How litellm reaches the server: `litellm.acompletion(model=..., api_base=..., api_key=...)`."""

    api_base: str  # "http://127.0.0.1:<port>/v1"
    model: str  # "openai/<alias>"
    api_key: str  # random per server; the server refuses requests without it


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _parent_death_signal() -> object | None:
    """prctl(PR_SET_PDEATHSIG, SIGTERM), bound in the parent: no dlopen between fork and exec."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1


class LocalLlmServer:
    """One llama.cpp OpenAI-compatible server for one GGUF file, started on demand and supervised."""

    def __init__(
        self,
        model_path: Path | str,
        *,
        alias: str | None = None,
        n_ctx: int = 4096,
        n_threads: int = 2,
        chat_format: str | None = None,
        extra_args: tuple[str, ...] = (),
        startup_timeout: float = STARTUP_TIMEOUT_SECONDS,
        python: str = sys.executable,
    ) -> None:
        self.model_path = Path(model_path)
        self.alias = alias or self.model_path.stem
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.chat_format = chat_format  # None: the template inside the GGUF, run by llama-cpp in a jinja2 sandbox
        self.extra_args = tuple(extra_args)
        self.startup_timeout = startup_timeout
        self.python = python
        self._api_key = secrets.token_hex(24)  # hex: a key starting with "-" would read as a flag
        self._port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._ready = threading.Event()
        self._lock = threading.RLock()  # guards _process, _port, _closing, _failure
        self._closing = False
        self._failure: str | None = None
        self._restarts: collections.deque[float] = collections.deque()
        self._output: collections.deque[str] = collections.deque(maxlen=60)
        self._supervisor: threading.Thread | None = None
        self._preexec = _parent_death_signal()

    # --- public API -------------------------------------------------------------------------

    @property
    def endpoint(self) -> LocalEndpoint | None:
        """The endpoint while the server is up, else None."""
        if not self._ready.is_set() or self._port is None:
            return None
        return LocalEndpoint(f"http://127.0.0.1:{self._port}/v1", f"openai/{self.alias}", self._api_key)

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    async def start(self) -> LocalEndpoint:
        """Start the server if needed and wait until it answers; cheap when it already runs."""
        endpoint = self.endpoint
        if endpoint is not None:
            return endpoint
        return await asyncio.to_thread(self.start_sync)

    def start_sync(self) -> LocalEndpoint:
        """`start` for callers without an event loop (CLI, benchmarks)."""
        with self._lock:
            if self._closing:
                raise LocalLlmError(f"the server for {self.model_path.name} was closed")
            if self._failure is not None:
                raise LocalLlmError(self._failure)
            if self._supervisor is None:
                if not self.model_path.is_file():
                    raise LocalLlmError(f"model file {self.model_path} does not exist")
                self._port = _free_port()
                # The supervisor thread spawns (and re-spawns) the child: the kernel's parent-death
                # signal follows the thread that forked, so that thread must live as long as the
                # server, not end with the event loop or executor that first called start().
                self._supervisor = threading.Thread(target=self._supervise, name=f"llm-server-{self.alias}", daemon=True)
                self._supervisor.start()
        deadline = time.monotonic() + self.startup_timeout
        while not self._ready.wait(0.1):
            with self._lock:
                if self._failure is not None:
                    raise LocalLlmError(self._failure)
                if self._closing:
                    raise LocalLlmError(f"the server for {self.model_path.name} was closed while starting")
            if time.monotonic() > deadline:
                raise LocalLlmError(
                    f"llama.cpp server for {self.model_path.name} did not answer within {self.startup_timeout:.0f} s"
                    f"{self._output_tail()}"
                )
        endpoint = self.endpoint
        if endpoint is None:  # died between ready and here
            return self.start_sync()
        return endpoint

    async def close(self) -> None:
        await asyncio.to_thread(self.close_sync)

    def close_sync(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after a grace period); idempotent."""
        with self._lock:
            self._closing = True
            self._ready.clear()
            process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        supervisor = self._supervisor
        if supervisor is not None and supervisor is not threading.current_thread():
            supervisor.join(STOP_TIMEOUT_SECONDS)

    # --- the child process ------------------------------------------------------------------

    def command(self) -> list[str]:
        args = [
            self.python, "-m", "llama_cpp.server",
            "--model", str(self.model_path),
            "--model_alias", self.alias,
            "--host", "127.0.0.1",
            "--port", str(self._port),
            "--api_key", self._api_key,
            "--n_ctx", str(self.n_ctx),
            "--n_threads", str(self.n_threads),
            "--n_threads_batch", str(self.n_threads),
            "--logits_all", "False",
            "--cache", "False",
            "--verbose", "True",  # its log (kept for error messages) shows prefix-match hits and timings
        ]  # fmt: skip
        if self.chat_format:
            args += ["--chat_format", self.chat_format]
        return args + list(self.extra_args)

    def _spawn(self) -> None:
        environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
        environment.pop("CONFIG_FILE", None)  # llama_cpp.server would read its settings from there instead
        self._ready.clear()
        logger.info("starting llama.cpp server for %s on 127.0.0.1:%s", self.model_path.name, self._port)
        self._process = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=environment,
            preexec_fn=self._preexec,  # type: ignore[arg-type]
        )
        threading.Thread(target=self._read_output, args=(self._process,), daemon=True).start()
        threading.Thread(target=self._wait_ready, args=(self._process,), daemon=True).start()

    def _read_output(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            self._output.append(line)
            logger.debug("llama.cpp[%s]: %s", self.alias, line)

    def _wait_ready(self, process: subprocess.Popen[bytes]) -> None:
        url = f"http://127.0.0.1:{self._port}/v1/models"
        headers = {"Authorization": f"Bearer {self._api_key}"}
        deadline = time.monotonic() + self.startup_timeout
        with httpx.Client(timeout=2.0) as client:
            while process.poll() is None and time.monotonic() < deadline:
                try:
                    if client.get(url, headers=headers).status_code == 200:
                        with self._lock:
                            if self._process is process and not self._closing:
                                self._ready.set()
                                logger.info("llama.cpp server for %s is ready (pid %s)", self.model_path.name, process.pid)
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)

    def _supervise(self) -> None:
        while True:
            with self._lock:
                if self._closing:
                    return
                if self._port is None or not _port_free(self._port):
                    self._port = _free_port()
                try:
                    self._spawn()
                except OSError as error:
                    self._failure = f"cannot start the llama.cpp server for {self.model_path.name}: {error}"
                    logger.error("%s", self._failure)
                    return
                process = self._process
            assert process is not None
            code = process.wait()
            with self._lock:
                self._ready.clear()
                if self._closing:
                    return
                now = time.monotonic()
                self._restarts.append(now)
                while self._restarts and now - self._restarts[0] > RESTART_WINDOW_SECONDS:
                    self._restarts.popleft()
                if len(self._restarts) > MAX_RESTARTS:
                    self._failure = (
                        f"llama.cpp server for {self.model_path.name} exited {len(self._restarts)} times "
                        f"within {RESTART_WINDOW_SECONDS:.0f} s (last exit code {code}); giving up{self._output_tail()}"
                    )
                    logger.error("%s", self._failure)
                    return
                logger.warning(
                    "llama.cpp server for %s exited with code %s; restarting%s", self.model_path.name, code, self._output_tail()
                )
            time.sleep(min(0.5 * 2 ** (len(self._restarts) - 1), 8.0))

    def _output_tail(self, lines: int = 15) -> str:
        tail = list(self._output)[-lines:]
        return (":\n  " + "\n  ".join(tail)) if tail else ""


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


# --- one server per model file and process ----------------------------------------------------

_shared: dict[Path, LocalLlmServer] = {}
_shared_pid = os.getpid()
_shared_lock = threading.Lock()


def shared_server(model_path: Path | str, **settings: object) -> LocalLlmServer:
    """The process-wide server for `model_path` (created on first call; `settings` apply then only)."""
    global _shared_pid
    key = Path(model_path).resolve()
    with _shared_lock:
        if _shared_pid != os.getpid():  # a forked worker: the parent's servers are not ours
            _shared.clear()
            _shared_pid = os.getpid()
        server = _shared.get(key)
        if server is None or server._closing:
            server = _shared[key] = LocalLlmServer(key, **settings)  # type: ignore[arg-type]
        return server


async def local_endpoint(spec: ModelSpec | None = None, cache_dir: Path | None = None) -> LocalEndpoint:
    """The shared server's endpoint for a catalog model (default: `catalog.DEFAULT_LLM`), assembling it once."""
    from voicecalm.models.assemble import ensure_model
    from voicecalm.models.catalog import DEFAULT_LLM

    chosen = DEFAULT_LLM if spec is None else spec
    path = await asyncio.to_thread(ensure_model, chosen, cache_dir, False)
    return await shared_server(path, alias=chosen.name).start()


def close_shared_servers() -> None:
    """Stop every shared server of this process (also runs at interpreter exit)."""
    with _shared_lock:
        servers = list(_shared.values()) if _shared_pid == os.getpid() else []
        _shared.clear()
    for server in servers:
        server.close_sync()


atexit.register(close_shared_servers)
