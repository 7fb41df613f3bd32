"""`voicecalm shell`: chat with an assistant in the terminal, in-process or through a server's REST channel."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import httpx
from prompt_toolkit import PromptSession
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from rich.console import Console
from rich.text import Text

from voicecalm.assistant import SESSION_START_PAYLOAD, Assistant, UserTurn
from voicecalm.dialogue.commands import Command, command_from_json
from voicecalm.nlg import BotMessage

CHANNEL = "cmdline"
PROMPT = "Your input -> "
STOP = "/stop"
HISTORY_FILE = Path(".voicecalm") / "shell_history"
HIDDEN_SLOTS = {"flow_hashes"}  # engine bookkeeping that changes whenever a flow starts

Message = Mapping[str, Any]  # a bot message shaped as the REST channel sends it
ShowMessage = Callable[[Message], None]
ReadLine = Callable[[], Awaitable[str]]


class ShellError(Exception):
    """The assistant could not be reached."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What `--debug` shows: the latest turn's commands and the state after it."""

    commands: list[str]
    stack: list[Mapping[str, Any]]
    slots: dict[str, Any]


class Engine(Protocol):
    async def start(self, show: ShowMessage) -> None: ...
    async def send(self, text: str, show: ShowMessage) -> None: ...
    async def snapshot(self) -> Snapshot | None: ...  # None: not available
    async def close(self) -> None: ...


class LocalEngine:
    def __init__(self, assistant: Assistant, sender_id: str) -> None:
        self.assistant = assistant
        self.sender_id = sender_id
        self.last_commands: list[Command] = []

    async def start(self, show: ShowMessage) -> None:
        await self.assistant.warm_up()
        result = await self.assistant.start_session(self.sender_id, input_channel=CHANNEL)
        for message in result.messages:
            show(rest_message(message))

    async def send(self, text: str, show: ShowMessage) -> None:
        turn = UserTurn(text=text, input_channel=CHANNEL)
        result = await self.assistant.handle(self.sender_id, turn, lambda message: show(rest_message(message)))
        self.last_commands = result.commands

    async def snapshot(self) -> Snapshot:
        conversation = await self.assistant.conversation(self.sender_id)
        commands = [command_line(command) for command in self.last_commands]
        return Snapshot(commands, list(conversation.stack), dict(conversation.slots))

    async def close(self) -> None:
        await self.assistant.close()


class RemoteEngine:
    def __init__(self, url: str, sender_id: str) -> None:
        self.url = url.rstrip("/")
        self.sender_id = sender_id
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None))

    async def start(self, show: ShowMessage) -> None:
        await self.send(SESSION_START_PAYLOAD, show)

    async def send(self, text: str, show: ShowMessage) -> None:
        body = {"sender": self.sender_id, "message": text, "input_channel": CHANNEL}
        try:
            async with self.client.stream(
                "POST", f"{self.url}/webhooks/rest/webhook", params={"stream": "true"}, json=body
            ) as response:
                response.raise_for_status()
                async for line in response.aiter_lines():
                    if line.strip():
                        show(json.loads(line))
        except httpx.HTTPError as error:
            raise ShellError(f"{self.url}: {error}") from error

    async def snapshot(self) -> Snapshot | None:
        try:
            response = await self.client.get(f"{self.url}/conversations/{quote(self.sender_id, safe='')}/tracker")
        except httpx.HTTPError as error:
            raise ShellError(f"{self.url}: {error}") from error
        if response.status_code != 200:
            return None
        tracker = response.json()
        latest = tracker.get("latest_message") or {}
        commands = [remote_command_line(command) for command in latest.get("commands") or []]
        return Snapshot(commands, tracker.get("stack") or [], tracker.get("slots") or {})

    async def close(self) -> None:
        await self.client.aclose()


def rest_message(message: BotMessage) -> dict[str, Any]:
    parts = {"text": message.text, **message.data()}
    return {key: value for key, value in parts.items() if value is not None}


def command_line(command: Command) -> str:
    return command.to_dsl() or json.dumps(command.to_json(), ensure_ascii=False, default=str)


def remote_command_line(data: Mapping[str, Any]) -> str:
    try:
        return command_line(command_from_json(data))
    except ValueError:
        return json.dumps(data, ensure_ascii=False, default=str)


