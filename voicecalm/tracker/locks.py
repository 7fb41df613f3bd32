"""Lock stores: turns of one conversation run one at a time, in arrival order, chosen by
endpoints.yml `lock_store` (Rasa's keys).

    async with lock_store.lock(sender_id):
        ...  # load, run, append

`InMemoryLockStore` (the default) orders turns within one process. `RedisLockStore` orders them
across every worker that shares the Redis, with Rasa's ticket scheme: each waiter draws a ticket
number, the lowest live ticket holds the lock, and every ticket expires `lock_lifetime` seconds
after its holder last renewed it, so a worker that dies mid-turn blocks its conversation for at
most that long. Holders and waiters renew their tickets while they wait and work.

A lock only keeps workers from tripping over each other; correctness does not rest on it. A holder
whose ticket expired (its event loop stalled past the lifetime) and a newcomer may both run a turn,
and then the tracker store's `expected_count` check lets just one of them commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
import weakref
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from voicecalm.project.schema import StoreConfig

if TYPE_CHECKING:
    import redis.asyncio as aioredis

logger = logging.getLogger(__name__)

DEFAULT_LOCK_LIFETIME = 60.0  # seconds; Rasa's TICKET_LOCK_LIFETIME default
DEFAULT_WAIT_TIMEOUT = 120.0  # seconds a turn waits for its conversation before failing


class LockTimeout(Exception):
    """The conversation stayed locked by other turns for longer than the wait timeout."""

    def __init__(self, sender_id: str, waited: float) -> None:
        super().__init__(f"conversation {sender_id!r} stayed locked for {waited:.1f} s")
        self.sender_id = sender_id


class LockStore(ABC):
    @abstractmethod
    def lock(self, sender_id: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold the conversation's lock for the block; waiters get it in arrival order."""

    async def close(self) -> None:
        pass


