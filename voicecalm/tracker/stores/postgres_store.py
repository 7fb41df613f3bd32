"""Tracker store in PostgreSQL (asyncpg): one row per event, one transaction per append.

The table (`voicecalm_events`, in `schema` when given) is created on first use:
  sender_id TEXT, idx INTEGER, data TEXT (the event's JSON), created_at TIMESTAMPTZ,
  PRIMARY KEY (sender_id, idx)
Rows are only ever inserted. Two workers appending to one conversation at once both insert at the
same indices: the primary key lets one commit and turns the other into `ConcurrentUpdateError`.
The table is not Rasa's `events` table (whose rows have no per-conversation index), so a database
a Rasa server also uses is left alone.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

import asyncpg

from voicecalm.tracker.events import Event, event_from_dict
from voicecalm.tracker.stores.base import ConcurrentUpdateError, TrackerStore

logger = logging.getLogger(__name__)

DEFAULT_TABLE = "voicecalm_events"
DEFAULT_DB = "rasa"  # Rasa's default for SQL tracker stores


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class PostgresTrackerStore(TrackerStore):
    """`connect` holds asyncpg.connect's keyword arguments (never logged: they hold the password).

    The pool opens on first use, so the store can be built outside an event loop.
    """

    def __init__(
        self,
        connect: dict[str, Any],
        *,
        schema: str | None = None,
        table: str = DEFAULT_TABLE,
        login_db: str | None = None,
        pool_size: int = 10,
    ) -> None:
        self._connect = dict(connect)
        self.database = str(connect.get("database") or DEFAULT_DB)
        self.schema = schema
        self.table = (quote_identifier(schema) + "." if schema else "") + quote_identifier(table)
        self.login_db = login_db
        self.pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> PostgresTrackerStore:
        """From Rasa's SQL tracker store keys: `url` (a host, or a postgresql:// URL), `host`,
        `port`, `db`, `username`, `password`, `login_db`, `query`; plus `schema`, `table`,
        `pool_size`."""
        connect: dict[str, Any] = {}
        url = options.get("url")
        if url and "://" in str(url):
            parts = urlsplit(str(url))
            connect.update(
                host=parts.hostname,
                port=parts.port,
                user=unquote(parts.username) if parts.username else None,
                password=unquote(parts.password) if parts.password else None,
                database=parts.path.lstrip("/") or None,
            )
        else:
            connect["host"] = options.get("host") or url or "localhost"
        for key, option in (("port", "port"), ("database", "db"), ("user", "username"), ("password", "password")):
            if options.get(option) is not None:
                connect[key] = options[option]
        connect["port"] = int(connect.get("port") or 5432)
        connect["database"] = str(connect.get("database") or DEFAULT_DB)
        server_settings: dict[str, str] = {}
        for key, value in dict(options.get("query") or {}).items():
            if key in {"sslmode", "ssl"}:
                connect["ssl"] = str(value)
            elif key == "connect_timeout":
                connect["timeout"] = float(value)
            else:
                server_settings[key] = str(value)
        if server_settings:
            connect["server_settings"] = server_settings
        connect = {key: value for key, value in connect.items() if value is not None}
        return cls(
            connect,
            schema=options.get("schema"),
            table=str(options.get("table") or DEFAULT_TABLE),
            login_db=options.get("login_db"),
            pool_size=int(options.get("pool_size") or 10),
        )

    def __repr__(self) -> str:
        where = f"{self._connect.get('host')}:{self._connect.get('port')}/{self.database}"
        return f"PostgresTrackerStore({where}, table={self.table})"

    async def _open(self) -> asyncpg.Pool:
        if self._pool is not None:
            return self._pool
        async with self._opening:
            if self._pool is None:
                if self.login_db:
                    await self._create_database()
                pool = await asyncpg.create_pool(min_size=1, max_size=self.pool_size, **self._connect)
                try:
                    await self._create_table(pool)
                except BaseException:
                    await pool.close()
                    raise
                logger.info("tracker store: %r", self)
                self._pool = pool
        return self._pool

    async def _create_database(self) -> None:
        """Rasa's `login_db`: connect there first and create `db` if it does not exist."""
        conn = await asyncpg.connect(**{**self._connect, "database": self.login_db})
        try:
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", self.database):
                try:
                    await conn.execute(f"CREATE DATABASE {quote_identifier(self.database)}")
                except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
                    pass  # another worker created it first
        finally:
            await conn.close()

    async def _create_table(self, pool: asyncpg.Pool) -> None:
        async with pool.acquire() as conn, conn.transaction():
            # Workers starting together would race on CREATE ... IF NOT EXISTS: take turns.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('voicecalm tracker schema'))")
            if self.schema:
                await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_identifier(self.schema)}")
            await conn.execute(
                f"""CREATE TABLE IF NOT EXISTS {self.table} (
                    sender_id TEXT NOT NULL,
                    idx INTEGER NOT NULL,
                    data TEXT NOT NULL,
                    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                    PRIMARY KEY (sender_id, idx)
                )"""
            )

    async def events(self, sender_id: str, start: int = 0) -> list[Event]:
        pool = await self._open()
        rows = await pool.fetch(
            f"SELECT data FROM {self.table} WHERE sender_id = $1 AND idx >= $2 ORDER BY idx", sender_id, max(start, 0)
        )
        return [event_from_dict(json.loads(row[0])) for row in rows]

    async def append(self, sender_id: str, events: Sequence[Event], expected_count: int) -> None:
        # Serialise before touching the database, so a bad event never opens a transaction.
        items = [json.dumps(event.to_dict()) for event in events]
        pool = await self._open()
        async with pool.acquire() as conn:
            try:
                async with conn.transaction():
                    stored = await self._stored_count(conn, sender_id)
                    if stored != expected_count:
                        raise ConcurrentUpdateError(sender_id, expected_count, stored)
                    if items:
                        await self._insert(conn, sender_id, expected_count, items)
            except asyncpg.UniqueViolationError as error:
                # Another transaction inserted at these indices and committed first.
                stored = await self._stored_count(conn, sender_id)
                raise ConcurrentUpdateError(sender_id, expected_count, stored) from error

    async def _stored_count(self, conn: asyncpg.Connection, sender_id: str) -> int:
        # Indices are contiguous from 0, so max + 1 is the count (and uses the primary key).
        return int(await conn.fetchval(f"SELECT COALESCE(MAX(idx) + 1, 0) FROM {self.table} WHERE sender_id = $1", sender_id))

    async def _insert(self, conn: asyncpg.Connection, sender_id: str, first: int, items: list[str]) -> None:
        await conn.execute(
            f"""INSERT INTO {self.table} (sender_id, idx, data)
                SELECT $1, $2::integer + (u.n)::integer - 1, u.data
                FROM unnest($3::text[]) WITH ORDINALITY AS u(data, n)""",
            sender_id,
            first,
            items,
        )

    async def sender_ids(self) -> list[str]:
        pool = await self._open()
        rows = await pool.fetch(f"SELECT DISTINCT sender_id FROM {self.table}")
        return sorted(row[0] for row in rows)

    async def close(self) -> None:
        async with self._opening:
            if self._pool is not None:
                pool, self._pool = self._pool, None
                await pool.close()
