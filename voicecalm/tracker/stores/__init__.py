"""Tracker stores: where conversations' events are kept, chosen by endpoints.yml `tracker_store`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from voicecalm.project.schema import StoreConfig
from voicecalm.tracker.stores.base import ConcurrentUpdateError, TrackerStore
from voicecalm.tracker.stores.memory import InMemoryTrackerStore
from voicecalm.tracker.stores.sqlite import SQLiteTrackerStore

if TYPE_CHECKING:
    from voicecalm.tracker.stores.postgres_store import PostgresTrackerStore
    from voicecalm.tracker.stores.redis_store import RedisTrackerStore

__all__ = [
    "DEFAULT_SQLITE_PATH",
    "ConcurrentUpdateError",
    "InMemoryTrackerStore",
    "PostgresTrackerStore",
    "RedisTrackerStore",
    "SQLiteTrackerStore",
    "TrackerStore",
    "create_tracker_store",
]

DEFAULT_SQLITE_PATH = Path(".voicecalm") / "trackers.db"

_MEMORY_TYPES = {"inmemorytrackerstore", "memory", "in_memory"}
_REDIS_TYPES = {"redis", "redistrackerstore"}
_POSTGRES_DIALECTS = {"postgresql", "postgres"}


def create_tracker_store(config: StoreConfig | None, project_root: Path) -> TrackerStore:
    """Build the store an endpoints.yml `tracker_store` section describes (Rasa's keys).

    Error messages name only `type` and `dialect`: the rest of the section may hold passwords.
    """
    kind = (config.type if config is not None else None) or "sqlite"
    key = kind.lower()
    if key in _MEMORY_TYPES:
        return InMemoryTrackerStore()
    if key in {"sql", "sqltrackerstore"}:
        dialect = str(_option(config, "dialect") or "sqlite")
        if dialect.lower() in _POSTGRES_DIALECTS:
            from voicecalm.tracker.stores.postgres_store import PostgresTrackerStore

            return PostgresTrackerStore.from_options(_options(config))
        if dialect.lower() != "sqlite":
            raise ValueError(f"tracker_store: unknown SQL dialect {dialect!r} (supported: sqlite, postgresql)")
        return _sqlite_store(config, project_root)
    if key == "sqlite":
        return _sqlite_store(config, project_root)
    if key in _REDIS_TYPES:
        from voicecalm.tracker.stores.redis_store import RedisTrackerStore

        return RedisTrackerStore.from_options(_options(config))
    raise ValueError(
        f"tracker_store: unknown type {kind!r} (supported: InMemoryTrackerStore, memory, sqlite, SQL, redis)"
    )


def _options(config: StoreConfig | None) -> dict[str, Any]:
    return dict(config.model_extra or {}) if config is not None else {}


def _option(config: StoreConfig | None, name: str) -> object:
    return (config.model_extra or {}).get(name) if config is not None else None


def _sqlite_store(config: StoreConfig | None, project_root: Path) -> SQLiteTrackerStore:
    db = _option(config, "db")
    path = Path(project_root) / (Path(str(db)).expanduser() if db else DEFAULT_SQLITE_PATH)
    path.parent.mkdir(parents=True, exist_ok=True)
    return SQLiteTrackerStore(path)


def __getattr__(name: str) -> object:
    # The Redis and PostgreSQL stores import their drivers only when asked for.
    if name == "RedisTrackerStore":
        from voicecalm.tracker.stores.redis_store import RedisTrackerStore

        return RedisTrackerStore
    if name == "PostgresTrackerStore":
        from voicecalm.tracker.stores.postgres_store import PostgresTrackerStore

        return PostgresTrackerStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
