"""Lock stores: in-memory and Redis (the real local Redis, one key prefix per test)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.tracker.services import (
    drop_redis_prefix,
    redis_options,
    redis_ready,
    unique_name,
)
from voicecalm.project.schema import StoreConfig
from voicecalm.tracker.locks import (
    InMemoryLockStore,
    LockStore,
    LockTimeout,
    RedisLockStore,
    create_lock_store,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    await (await redis_ready()).aclose()
    name = unique_name("lock")
    yield name
    await drop_redis_prefix(name)


def redis_locks(prefix: str, **extra: object) -> RedisLockStore:
    store = create_lock_store(StoreConfig(**redis_options(prefix, **extra)))
    assert isinstance(store, RedisLockStore)
    return store


async def turns_in_order(stores: list[LockStore], turns: int = 30) -> list[tuple[str, float, float]]:
    """Run `turns` turns of one conversation, started in order, spread over `stores`."""
    spans: list[tuple[str, float, float]] = []
    inside = 0

    async def turn(n: int) -> None:
        nonlocal inside
        async with stores[n % len(stores)].lock("alice"):
            inside += 1
            assert inside == 1, "two turns of one conversation ran at once"
            started = time.monotonic()
            await asyncio.sleep(0.005)
            spans.append((f"t{n}", started, time.monotonic()))
            inside -= 1

    tasks = []
    for n in range(turns):
        tasks.append(asyncio.create_task(turn(n)))
        await asyncio.sleep(0.05)  # arrive in order: each draws its ticket well within this, even on a busy machine
    await asyncio.gather(*tasks)
    return spans


async def test_memory_lock_one_at_a_time_in_arrival_order() -> None:
    spans = await turns_in_order([InMemoryLockStore()])
    assert [name for name, _, _ in spans] == [f"t{n}" for n in range(30)]


async def test_redis_lock_one_at_a_time_in_arrival_order_across_clients(prefix: str) -> None:
    stores = [redis_locks(prefix), redis_locks(prefix)]  # two workers' clients
    try:
        for store in stores:  # connect and load the scripts, so each turn draws its ticket at once
            async with store.lock("warm-up"):
                pass
        spans = await turns_in_order(stores)
    finally:
        for store in stores:
            await store.close()
    assert [name for name, _, _ in spans] == [f"t{n}" for n in range(30)]


async def test_redis_lock_in_arrival_order_with_uneven_workers(prefix: str) -> None:
    # Three turns arrive at one worker, then one at another: the fourth still goes last.
    stores = [redis_locks(prefix), redis_locks(prefix)]
    order: list[int] = []
    try:
        for store in stores:
            async with store.lock("warm-up"):
                pass

        async def turn(n: int, store: LockStore) -> None:
            async with store.lock("alice"):
                await asyncio.sleep(0.02)
                order.append(n)

        tasks = []
        for n, store in enumerate([stores[0], stores[0], stores[0], stores[1]]):
            tasks.append(asyncio.create_task(turn(n, store)))
            await asyncio.sleep(0.005)
        await asyncio.gather(*tasks)
    finally:
        for store in stores:
            await store.close()
    assert order == [0, 1, 2, 3]


async def test_redis_lock_other_conversations_do_not_wait(prefix: str) -> None:
    store = redis_locks(prefix)
    try:
        async with store.lock("alice"):
            # Granted while alice's lock is held; a lock shared by all conversations would never
            # be, and the timeout only bounds that deadlock.
            async with asyncio.timeout(30), store.lock("bob"):
                pass
    finally:
        await store.close()


async def test_redis_lock_leaves_no_keys_behind(prefix: str) -> None:
    store = redis_locks(prefix)
    await turns_in_order([store], turns=5)
    await store.close()
    client = await redis_ready()
    try:
        assert [key async for key in client.scan_iter(match=f"{prefix}:*")] == []
    finally:
        await client.aclose()


async def test_redis_lock_wait_timeout(prefix: str) -> None:
    holder, waiter = redis_locks(prefix), redis_locks(prefix, wait_timeout=0.3)
    try:
        async with holder.lock("alice"):
            with pytest.raises(LockTimeout):
                async with waiter.lock("alice"):
                    pass
        async with waiter.lock("alice"):  # the timed-out ticket does not block later turns
            pass
    finally:
        await holder.close()
        await waiter.close()


async def test_redis_lock_is_renewed_while_held(prefix: str) -> None:
    holder, waiter = redis_locks(prefix, lock_lifetime=0.5), redis_locks(prefix, lock_lifetime=0.5)
    released_at = 0.0
    try:
        async def hold() -> None:
            nonlocal released_at
            async with holder.lock("alice"):
                await asyncio.sleep(1.6)  # three lifetimes: only renewal keeps the lock
                released_at = time.monotonic()

        holding = asyncio.create_task(hold())
        await asyncio.sleep(0.1)
        async with waiter.lock("alice"):
            assert released_at > 0, "the waiter got the lock while its holder still worked"
        await holding
    finally:
        await holder.close()
        await waiter.close()


def worker_script() -> str:
    return textwrap.dedent(
        """
        import asyncio, json, os, sys, time
        import redis.asyncio as aioredis
        from voicecalm.project.schema import StoreConfig
        from voicecalm.tracker.locks import create_lock_store

        async def main():
            options, mode, counter = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
            locks = create_lock_store(StoreConfig(**options))
            client = aioredis.Redis(host=options["url"], port=options["port"], decode_responses=True)
            if mode == "die":
                async with locks.lock("alice"):
                    print("holding", flush=True)
                    os._exit(9)  # killed holding the lock: no release, no renewal
            for _ in range(20):
                async with locks.lock("alice"):
                    # Read, wait, write: lost updates unless the lock excludes the other process.
                    value = int(await client.get(counter) or 0)
                    await asyncio.sleep(0.005)
                    await client.set(counter, value + 1)
            await client.aclose()
            await locks.close()

        asyncio.run(main())
        """
    )


async def run_worker(options: dict, mode: str, counter: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", worker_script(), json.dumps(options), mode, counter, env=env, stdout=asyncio.subprocess.PIPE
    )


async def test_redis_lock_excludes_across_processes(prefix: str) -> None:
    options = redis_options(prefix)
    counter = f"{prefix}:counter"
    workers = [await run_worker(options, "count", counter) for _ in range(2)]
    assert [await asyncio.wait_for(worker.wait(), 50) for worker in workers] == [0, 0]
    client = await redis_ready()
    try:
        assert int(await client.get(counter)) == 40
    finally:
        await client.aclose()


async def test_redis_lock_of_a_dead_holder_expires(prefix: str) -> None:
    options = redis_options(prefix, lock_lifetime=1.5)
    dead = await run_worker(options, "die", "unused")
    assert dead.stdout is not None
    assert (await asyncio.wait_for(dead.stdout.readline(), 20)).strip() == b"holding"
    assert await asyncio.wait_for(dead.wait(), 20) == 9
    store = redis_locks(prefix, lock_lifetime=1.5)
    started = time.monotonic()
    try:
        async with store.lock("alice"):
            waited = time.monotonic() - started
    finally:
        await store.close()
    # The dead holder's ticket blocks until it expires, and no longer.
    assert 0.3 < waited < 3.0


def test_lock_store_config() -> None:
    assert isinstance(create_lock_store(None), InMemoryLockStore)
    assert isinstance(create_lock_store(StoreConfig(type="in_memory")), InMemoryLockStore)
    store = create_lock_store(
        StoreConfig(type="redis", url="cache.internal", port=6380, db=1, password="hunter2", key_prefix="bot", lock_lifetime=5)
    )
    assert isinstance(store, RedisLockStore)
    assert store.lifetime_ms == 5000
    assert store.client.connection_pool.connection_kwargs["host"] == "cache.internal"
    with pytest.raises(ValueError, match="zookeeper") as caught:
        create_lock_store(StoreConfig(type="zookeeper", password="hunter2"))
    assert "hunter2" not in str(caught.value)