class InMemoryLockStore(LockStore):
    """One asyncio.Lock (first come, first served) per conversation with turns in this process."""

    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def _lock_for(self, sender_id: str) -> asyncio.Lock:
        lock = self._locks.get(sender_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[sender_id] = lock
        return lock

    @contextlib.asynccontextmanager
    async def lock(self, sender_id: str) -> AsyncIterator[None]:
        async with self._lock_for(sender_id):
            yield


# Each ticket is a key of its own that lives `lifetime` ms after its last renewal; the queue is a
# sorted set of ticket numbers. Keys computed inside scripts: fine on one Redis, not on a cluster.
#
# Drops dead tickets from the head of the queue; true when ARGV[4] (a live ticket) heads it.
_HEAD = """
local function heads(ticket)
    while true do
        local head = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
        if head == nil then
            return false
        end
        if head == ticket then
            return true
        end
        if redis.call('EXISTS', ARGV[1] .. head) == 1 then
            return false
        end
        redis.call('ZREM', KEYS[2], head)
    end
end
"""

# ISSUE: KEYS counter, queue. ARGV ticket-key prefix, lifetime ms, owner token.
# Draws the next ticket, makes its key live and queues it; returns {ticket, 1 if it heads the
# queue already (the lock is ours: the common, uncontended case) else 0}.
_ISSUE = _HEAD + """
local ticket = redis.call('INCR', KEYS[1])
redis.call('SET', ARGV[1] .. ticket, ARGV[3], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], ticket, ticket)
redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[2], 2 * tonumber(ARGV[2]))
if heads(tostring(ticket)) then
    return {ticket, 1}
end
return {ticket, 0}
"""

# POLL: KEYS counter, queue. ARGV ticket-key prefix, lifetime ms, owner token, ticket.
# Renews the ticket and drops dead tickets ahead of it. Returns 1 when the ticket heads the queue
# (the lock is ours), 0 while live tickets are ahead, -1 when the ticket itself expired.
_POLL = _HEAD + """
local key = ARGV[1] .. ARGV[4]
if redis.call('GET', key) ~= ARGV[3] then
    redis.call('ZREM', KEYS[2], ARGV[4])
    return -1
end
redis.call('PEXPIRE', key, ARGV[2])
redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[2], 2 * tonumber(ARGV[2]))
if heads(ARGV[4]) then
    return 1
end
return 0
"""

# RELEASE: KEYS counter, queue. ARGV ticket-key prefix, owner token, ticket.
# Forgets the ticket; the last one out removes the counter and queue too.
_RELEASE = """
local key = ARGV[1] .. ARGV[3]
if redis.call('GET', key) == ARGV[2] then
    redis.call('DEL', key)
end
redis.call('ZREM', KEYS[2], ARGV[3])
if redis.call('ZCARD', KEYS[2]) == 0 then
    redis.call('DEL', KEYS[1], KEYS[2])
end
return 1
"""


class RedisLockStore(LockStore):
    """Ticket locks in Redis, shared by every worker that uses the same Redis and key prefix."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        key_prefix: str | None = None,
        lock_lifetime: float = DEFAULT_LOCK_LIFETIME,
        wait_timeout: float | None = DEFAULT_WAIT_TIMEOUT,
        poll_interval: float = 0.01,
        max_poll_interval: float = 0.1,
    ) -> None:
        from voicecalm.tracker.stores.redis_store import key_base

        if lock_lifetime <= 0:
            raise ValueError("lock_store: lock_lifetime must be more than 0 seconds")
        self.client = client
        self._base = key_base(key_prefix) + "voicecalm:lock:"
        self.lifetime_ms = max(int(lock_lifetime * 1000), 1)
        self.wait_timeout = wait_timeout
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self._issue = client.register_script(_ISSUE)
        self._poll = client.register_script(_POLL)
        self._release = client.register_script(_RELEASE)
        # Waiters in this process for a conversation a turn of this process releases poll at once
        # instead of at their next tick. (Every waiter draws its ticket on arrival, so the order
        # is arrival order across all workers.)
        self._released: dict[str, asyncio.Event] = {}

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> RedisLockStore:
        from voicecalm.tracker.stores.redis_store import redis_client

        lifetime = options.get("lock_lifetime") or os.environ.get("TICKET_LOCK_LIFETIME") or DEFAULT_LOCK_LIFETIME
        wait = options.get("wait_timeout", DEFAULT_WAIT_TIMEOUT)
        return cls(
            redis_client(options),
            key_prefix=options.get("key_prefix"),
            lock_lifetime=float(lifetime),
            wait_timeout=None if wait is None else float(wait),
        )

    def _keys(self, sender_id: str) -> tuple[list[str], str]:
        base = f"{self._base}{sender_id}:"
        return [base + "counter", base + "queue"], base + "ticket:"

    @contextlib.asynccontextmanager
    async def lock(self, sender_id: str) -> AsyncIterator[None]:
        keys, ticket_prefix = self._keys(sender_id)
        owner = uuid.uuid4().hex
        ticket = await self._acquire(sender_id, keys, ticket_prefix, owner)
        renewing = asyncio.create_task(self._renew(sender_id, keys, ticket_prefix, owner, ticket))
        try:
            yield
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
            # Release even when the turn was cancelled, or the next turn waits a lifetime.
            await asyncio.shield(self._release(keys=keys, args=[ticket_prefix, owner, ticket]))
            released = self._released.pop(sender_id, None)
            if released is not None:
                released.set()

    async def _acquire(self, sender_id: str, keys: list[str], ticket_prefix: str, owner: str) -> int:
        loop = asyncio.get_running_loop()
        started = loop.time()
        ticket, state = await self._draw(keys, ticket_prefix, owner)
        delay = self.poll_interval
        try:
            while True:
                if state == 1:
                    return ticket
                if state == -1:
                    # Our own ticket expired while we waited (the loop stalled): queue again.
                    logger.warning("lock ticket for %s expired while waiting; queueing again", sender_id)
                    ticket, state = await self._draw(keys, ticket_prefix, owner)
                    continue
                waited = loop.time() - started
                if self.wait_timeout is not None and waited > self.wait_timeout:
                    raise LockTimeout(sender_id, waited)
                released = self._released.setdefault(sender_id, asyncio.Event())
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(released.wait(), delay)
                delay = min(delay * 1.5, self.max_poll_interval)
                state = int(await self._poll(keys=keys, args=[ticket_prefix, self.lifetime_ms, owner, ticket]))
        except BaseException:
            await asyncio.shield(self._release(keys=keys, args=[ticket_prefix, owner, ticket]))
            raise

    async def _draw(self, keys: list[str], ticket_prefix: str, owner: str) -> tuple[int, int]:
        ticket, heads = await self._issue(keys=keys, args=[ticket_prefix, self.lifetime_ms, owner])
        return int(ticket), int(heads)

    async def _renew(self, sender_id: str, keys: list[str], ticket_prefix: str, owner: str, ticket: int) -> None:
        while True:
            await asyncio.sleep(self.lifetime_ms / 3000)
            try:
                state = int(await self._poll(keys=keys, args=[ticket_prefix, self.lifetime_ms, owner, ticket]))
            except Exception:  # Redis briefly away: try again at the next tick
                logger.warning("could not renew the lock of %s", sender_id, exc_info=True)
                continue
            if state != 1:
                logger.warning("lost the lock of %s (it expired); the store's count check guards the commit", sender_id)
                return

    async def close(self) -> None:
        await self.client.aclose()


_MEMORY_TYPES = {"inmemorylockstore", "memory", "in_memory"}
_REDIS_TYPES = {"redis", "redislockstore"}


def create_lock_store(config: StoreConfig | None) -> LockStore:
    """Build the lock store an endpoints.yml `lock_store` section describes (Rasa's keys).

    Error messages name only `type`: the rest of the section may hold passwords.
    """
    kind = (config.type if config is not None else None) or "in_memory"
    key = kind.lower()
    if key in _MEMORY_TYPES:
        return InMemoryLockStore()
    if key in _REDIS_TYPES:
        return RedisLockStore.from_options(dict(config.model_extra or {}) if config is not None else {})
    raise ValueError(f"lock_store: unknown type {kind!r} (supported: in_memory, redis)")
