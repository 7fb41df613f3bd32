"""Prometheus metrics: every metric voicecalm exports is defined here, once, with the helpers
the rest of the code calls (`turn`, `stage`, `llm_error`, `action_failed`, `active_call`).

`GET /metrics` on the server serves `exposition()`. With `voicecalm run --workers N` each worker
process writes its values to files in `$PROMETHEUS_MULTIPROC_DIR` (set by the CLI to a fresh
folder) and any worker's `/metrics` shows the sum over all of them (prometheus-client's
multiprocess mode; the process and GC collectors are then left out).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess

CONTENT_TYPE = CONTENT_TYPE_LATEST  # of `exposition()`

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"

STAGES = ("understanding", "dialogue", "store", "total")
OK = "ok"
INTERNAL_ERROR = "internal_error"  # the turn raised and was answered with the internal error pattern
FAILED = "failed"  # the turn raised out of `Assistant.handle` and was not stored

# Seconds; an LLM turn on a CPU takes seconds, a payload turn milliseconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

TURNS = Counter("voicecalm_turns", "User turns handled, by channel and outcome.", ["channel", "outcome"])
TURN_SECONDS = Histogram(
    "voicecalm_turn_duration_seconds",
    "Time a turn spent in each stage: understanding, dialogue, store, total.",
    ["stage"],
    buckets=LATENCY_BUCKETS,
)
LLM_ERRORS = Counter(
    "voicecalm_llm_errors", "Command generator calls that got no answer from the model, by kind.", ["kind"]
)
ROUTED = Counter(
    "voicecalm_routed_commands", "Messages the command router answered without the model, by command.", ["command"]
)
ACTION_ERRORS = Counter("voicecalm_action_errors", "Custom actions that failed, by kind of failure.", ["kind"])
ACTIVE_CALLS = Gauge("voicecalm_active_calls", "Voice calls connected right now.", multiprocess_mode="livesum")

# Label values come from clients (the REST channel's `input_channel`): keep them few and tame.
_CHANNEL_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")
MAX_CHANNELS = 50
_channels: set[str] = set()


def channel_label(channel: str | None) -> str:
    """The `channel` label of a turn: its input channel, "unknown", or "other" past the first
    `MAX_CHANNELS` names (so a client cannot grow the series without bound)."""
    if not channel:
        return "unknown"
    if channel in _channels:
        return channel
    if not _CHANNEL_NAME.match(channel) or len(_channels) >= MAX_CHANNELS:
        return "other"
    _channels.add(channel)
    return channel


@dataclass
class TurnRecord:
    """What `turn()` counts when the turn ends; set `outcome` to change how it is counted."""

    channel: str
    outcome: str = OK


@contextmanager
def turn(channel: str | None) -> Iterator[TurnRecord]:
    """Count one turn and observe its total time; an exception out of the block counts as failed."""
    record = TurnRecord(channel_label(channel))
    started = time.perf_counter()
    try:
        yield record
    except BaseException:
        record.outcome = FAILED
        raise
    finally:
        TURN_SECONDS.labels("total").observe(time.perf_counter() - started)
        TURNS.labels(record.channel, record.outcome).inc()


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Observe the time the block takes as one stage of a turn (exceptions included)."""
    histogram = TURN_SECONDS.labels(name)
    started = time.perf_counter()
    try:
        yield
    finally:
        histogram.observe(time.perf_counter() - started)


def llm_error(kind: str) -> None:
    """The command generator got no answer: "unavailable" (no model) or "completion"."""
    LLM_ERRORS.labels(kind).inc()


def routed(command: str) -> None:
    """The command router gave `command` (its JSON name) and the model was not asked."""
    ROUTED.labels(command).inc()


def action_failed(kind: str) -> None:
    """A custom action failed (`ActionFailed.kind`: timeout, connection_error, ...)."""
    ACTION_ERRORS.labels(kind).inc()


def call_started() -> None:
    ACTIVE_CALLS.inc()


def call_ended() -> None:
    ACTIVE_CALLS.dec()


@contextmanager
def active_call() -> Iterator[None]:
    """Count a voice call as active while the block runs."""
    call_started()
    try:
        yield
    finally:
        call_ended()


def exposition() -> bytes:
    """The metrics in Prometheus' text format (content type `CONTENT_TYPE_LATEST`)."""
    if os.environ.get(MULTIPROCESS_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def process_exiting() -> None:
    """Multiprocess mode: drop this worker's live gauges as it shuts down (its counters keep
    counting). A worker that is killed cannot: its active calls stay counted until a restart."""
    if os.environ.get(MULTIPROCESS_ENV):
        multiprocess.mark_process_dead(os.getpid())
