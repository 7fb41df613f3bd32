"""The real local Redis and PostgreSQL the store tests use (never mocked, never skipped).

Each test gets its own Redis key prefix or PostgreSQL schema and removes it afterwards, so tests
runs can share the services. A service that is down fails the test with a message saying so.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

REDIS = {"url": os.environ.get("VOICECALM_TEST_REDIS_HOST", "127.0.0.1"), "port": int(os.environ.get("VOICECALM_TEST_REDIS_PORT", "6379"))}
POSTGRES = {
    "url": os.environ.get("VOICECALM_TEST_PG_HOST", "127.0.0.1"),
    "port": int(os.environ.get("VOICECALM_TEST_PG_PORT", "5432")),
    "db": os.environ.get("VOICECALM_TEST_PG_DB", "test"),
    "username": os.environ.get("VOICECALM_TEST_PG_USER", "postgres"),
}


def unique_name(kind: str) -> str:
    return f"vctest_{kind}_{uuid.uuid4().hex[:12]}"


async def redis_ready() -> aioredis.Redis:
    client = aioredis.Redis(host=REDIS["url"], port=REDIS["port"], decode_responses=True)
    try:
        await asyncio.wait_for(client.ping(), 5)
    except Exception as error:
        await client.aclose()
        pytest.fail(
            f"Redis is not reachable at {REDIS['url']}:{REDIS['port']} ({error!r}); these tests need the real "
            "service: start it with `redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save ''`",
            pytrace=False,
        )
    return client


async def drop_redis_prefix(prefix: str) -> None:
    client = await redis_ready()
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def redis_options(prefix: str, **extra: Any) -> dict[str, Any]:
    return {"type": "redis", **REDIS, "key_prefix": prefix, **extra}


async def postgres_ready() -> asyncpg.Connection:
    try:
        return await asyncpg.connect(
            host=POSTGRES["url"], port=POSTGRES["port"], database=POSTGRES["db"], user=POSTGRES["username"], timeout=5
        )
    except Exception as error:
        pytest.fail(
            f"PostgreSQL is not reachable at {POSTGRES['url']}:{POSTGRES['port']}/{POSTGRES['db']} as "
            f"{POSTGRES['username']} ({error!r}); these tests need the real service: start it with "
            "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`",
            pytrace=False,
        )


async def drop_postgres_schema(schema: str) -> None:
    conn = await postgres_ready()
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def postgres_options(schema: str, **extra: Any) -> dict[str, Any]:
    return {"type": "SQL", "dialect": "postgresql", **POSTGRES, "schema": schema, **extra}
