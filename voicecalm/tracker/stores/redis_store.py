"""Tracker store in Redis: one list of JSON events per conversation, appended by a Lua script.

Keys (with `key_prefix: p` they start `p:`):
  `voicecalm:events:<sender_id>`  list, one JSON event per item, never rewritten
  `voicecalm:senders`             set of every sender id with at least one event

The append script checks the list's length against `expected_count` and pushes the whole batch in
one step, so two workers appending to one conversation cannot interleave: one wins, the other gets
`ConcurrentUpdateError`. The key names differ from Rasa's (`tracker:<sender_id>` holds a whole
serialised tracker there), so a Redis that a Rasa server also uses is left alone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from voicecalm.tracker.events import Event, event_from_dict
from voicecalm.tracker.stores.base import ConcurrentUpdateError, TrackerStore

# KEYS: events list, senders set. ARGV: expected count, expiry seconds (0: none), sender id,
# then the events. Returns the stored count before the call; nothing is written on a mismatch.
_APPEND = """
local stored = redis.call('LLEN', KEYS[1])
if stored ~= tonumber(ARGV[1]) then
    return stored
end
if #ARGV > 3 then
    redis.call('RPUSH', KEYS[1], unpack(ARGV, 4))
    redis.call('SADD', KEYS[2], ARGV[3])
    local expiry = tonumber(ARGV[2])
    if expiry > 0 then
        redis.call('EXPIRE', KEYS[1], expiry)
    end
end
return stored
"""

# Lua's unpack has a stack limit; a turn's batch is far smaller, but a bulk import need not be.
_MAX_BATCH = 4000


def redis_client(options: dict[str, Any], *, default_port: int = 6379) -> aioredis.Redis:
    """A client for Rasa's redis keys: `url` (a host, or a full redis:// URL), `port`, `db`,
    `password`, `use_ssl`, `socket_timeout`; plus `max_connections` (default 50 per process).
    No connection is made until first use. When all connections are busy, a command waits for
    one (up to 20 s) instead of failing."""
    url = str(options.get("url") or options.get("host") or "localhost")
    common: dict[str, Any] = {
        "decode_responses": True,
        "max_connections": int(options.get("max_connections") or 50),
        "timeout": 20,
    }
    if options.get("socket_timeout") is not None:
        common["socket_timeout"] = float(options["socket_timeout"])
    if "://" in url:
        if options.get("password") is not None:
            common["password"] = str(options["password"])
        pool = aioredis.BlockingConnectionPool.from_url(url, **common)
    else:
        if options.get("use_ssl"):
            common["connection_class"] = aioredis.SSLConnection
        pool = aioredis.BlockingConnectionPool(
            host=url,
            port=int(options.get("port") or default_port),
            db=int(options.get("db") or 0),
            password=None if options.get("password") is None else str(options["password"]),
            **common,
        )
    return aioredis.Redis.from_pool(pool)


def key_base(key_prefix: object) -> str:
    return f"{key_prefix}:" if key_prefix else ""


class RedisTrackerStore(TrackerStore):
    """Events per conversation in a Redis list; `record_exp` (seconds) expires idle conversations."""

    def __init__(self, client: aioredis.Redis, *, key_prefix: str | None = None, record_exp: float | None = None) -> None:
        self.client = client
        base = key_base(key_prefix)
        self._events_prefix = f"{base}voicecalm:events:"
        self._senders_key = f"{base}voicecalm:senders"
        self.record_exp = int(record_exp) if record_exp else 0
        self._append = client.register_script(_APPEND)

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> RedisTrackerStore:
        return cls(redis_client(options), key_prefix=options.get("key_prefix"), record_exp=options.get("record_exp"))

    def _key(self, sender_id: str) -> str:
        return self._events_prefix + sender_id

    async def events(self, sender_id: str, start: int = 0) -> list[Event]:
        items = await self.client.lrange(self._key(sender_id), max(start, 0), -1)
        return [event_from_dict(json.loads(item)) for item in items]

    async def append(self, sender_id: str, events: Sequence[Event], expected_count: int) -> None:
        # Serialise first, so a bad event never reaches Redis.
        items = [json.dumps(event.to_dict()) for event in events]
        if len(items) > _MAX_BATCH:
            # Only the first chunk is checked against other writers; the rest follow it on.
            await self.append(sender_id, events[:_MAX_BATCH], expected_count)
            await self.append(sender_id, events[_MAX_BATCH:], expected_count + _MAX_BATCH)
            return
        keys = [self._key(sender_id), self._senders_key]
        stored = int(await self._append(keys=keys, args=[expected_count, self.record_exp, sender_id, *items]))
        if stored != expected_count:
            raise ConcurrentUpdateError(sender_id, expected_count, stored)

    async def sender_ids(self) -> list[str]:
        senders = sorted(await self.client.smembers(self._senders_key))
        if not self.record_exp or not senders:
            return senders
        # Expired conversations leave their id behind in the set: drop those.
        async with self.client.pipeline(transaction=False) as pipe:
            for sender_id in senders:
                pipe.exists(self._key(sender_id))
            alive = await pipe.execute()
        gone = [s for s, exists in zip(senders, alive, strict=True) if not exists]
        if gone:
            await self.client.srem(self._senders_key, *gone)
        return [s for s, exists in zip(senders, alive, strict=True) if exists]

    async def close(self) -> None:
        await self.client.aclose()