class Transcript:
    """Prints bot messages and numbers their buttons so a typed number picks one."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.buttons: list[Mapping[str, Any]] = []

    def show(self, message: Message) -> None:
        if text := message.get("text"):
            self.console.print(Text(text, style="bold cyan"), soft_wrap=True)
        for button in message.get("buttons") or ():
            self.buttons.append(button)
            number = Text(f"  {len(self.buttons)}. ", style="bold")
            payload = Text(f"  {button.get('payload', '')}", style="dim")
            self.console.print(number + Text(str(button.get("title", ""))) + payload, soft_wrap=True)
        rest = {key: value for key, value in message.items() if key not in ("text", "buttons", "recipient_id")}
        if rest:
            self.console.print(Text(json.dumps(rest, ensure_ascii=False, default=str), style="magenta"), soft_wrap=True)

    def user_input(self, line: str) -> str:
        """The text to send for a typed line: a button's payload for its number; forgets the buttons."""
        buttons, self.buttons = self.buttons, []
        if line.isdigit() and 1 <= int(line) <= len(buttons):
            return str(buttons[int(line) - 1].get("payload", line))
        return line

    def debug(self, before: Snapshot | None, after: Snapshot | None) -> None:
        if after is None:
            self.console.print("debug info is unavailable remotely (no tracker endpoint)", style="yellow")
            return
        old_slots = before.slots if before else {}
        changed = [
            f"{name} = {json.dumps(value, ensure_ascii=False, default=str)}"
            for name, value in after.slots.items()
            if name not in HIDDEN_SLOTS and (name not in old_slots or old_slots[name] != value)
        ]
        stack = [
            f"{frame.get('flow_id') or frame.get('type')}  {frame.get('step_id', '')}".rstrip()
            for frame in after.stack
        ]
        lines = [*_section("commands", after.commands), *_section("stack", stack), *_section("slots changed", changed)]
        self.console.print(Text("\n".join(lines), style="dim"), soft_wrap=True)


def _section(title: str, lines: list[str]) -> list[str]:
    return [f"{title}:", *(f"  {line}" for line in lines or ["none"])]


def line_reader(history_file: Path) -> ReadLine:
    """prompt_toolkit with history on a terminal; plain `input()` without one (pipes, CI, no console)."""
    if sys.stdin.isatty() and sys.stdout.isatty():
        try:
            session: PromptSession[str] = PromptSession(history=_history(history_file))
        except Exception:  # its start-up errors are platform-specific (NoConsoleScreenBufferError on Windows)
            pass
        else:
            return lambda: session.prompt_async(PROMPT)

    async def read() -> str:
        try:
            return input(PROMPT)  # blocking is fine: nothing else runs while the shell waits for a line
        except EOFError:
            print()  # end the prompt's line, as a terminal does on Ctrl-D
            raise

    return read


def _history(path: Path) -> History:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return InMemoryHistory()
    return FileHistory(str(path))


async def chat(engine: Engine, console: Console, read_line: ReadLine, debug: bool = False) -> None:
    """Run the conversation until `/stop`, Ctrl-D or Ctrl-C."""
    transcript = Transcript(console)
    await engine.start(transcript.show)
    before = await engine.snapshot() if debug else None
    while True:
        try:
            line = (await read_line()).strip()
        except (EOFError, KeyboardInterrupt):
            break
        if line == STOP:
            break
        if not line:
            continue
        try:
            await engine.send(transcript.user_input(line), transcript.show)
            if debug:
                after = await engine.snapshot()
                transcript.debug(before, after)
                before = after
        except ShellError as error:
            console.print(str(error), style="red", markup=False)


async def _main(
    project: Path, assistant: Assistant | None, url: str | None, sender_id: str, debug: bool, console: Console
) -> None:
    engine: Engine = LocalEngine(assistant, sender_id) if assistant is not None else RemoteEngine(url or "", sender_id)
    try:
        banner = f"Conversation {sender_id} with {url or project}. /stop or Ctrl-D ends it."
        console.print(banner, style="dim", soft_wrap=True, markup=False)
        await chat(engine, console, line_reader(project / HISTORY_FILE), debug)
    finally:
        await engine.close()


def run_shell(
    project: Path,
    *,
    assistant: Assistant | None,
    url: str | None,
    conversation_id: str | None,
    debug: bool,
    console: Console,
) -> None:
    """Chat in the terminal with `assistant` in-process, or with the server at `url`; raises
    `ShellError` when a remote assistant cannot be reached at start."""
    asyncio.run(_main(project, assistant, url, conversation_id or uuid.uuid4().hex, debug, console))
