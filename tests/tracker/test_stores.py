import asyncio
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.tracker.services import (
    drop_postgres_schema,
    drop_redis_prefix,
    postgres_options,
    postgres_ready,
    redis_options,
    redis_ready,
    unique_name,
)
from voicecalm.project.schema import StoreConfig
from voicecalm.tracker.conversation import Conversation, stack_update
from voicecalm.tracker.events import (
    ActionExecuted,
    BotUttered,
    Event,
    FlowStarted,
    SessionStarted,
    SlotSet,
    UserUttered,
)
from voicecalm.tracker.stores import (
    ConcurrentUpdateError,
    InMemoryTrackerStore,
    PostgresTrackerStore,
    RedisTrackerStore,
    SQLiteTrackerStore,
    TrackerStore,
    create_tracker_store,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
FRAME = {"frame_id": "F1", "flow_id": "transfer_money", "step_id": "ask_amount", "type": "regular"}


def sample_events() -> list[Event]:
    return [
        SessionStarted(),
        UserUttered(text="send money", parse_data={"commands": [{"command": "start flow", "flow": "transfer_money"}]}),
        SlotSet(slot="recipient", value="Ann", filled_by="transfer_money"),
        stack_update([], [FRAME]),
        FlowStarted(flow_id="transfer_money", metadata={"frame_id": "F1"}),
        ActionExecuted(action_name="utter_ask_amount", policy="FlowPolicy", confidence=1.0),
        BotUttered(text="How much?", data={"buttons": []}, metadata={"utter_action": "utter_ask_amount"}),
    ]


def dicts(events: list[Event]) -> list[dict]:
    return [event.to_dict() for event in events]


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    await (await redis_ready()).aclose()
    prefix = unique_name("redis")
    yield prefix
    await drop_redis_prefix(prefix)


@pytest.fixture
async def pg_schema() -> AsyncIterator[str]:
    await (await postgres_ready()).close()
    schema = unique_name("pg")
    yield schema
    await drop_postgres_schema(schema)


def redis_store(prefix: str, **extra: object) -> TrackerStore:
    return create_tracker_store(StoreConfig(**redis_options(prefix, **extra)), Path("."))


def postgres_store(schema: str, **extra: object) -> TrackerStore:
    return create_tracker_store(StoreConfig(**postgres_options(schema, **extra)), Path("."))


@pytest.fixture(params=["memory", "sqlite", "redis", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TrackerStore]:
    cleanup = None
    if request.param == "memory":
        created: TrackerStore = InMemoryTrackerStore()
    elif request.param == "sqlite":
        created = SQLiteTrackerStore(tmp_path / "t.db")
    elif request.param == "redis":
        await (await redis_ready()).aclose()
        prefix = unique_name("redis")
        created, cleanup = redis_store(prefix), drop_redis_prefix(prefix)
    else:
        await (await postgres_ready()).close()
        schema = unique_name("pg")
        created, cleanup = postgres_store(schema), drop_postgres_schema(schema)
    yield created
    await created.close()
    if cleanup is not None:
        await cleanup


# --- every store -----------------------------------------------------------------------------


async def test_append_and_read_back(store: TrackerStore) -> None:
    events = sample_events()
    await store.append("alice", events[:3], expected_count=0)
    await store.append("alice", events[3:], expected_count=3)
    assert dicts(await store.events("alice")) == dicts(events)
    assert await store.sender_ids() == ["alice"]


async def test_start_offset(store: TrackerStore) -> None:
    events = sample_events()
    await store.append("alice", events, expected_count=0)
    assert dicts(await store.events("alice", start=4)) == dicts(events[4:])
    assert await store.events("alice", start=len(events)) == []


async def test_unknown_sender_is_empty(store: TrackerStore) -> None:
    assert await store.events("nobody") == []
    assert await store.sender_ids() == []
    await store.append("nobody", [], expected_count=0)
    assert await store.sender_ids() == []


async def test_stale_expected_count_raises_and_writes_nothing(store: TrackerStore) -> None:
    events = sample_events()
    await store.append("alice", events[:2], expected_count=0)
    for stale in (0, 1, 3):
        with pytest.raises(ConcurrentUpdateError) as caught:
            await store.append("alice", events[2:], expected_count=stale)
        assert caught.value.stored_count == 2
    assert dicts(await store.events("alice")) == dicts(events[:2])


async def test_racing_appends_to_one_conversation_one_wins(store: TrackerStore) -> None:
    results = await asyncio.gather(
        *(store.append("alice", [SlotSet(slot="winner", value=n)], expected_count=0) for n in range(10)),
        return_exceptions=True,
    )
    assert sum(result is None for result in results) == 1
    assert all(isinstance(r, ConcurrentUpdateError) for r in results if r is not None)
    assert len(await store.events("alice")) == 1


async def test_many_concurrent_conversations_keep_order(store: TrackerStore) -> None:
    async def converse(sender_id: str) -> None:
        for turn in range(20):
            await store.append(
                sender_id,
                [UserUttered(text=f"{sender_id} {turn}"), SlotSet(slot="turn", value=turn)],
                expected_count=2 * turn,
            )

    senders = [f"user-{n:02d}" for n in range(50)]
    await asyncio.gather(*(converse(sender_id) for sender_id in senders))
    assert await store.sender_ids() == senders
    for sender_id in senders:
        events = await store.events(sender_id)
        assert [e.text for e in events if isinstance(e, UserUttered)] == [f"{sender_id} {t}" for t in range(20)]
        assert [e.value for e in events if isinstance(e, SlotSet)] == list(range(20))


# --- SQLite: atomicity and persistence -------------------------------------------------------


class Unserialisable(SlotSet):
    def to_dict(self) -> dict:
        raise RuntimeError("boom")


async def test_sqlite_bad_event_stores_nothing_of_the_batch(tmp_path: Path) -> None:
    store = SQLiteTrackerStore(tmp_path / "t.db")
    await store.append("alice", [SessionStarted()], expected_count=0)
    with pytest.raises(RuntimeError, match="boom"):
        await store.append("alice", [SlotSet(slot="a", value=1), Unserialisable(slot="b")], expected_count=1)
    assert len(await store.events("alice")) == 1
    await store.close()


async def test_sqlite_failure_after_first_insert_rolls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = SQLiteTrackerStore(tmp_path / "t.db")
    await store.append("alice", [SessionStarted()], expected_count=0)

    async def crash_after_first_row(db, rows):  # type: ignore[no-untyped-def]
        await db.execute("INSERT INTO events (sender_id, idx, data) VALUES (?, ?, ?)", rows[0])
        raise RuntimeError("crash mid-append")

    monkeypatch.setattr(SQLiteTrackerStore, "_insert_rows", staticmethod(crash_after_first_row))
    with pytest.raises(RuntimeError, match="crash mid-append"):
        await store.append("alice", sample_events(), expected_count=1)
    monkeypatch.undo()

    assert len(await store.events("alice")) == 1
    # The store stays usable: the failed transaction was rolled back, not left open.
    await store.append("alice", [SlotSet(slot="a", value=1)], expected_count=1)
    assert len(await store.events("alice")) == 2
    await store.close()


def run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True, env=env, timeout=60
    )


async def test_sqlite_process_killed_mid_append_stores_nothing(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    result = run_python(
        """
        import asyncio, os, sys
        from voicecalm.tracker.events import SessionStarted, SlotSet
        from voicecalm.tracker.stores import SQLiteTrackerStore

        async def die_after_first_row(db, rows):
            await db.execute("INSERT INTO events (sender_id, idx, data) VALUES (?, ?, ?)", rows[0])
            os._exit(3)  # no rollback, no close: as if the process were killed

        async def main():
            store = SQLiteTrackerStore(sys.argv[1])
            await store.append("alice", [SessionStarted()], expected_count=0)
            SQLiteTrackerStore._insert_rows = staticmethod(die_after_first_row)
            await store.append("alice", [SlotSet(slot="a", value=1), SlotSet(slot="b", value=2)], expected_count=1)

        asyncio.run(main())
        """,
        str(db),
    )
    assert result.returncode == 3, result.stderr
    store = SQLiteTrackerStore(db)
    assert [e.name for e in await store.events("alice")] == ["session_started"]
    await store.append("alice", [SlotSet(slot="a", value=1)], expected_count=1)
    await store.close()


async def test_sqlite_subprocess_writes_this_process_reads(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    result = run_python(
        """
        import asyncio, sys
        from voicecalm.tracker.conversation import stack_update
        from voicecalm.tracker.events import SessionStarted, SlotSet, UserUttered
        from voicecalm.tracker.stores import SQLiteTrackerStore

        async def main():
            store = SQLiteTrackerStore(sys.argv[1])
            frame = {"frame_id": "F1", "flow_id": "transfer_money", "step_id": "ask_amount", "type": "regular"}
            await store.append("alice", [SessionStarted(), UserUttered(text="hi")], expected_count=0)
            await store.append("alice", [SlotSet(slot="recipient", value="Ann"), stack_update([], [frame])], expected_count=2)
            await store.close()

        asyncio.run(main())
        """,
        str(db),
    )
    assert result.returncode == 0, result.stderr
    store = SQLiteTrackerStore(db)
    conversation = Conversation.from_events("alice", {"recipient": None, "amount": None}, await store.events("alice"))
    await store.close()
    assert conversation.slots == {"recipient": "Ann", "amount": None}
    assert conversation.stack == [FRAME]
    assert conversation.latest_message is not None and conversation.latest_message.text == "hi"
    assert conversation.committed == 4


async def test_sqlite_this_process_writes_subprocess_reads(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    store = SQLiteTrackerStore(db)
    await store.append("alice", sample_events(), expected_count=0)
    await store.close()
    result = run_python(
        """
        import asyncio, json, sys
        from voicecalm.tracker.conversation import Conversation
        from voicecalm.tracker.stores import SQLiteTrackerStore

        async def main():
            store = SQLiteTrackerStore(sys.argv[1])
            events = await store.events("alice")
            await store.close()
            conversation = Conversation.from_events("alice", {"recipient": None}, events)
            print(json.dumps({"events": [e.to_dict() for e in events], "slots": conversation.slots, "stack": conversation.stack}))

        asyncio.run(main())
        """,
        str(db),
    )
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert output["events"] == dicts(sample_events_with_timestamps_of(output["events"]))
    assert output["slots"] == {"recipient": "Ann"}
    assert output["stack"] == [FRAME]


def sample_events_with_timestamps_of(stored: list[dict]) -> list[Event]:
    # sample_events() stamps new timestamps; compare everything else.
    from voicecalm.tracker.events import event_from_dict

    return [event_from_dict({**event.to_dict(), "timestamp": data["timestamp"]}) for event, data in zip(sample_events(), stored, strict=True)]


async def test_sqlite_worker_processes_racing_on_one_conversation(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    worker = textwrap.dedent(
        """
        import asyncio, sys
        from voicecalm.tracker.events import SlotSet
        from voicecalm.tracker.stores import ConcurrentUpdateError, SQLiteTrackerStore

        async def main():
            store = SQLiteTrackerStore(sys.argv[1])
            written = 0
            while written < 25:
                count = len(await store.events("shared"))
                try:
                    await store.append("shared", [SlotSet(slot=sys.argv[2], value=written)], expected_count=count)
                    written += 1
                except ConcurrentUpdateError:
                    pass
            await store.close()

        asyncio.run(main())
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    workers = [
        await asyncio.create_subprocess_exec(sys.executable, "-c", worker, str(db), f"w{n}", env=env) for n in range(4)
    ]
    assert [await process.wait() for process in workers] == [0, 0, 0, 0]
    store = SQLiteTrackerStore(db)
    events = await store.events("shared")
    await store.close()
    assert len(events) == 100
    for n in range(4):
        assert [e.value for e in events if isinstance(e, SlotSet) and e.slot == f"w{n}"] == list(range(25))


# --- configuration -----------------------------------------------------------------------------


async def test_default_is_sqlite_in_project_folder(tmp_path: Path) -> None:
    store = create_tracker_store(None, tmp_path)
    assert isinstance(store, SQLiteTrackerStore)
    assert store.path == tmp_path / ".voicecalm" / "trackers.db"
    await store.append("alice", [SessionStarted()], expected_count=0)
    await store.close()
    assert store.path.exists()


@pytest.mark.parametrize("kind", ["InMemoryTrackerStore", "memory", "in_memory"])
def test_memory_config(tmp_path: Path, kind: str) -> None:
    assert isinstance(create_tracker_store(StoreConfig(type=kind), tmp_path), InMemoryTrackerStore)


@pytest.mark.parametrize(
    "config",
    [
        StoreConfig(type="SQL", dialect="sqlite", db="data/convos.db"),
        StoreConfig(type="sqlite", db="data/convos.db"),
    ],
)
def test_sqlite_config_relative_to_project(tmp_path: Path, config: StoreConfig) -> None:
    store = create_tracker_store(config, tmp_path)
    assert isinstance(store, SQLiteTrackerStore)
    assert store.path == tmp_path / "data" / "convos.db"
    assert store.path.parent.is_dir()


def test_sqlite_config_absolute_path(tmp_path: Path) -> None:
    store = create_tracker_store(StoreConfig(type="sqlite", db=str(tmp_path / "abs.db")), tmp_path / "project")
    assert isinstance(store, SQLiteTrackerStore) and store.path == tmp_path / "abs.db"


def test_redis_config(tmp_path: Path) -> None:
    store = create_tracker_store(
        StoreConfig(type="redis", url="cache.internal", port=6380, db=2, password="hunter2", key_prefix="bot", record_exp=30, use_ssl=True),
        tmp_path,
    )
    assert isinstance(store, RedisTrackerStore)
    kwargs = store.client.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"], kwargs["password"]) == ("cache.internal", 6380, 2, "hunter2")
    assert store.record_exp == 30
    assert store.client.connection_pool.connection_class.__name__ == "SSLConnection"
    assert store._key("alice") == "bot:voicecalm:events:alice"
    assert "hunter2" not in repr(store)


def test_redis_config_accepts_a_url(tmp_path: Path) -> None:
    store = create_tracker_store(StoreConfig(type="RedisTrackerStore", url="redis://cache.internal:6390/3"), tmp_path)
    assert isinstance(store, RedisTrackerStore)
    kwargs = store.client.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("cache.internal", 6390, 3)


@pytest.mark.parametrize(
    "config",
    [
        StoreConfig(type="SQL", dialect="postgresql", url="db.internal", port=5433, db="rasa", username="bot", password="hunter2", query={"sslmode": "require", "application_name": "vc"}),
        StoreConfig(type="SQL", dialect="postgresql", url="postgresql://bot:hunter2@db.internal:5433/rasa", query={"sslmode": "require", "application_name": "vc"}),
    ],
)
def test_postgres_config(tmp_path: Path, config: StoreConfig) -> None:
    store = create_tracker_store(config, tmp_path)
    assert isinstance(store, PostgresTrackerStore)
    assert store._connect == {
        "host": "db.internal",
        "port": 5433,
        "database": "rasa",
        "user": "bot",
        "password": "hunter2",
        "ssl": "require",
        "server_settings": {"application_name": "vc"},
    }
    assert "hunter2" not in repr(store)


@pytest.mark.parametrize(
    ("config", "named"),
    [(StoreConfig(type="mongod", password="hunter2"), "mongod"), (StoreConfig(type="SQL", dialect="oracle"), "oracle")],
)
def test_unknown_store_type_is_named(tmp_path: Path, config: StoreConfig, named: str) -> None:
    with pytest.raises(ValueError, match=named) as caught:
        create_tracker_store(config, tmp_path)
    assert "hunter2" not in str(caught.value)


# --- Redis and PostgreSQL: atomicity, isolation, several processes -----------------------------


@pytest.fixture(params=["redis", "postgresql"])
async def shared(request: pytest.FixtureRequest) -> AsyncIterator[dict]:
    """The endpoints.yml section of a fresh, empty Redis or PostgreSQL store (removed afterwards)."""
    if request.param == "redis":
        await (await redis_ready()).aclose()
        prefix = unique_name("redis")
        yield redis_options(prefix)
        await drop_redis_prefix(prefix)
    else:
        await (await postgres_ready()).close()
        schema = unique_name("pg")
        yield postgres_options(schema)
        await drop_postgres_schema(schema)


def from_options(options: dict) -> TrackerStore:
    return create_tracker_store(StoreConfig(**options), Path("."))


async def test_shared_store_bad_event_stores_nothing_of_the_batch(shared: dict) -> None:
    store = from_options(shared)
    await store.append("alice", [SessionStarted()], expected_count=0)
    with pytest.raises(RuntimeError, match="boom"):
        await store.append("alice", [SlotSet(slot="a", value=1), Unserialisable(slot="b")], expected_count=1)
    assert len(await store.events("alice")) == 1
    await store.close()


async def test_shared_store_is_shared_between_clients_and_survives_reopening(shared: dict) -> None:
    first, second = from_options(shared), from_options(shared)
    await first.append("alice", sample_events()[:3], expected_count=0)
    with pytest.raises(ConcurrentUpdateError):
        await second.append("alice", [SlotSet(slot="a", value=1)], expected_count=0)
    await second.append("alice", sample_events()[3:], expected_count=3)
    await first.close()
    await second.close()
    reopened = from_options(shared)
    assert [e.name for e in await reopened.events("alice")] == [e.name for e in sample_events()]
    await reopened.close()


async def test_key_prefixes_and_schemas_keep_stores_apart(shared: dict) -> None:
    store = from_options(shared)
    await store.append("alice", [SessionStarted()], expected_count=0)
    if shared["type"] == "redis":
        other_options = {**shared, "key_prefix": shared["key_prefix"] + "_other"}
    else:
        other_options = {**shared, "schema": shared["schema"] + "_other"}
    other = from_options(other_options)
    try:
        assert await other.events("alice") == []
        assert await other.sender_ids() == []
    finally:
        await other.close()
        await store.close()
        if shared["type"] == "redis":
            await drop_redis_prefix(other_options["key_prefix"])
        else:
            await drop_postgres_schema(other_options["schema"])


async def test_redis_record_exp_expires_conversations(shared: dict) -> None:
    if shared["type"] != "redis":
        return
    store = from_options({**shared, "record_exp": 1})
    await store.append("alice", [SessionStarted()], expected_count=0)
    assert await store.sender_ids() == ["alice"]
    await asyncio.sleep(1.3)
    assert await store.events("alice") == []
    assert await store.sender_ids() == []
    await store.close()


async def test_postgres_failure_after_first_insert_rolls_back(shared: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    if shared["type"] != "SQL":
        return
    store = from_options(shared)
    await store.append("alice", [SessionStarted()], expected_count=0)
    original = PostgresTrackerStore._insert

    async def crash_after_insert(self, conn, sender_id, first, items):  # type: ignore[no-untyped-def]
        await original(self, conn, sender_id, first, items[:1])
        raise RuntimeError("crash mid-append")

    monkeypatch.setattr(PostgresTrackerStore, "_insert", crash_after_insert)
    with pytest.raises(RuntimeError, match="crash mid-append"):
        await store.append("alice", sample_events(), expected_count=1)
    monkeypatch.undo()
    assert len(await store.events("alice")) == 1
    await store.append("alice", [SlotSet(slot="a", value=1)], expected_count=1)
    assert len(await store.events("alice")) == 2
    await store.close()


async def test_postgres_login_db_creates_the_database(shared: dict) -> None:
    if shared["type"] != "SQL":
        return
    database = unique_name("db")
    store = from_options({**shared, "db": database, "login_db": shared["db"]})
    try:
        await store.append("alice", [SessionStarted()], expected_count=0)
        assert len(await store.events("alice")) == 1
    finally:
        await store.close()
        conn = await postgres_ready()
        await conn.execute(f'DROP DATABASE IF EXISTS "{database}"')
        await conn.close()


async def test_shared_store_process_killed_mid_append_stores_nothing(shared: dict) -> None:
    result = run_python(
        """
        import asyncio, json, os, sys
        from pathlib import Path
        from voicecalm.project.schema import StoreConfig
        from voicecalm.tracker.events import SessionStarted, SlotSet
        from voicecalm.tracker.stores import create_tracker_store, PostgresTrackerStore

        async def main():
            store = create_tracker_store(StoreConfig(**json.loads(sys.argv[1])), Path("."))
            await store.append("alice", [SessionStarted()], expected_count=0)
            if isinstance(store, PostgresTrackerStore):
                original = PostgresTrackerStore._insert
                async def die_after_insert(self, conn, sender_id, first, items):
                    await original(self, conn, sender_id, first, items[:1])
                    os._exit(3)  # no rollback, no close: as if the process were killed
                PostgresTrackerStore._insert = die_after_insert
            else:
                # Redis runs the whole batch as one script: dying while it is sent stores nothing.
                original = store._append
                async def die_while_sending(keys, args):
                    os._exit(3)
                store._append = die_while_sending
            await store.append("alice", [SlotSet(slot="a", value=1), SlotSet(slot="b", value=2)], expected_count=1)

        asyncio.run(main())
        """,
        json.dumps(shared),
    )
    assert result.returncode == 3, result.stderr
    store = from_options(shared)
    assert [e.name for e in await store.events("alice")] == ["session_started"]
    await store.append("alice", [SlotSet(slot="a", value=1)], expected_count=1)
    await store.close()


async def test_shared_store_worker_processes_racing_on_one_conversation(shared: dict) -> None:
    worker = textwrap.dedent(
        """
        import asyncio, json, sys
        from pathlib import Path
        from voicecalm.project.schema import StoreConfig
        from voicecalm.tracker.events import SlotSet
        from voicecalm.tracker.stores import ConcurrentUpdateError, create_tracker_store

        async def main():
            store = create_tracker_store(StoreConfig(**json.loads(sys.argv[1])), Path("."))
            written = 0
            while written < 25:
                count = len(await store.events("shared"))
                try:
                    await store.append("shared", [SlotSet(slot=sys.argv[2], value=written)], expected_count=count)
                    written += 1
                except ConcurrentUpdateError:
                    pass
            await store.close()

        asyncio.run(main())
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    workers = [
        await asyncio.create_subprocess_exec(sys.executable, "-c", worker, json.dumps(shared), f"w{n}", env=env)
        for n in range(4)
    ]
    assert [await process.wait() for process in workers] == [0, 0, 0, 0]
    store = from_options(shared)
    events = await store.events("shared")
    await store.close()
    assert len(events) == 100
    for n in range(4):
        assert [e.value for e in events if isinstance(e, SlotSet) and e.slot == f"w{n}"] == list(range(25))
