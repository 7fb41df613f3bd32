"""Tracker store in a SQLite file: the embedded default, safe for several worker processes."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import aiosqlite

from voicecalm.tracker.events import Event, event_from_dict
from voicecalm.tracker.stores.base import ConcurrentUpdateError, TrackerStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    sender_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (sender_id, idx)
) WITHOUT ROWID
"""

Row = tuple[str, int, str]


class SQLiteTrackerStore(TrackerStore):
    """One row per event, keyed by (sender_id, idx); one transaction per append.

    The connection opens on first use, so the store can be built outside an event loop.
    """

    def __init__(self, path: Path | str, busy_timeout_ms: int = 10_000) -> None:
        self.path = Path(path)
        self._busy_timeout_ms = busy_timeout_ms
        self._db: aiosqlite.Connection | None = None
        # One connection serves every coroutine: serialise its use so a reader never sees
        # another coroutine's uncommitted rows and transactions never nest.
        self._lock = asyncio.Lock()

    async def _connection(self) -> aiosqlite.Connection:
        if self._db is None:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves.
            db = await aiosqlite.connect(self.path, isolation_level=None)
            try:
                await db.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
                await db.execute("PRAGMA journal_mode = WAL")
                # In WAL mode NORMAL survives process crashes; only power loss can drop the
                # latest commits, never corrupt the file.
                await db.execute("PRAGMA synchronous = NORMAL")
                await db.execute(_SCHEMA)
            except BaseException:
                await db.close()
                raise
            self._db = db
        return self._db

    async def events(self, sender_id: str, start: int = 0) -> list[Event]:
        async with self._lock:
            db = await self._connection()
            async with db.execute(
                "SELECT data FROM events WHERE sender_id = ? AND idx >= ? ORDER BY idx",
                (sender_id, max(start, 0)),
            ) as cursor:
                rows = await cursor.fetchall()
        return [event_from_dict(json.loads(data)) for (data,) in rows]

    async def append(self, sender_id: str, events: Sequence[Event], expected_count: int) -> None:
        # Serialise before touching the database, so a bad event never opens a transaction.
        rows: list[Row] = [
            (sender_id, expected_count + offset, json.dumps(event.to_dict()))
            for offset, event in enumerate(events)
        ]
        async with self._lock:
            db = await self._connection()
            # IMMEDIATE takes the write lock now, so the count check and the inserts see the
            # same state even with other processes writing.
            await db.execute("BEGIN IMMEDIATE")
            try:
                stored = await self._stored_count(db, sender_id)
                if stored != expected_count:
                    raise ConcurrentUpdateError(sender_id, expected_count, stored)
                try:
                    await self._insert_rows(db, rows)
                except sqlite3.IntegrityError as error:
                    stored = await self._stored_count(db, sender_id)
                    raise ConcurrentUpdateError(sender_id, expected_count, stored) from error
                await db.execute("COMMIT")
            except BaseException:
                await db.execute("ROLLBACK")
                raise

    @staticmethod
    async def _stored_count(db: aiosqlite.Connection, sender_id: str) -> int:
        # Indices are contiguous from 0, so max + 1 is the count (and uses the primary key).
        async with db.execute(
            "SELECT COALESCE(MAX(idx) + 1, 0) FROM events WHERE sender_id = ?", (sender_id,)
        ) as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    @staticmethod
    async def _insert_rows(db: aiosqlite.Connection, rows: list[Row]) -> None:
        await db.executemany("INSERT INTO events (sender_id, idx, data) VALUES (?, ?, ?)", rows)

    async def sender_ids(self) -> list[str]:
        async with self._lock:
            db = await self._connection()
            async with db.execute("SELECT DISTINCT sender_id FROM events ORDER BY sender_id") as cursor:
                rows = await cursor.fetchall()
        return [sender_id for (sender_id,) in rows]

    async def close(self) -> None:
        async with self._lock:
            if self._db is not None:
                db, self._db = self._db, None
                await db.close()
