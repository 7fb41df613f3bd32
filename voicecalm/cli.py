"""The `voicecalm` command."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.console import Console

from voicecalm import __version__
from voicecalm.project import Project, ProjectError, Severity, load_project

if TYPE_CHECKING:
    from voicecalm.assistant import Assistant
    from voicecalm.server import VoiceChannels
from voicecalm.testing.cli import test_app
from voicecalm.models.cli import models_app

app = typer.Typer(help="voicecalm: voice and text assistants from CALM flows, fully offline.", no_args_is_help=True)
app.add_typer(test_app, name="test")
app.add_typer(models_app, name="models")
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

ProjectArgument = Annotated[Path, typer.Argument(help="Project folder (config.yml, domain, flows).")]
DataOption = Annotated[
    Optional[list[Path]],
    typer.Option("--data", "-d", help="Flow files or folders, relative to the project; overrides config.yml."),
]


def _load(project: Path, data: list[Path] | None) -> Project:
    try:
        loaded = load_project(project, data)
    except ProjectError as error:
        for problem in error.problems:
            style = "red" if problem.severity is Severity.ERROR else "yellow"
            err.print(str(problem), style=style, markup=False)
        err.print(f"{len(error.errors)} error(s) in {project}", style="bold red")
        raise typer.Exit(1) from None
    for warning in loaded.warnings:
        err.print(str(warning), style="yellow", markup=False)
    return loaded


def _assistant(project: Path) -> Assistant:
    """The project's assistant, or a clear message and exit code 1."""
    from voicecalm.assistant import Assistant

    loaded = _load(project, None)
    try:
        return Assistant.from_project(loaded)
    except (ValueError, ImportError) as error:  # endpoints.yml names a store or actions it cannot have
        err.print(f"cannot start {project}: {error}", style="red", markup=False)
        raise typer.Exit(1) from None


@app.command()
def validate(project: ProjectArgument = Path("."), data: DataOption = None) -> None:
    """Check a project and report every problem as file:line:col: message."""
    loaded = _load(project, data)
    out.print(
        f"{project}: valid ({len(loaded.user_flows)} user flows, {len(loaded.flows) - len(loaded.user_flows)} patterns, "
        f"{len(loaded.domain.slots)} slots, {len(loaded.domain.responses)} responses)"
    )


@app.command()
def run(
    project: ProjectArgument = Path("."),
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 5005,
    log_level: Annotated[str, typer.Option(help="critical, error, warning, info, debug or trace.")] = "info",
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes; more than 1 needs a shared tracker store (SQL, redis).")
    ] = 1,
    log_format: Annotated[
        str, typer.Option(envvar="VOICECALM_LOG_FORMAT", help="text, or json: one JSON object per line.")
    ] = "text",
) -> None:
    """Serve the assistant (REST channel, tracker API, /metrics, and the voice channels credentials.yml enables:
    twilio_media_streams, browser_audio, sip) until Ctrl-C or SIGTERM."""
    # Imported here so that the other commands start without loading the web stack.
    import uvicorn
    from uvicorn.config import LOG_LEVELS

    from voicecalm import logs
    from voicecalm.server import create_app

    level = LOG_LEVELS.get(log_level.lower())
    if level is None:
        err.print(f"unknown log level {log_level!r} (one of: {', '.join(LOG_LEVELS)})", style="red")
        raise typer.Exit(2)
    log_format = log_format.lower()
    if log_format not in logs.FORMATS:
        err.print(f"unknown log format {log_format!r} (one of: {', '.join(logs.FORMATS)})", style="red")
        raise typer.Exit(2)
    logs.configure(level, log_format)
    assistant = _assistant(project)
    channels = _voice_channels(project, assistant)
    if workers > 1:
        _check_voice_workers(channels)
        _run_workers(assistant, project, host, port, log_level.lower(), workers, log_format)
        return
    server_app = create_app(assistant, voice=channels)
    config = uvicorn.Config(
        server_app,
        host=host,
        port=port,
        log_level=level,
        log_config=_uvicorn_log_config(log_format),
        timeout_graceful_shutdown=30,
        lifespan="on",
    )
    name = assistant.project.config.assistant_id or project.resolve().name
    out.print(f"Serving {name} at http://{host}:{port} (REST: POST /webhooks/rest/webhook)")
    _print_voice_channels(channels, host, port)
    uvicorn.Server(config).run()
    if server_app.state.start_failed:  # uvicorn logged why; the exit code must say so too
        raise typer.Exit(3)


def _voice_channels(project: Path, assistant: Assistant) -> VoiceChannels:
    """The voice channels credentials.yml enables, or one clear line and exit code 1."""
    from voicecalm.server import VoiceChannels
    from voicecalm.voice.settings import VoiceSettingsError

    try:
        return VoiceChannels.of(assistant.project)
    except VoiceSettingsError as error:
        err.print(f"cannot start {project}: {'; '.join(str(error).splitlines())}", style="red", markup=False, soft_wrap=True)
        raise typer.Exit(1) from None


def _check_voice_workers(channels: VoiceChannels) -> None:
    if channels.sip is not None:
        # One SIP socket, and baresip's state is process-wide: the user agent cannot be shared.
        err.print(
            "`sip` in credentials.yml needs a single worker: the SIP user agent binds one socket in one process. "
            "Run with --workers 1.",
            style="red",
        )
        raise typer.Exit(2)
    if channels.twilio is not None and channels.twilio.account_sid is None:
        err.print(
            "warning: without `account_sid` in twilio_media_streams, a transfer waits in the worker that ran the call "
            "for Twilio's after_stream request, which may reach another worker: that call then hangs up instead.",
            style="yellow",
        )


def _print_voice_channels(channels: VoiceChannels, host: str, port: int) -> None:
    if channels.twilio is not None:
        out.print(
            f"Twilio Media Streams: https://{channels.twilio.server_url}/webhooks/twilio_media_streams/webhook "
            "(`voicecalm twilio setup` configures the number)",
            soft_wrap=True,
            markup=False,
        )
    if channels.browser is not None:
        out.print(f"Browser demo page: http://{host}:{port}/")
    if channels.sip is not None:
        out.print(f"SIP trunk: {channels.sip.user}@{channels.sip.domain}, listening on {channels.sip.listen}")


twilio_app = typer.Typer(help="Twilio Media Streams: point a phone number at this server.", no_args_is_help=True)
app.add_typer(twilio_app, name="twilio")


@twilio_app.command("setup")
def twilio_setup(
    project: ProjectArgument = Path("."),
    apply: Annotated[
        bool, typer.Option("--apply", help="Set the webhooks through Twilio's REST API (account_sid, auth_token from credentials.yml).")
    ] = False,
    number: Annotated[Optional[str], typer.Option(help="The Twilio phone number, E.164 (+15550009999).")] = None,
    api_base_url: Annotated[
        Optional[str], typer.Option(help="Twilio's REST API base URL; default https://api.twilio.com (a fake Twilio in tests).")
    ] = None,
) -> None:
    """Print the webhooks a Twilio number needs to send its calls here; --apply --number sets them."""
    from voicecalm.channels.twilio.numbers import E164, NumberSetupError, apply_number_webhooks, number_webhooks
    from voicecalm.voice.settings import TwilioMediaStreamsSettings, VoiceSettingsError, channel_settings

    loaded = _load(project, None)
    try:
        settings = channel_settings(loaded, "twilio_media_streams")
    except VoiceSettingsError as error:
        err.print(
            f"cannot set up Twilio for {project}: {'; '.join(str(error).splitlines())}", style="red", markup=False, soft_wrap=True
        )
        raise typer.Exit(1) from None
    if not isinstance(settings, TwilioMediaStreamsSettings):
        err.print(f"{project}: credentials.yml has no twilio_media_streams section", style="red", markup=False)
        raise typer.Exit(1)
    if number is not None and not E164.match(number):
        err.print(f"--number {number!r} is not an E.164 number like +15550009999", style="red", markup=False)
        raise typer.Exit(2)
    webhooks = number_webhooks(settings)
    if not apply:
        where = f"number {number}" if number else "number"
        out.print(f"In Twilio's Console (Phone Numbers → Active numbers → your {where} → Voice configuration):", soft_wrap=True)
        out.print(f"  A call comes in:      Webhook {webhooks.voice_url}  HTTP POST", soft_wrap=True, markup=False)
        out.print(f"  Call status changes:  {webhooks.status_callback}  HTTP POST", soft_wrap=True, markup=False)
        out.print(f"Or set them from here: voicecalm twilio setup {project} --apply --number +1...", soft_wrap=True, markup=False)
        return
    if number is None:
        err.print("--apply needs --number, the Twilio phone number to configure", style="red")
        raise typer.Exit(2)
    try:
        sid = apply_number_webhooks(settings, number, api_base_url=api_base_url)
    except NumberSetupError as error:
        err.print(f"cannot configure {number}: {error}", style="red", markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    out.print(
        f"{number} ({sid}): calls go to {webhooks.voice_url} (POST), status changes to {webhooks.status_callback} (POST)",
        soft_wrap=True,
        markup=False,
    )


def _uvicorn_log_config(log_format: str) -> dict[str, Any] | None:
    """uvicorn's own text handlers; none for JSON, so its loggers go through the root handler."""
    from uvicorn.config import LOGGING_CONFIG

    return None if log_format == "json" else LOGGING_CONFIG


def _run_workers(
    assistant: Assistant,
    project: Path,
    host: str,
    port: int,
    log_level: str,
    workers: int,
    log_format: str = "text",
) -> None:
    """`workers` processes on one socket, each with its own assistant built from the project."""
    import os
    import shutil
    import tempfile

    import uvicorn

    from voicecalm.logs import FORMAT_ENV
    from voicecalm.metrics import MULTIPROCESS_ENV
    from voicecalm.server import LOG_LEVEL_ENV, PROJECT_ENV
    from voicecalm.tracker.locks import InMemoryLockStore
    from voicecalm.tracker.stores import InMemoryTrackerStore

    if isinstance(assistant.store, InMemoryTrackerStore):
        err.print(
            "--workers needs a tracker store the workers share (sqlite, SQL or redis in endpoints.yml): "
            "with an in-memory store each worker would know only its own turns",
            style="red",
        )
        raise typer.Exit(2)
    if isinstance(assistant.lock_store, InMemoryLockStore):
        err.print(
            "warning: with the in-memory lock store, two turns of one conversation that reach two workers at once "
            "are not queued: one of them fails. Set `lock_store: {type: redis, ...}` in endpoints.yml.",
            style="yellow",
        )
    os.environ[PROJECT_ENV] = str(project.resolve())
    os.environ[LOG_LEVEL_ENV] = log_level
    os.environ[FORMAT_ENV] = log_format
    # Metrics of all workers in files of one folder, so that any worker's /metrics shows their sum.
    metrics_dir = None
    if not os.environ.get(MULTIPROCESS_ENV):
        metrics_dir = tempfile.mkdtemp(prefix="voicecalm-metrics-")
        os.environ[MULTIPROCESS_ENV] = metrics_dir
    name = assistant.project.config.assistant_id or project.resolve().name
    out.print(f"Serving {name} at http://{host}:{port} with {workers} workers (REST: POST /webhooks/rest/webhook)")
    try:
        uvicorn.run(
            "voicecalm.server:app_from_environment",
            factory=True,
            workers=workers,
            host=host,
            port=port,
            log_level=log_level,
            log_config=_uvicorn_log_config(log_format),
            timeout_graceful_shutdown=30,
            lifespan="on",
        )
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


@app.command()
def shell(
    project: ProjectArgument = Path("."),
    conversation_id: Annotated[Optional[str], typer.Option(help="Sender id; default: a new conversation.")] = None,
    url: Annotated[Optional[str], typer.Option(help="Talk to a running server's REST channel instead.")] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Print commands, stack, changed slots per turn.")] = False,
) -> None:
    """Chat with the assistant in the terminal: buttons are numbered, /stop or Ctrl-D ends."""
    from voicecalm.channels.shell import ShellError, run_shell  # keeps the other commands' start-up fast

    assistant = _assistant(project) if url is None else None
    try:
        run_shell(project, assistant=assistant, url=url, conversation_id=conversation_id, debug=debug, console=out)
    except ShellError as error:
        err.print(str(error), style="red", markup=False)
        raise typer.Exit(1) from None


@app.command()
def voice(
    project: ProjectArgument = Path("."),
    input_wav: Annotated[
        Optional[Path], typer.Option(help="A recorded caller (several turns separated by silence) instead of the microphone.")
    ] = None,
    output_wav: Annotated[
        Optional[Path], typer.Option(help="With --input-wav: where the bot's side goes; default <input name>-bot.wav here.")
    ] = None,
    timeline: Annotated[
        Optional[Path], typer.Option(help="With --input-wav: the JSON timeline of turns and latencies; default beside --output-wav.")
    ] = None,
    input_device: Annotated[
        Optional[str], typer.Option(help="Microphone: a number from --list-devices or (part of) a name.")
    ] = None,
    output_device: Annotated[
        Optional[str], typer.Option(help="Speaker: a number from --list-devices or (part of) a name.")
    ] = None,
    list_devices: Annotated[bool, typer.Option("--list-devices", help="List the audio devices and exit.")] = False,
    half_duplex: Annotated[
        bool, typer.Option("--half-duplex", help="Stop listening while the bot speaks (speakers without echo cancellation).")
    ] = False,
) -> None:
    """Talk to the assistant through the microphone and speakers (Ctrl-C hangs up), or run a recorded caller from a WAV file."""
    import asyncio

    if input_wav is None and (output_wav or timeline):
        err.print("--output-wav and --timeline go with --input-wav", style="red")
        raise typer.Exit(2)
    _quiet_pipecat()  # before pipecat is imported: it logs on import
    from voicecalm.channels.microphone import EXIT_CODE, AudioDeviceError, print_devices, select_devices

    try:
        if list_devices:
            print_devices(out)
            return
        if input_wav is None:
            select_devices(input_device, output_device)  # a missing device fails before any model loads
        assistant = _assistant(project)
        settings = _voice_settings(assistant.project)
        if input_wav is None:
            asyncio.run(_talk(assistant, settings, input_device, output_device, half_duplex))
            return
        output_wav = output_wav or Path(f"{input_wav.stem}-bot.wav")
        timeline = timeline or output_wav.with_suffix(".json")
        result = asyncio.run(_play_recording(assistant, settings, input_wav, output_wav, timeline))
    except AudioDeviceError as error:
        err.print(str(error), style="red", markup=False)
        raise typer.Exit(EXIT_CODE) from None
    from voicecalm.voice.wav_call import summary_table

    out.print(summary_table(result))
    out.print(f"bot audio: {output_wav}, timeline: {timeline} ({result.duration_s:.1f} s call)")


def _quiet_pipecat() -> None:
    """pipecat logs every frame-level step at DEBUG through loguru; a terminal session wants errors only."""
    import sys

    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="ERROR")


def _voice_settings(project: Project) -> Any:
    from voicecalm.voice.settings import LocalAudioSettings, VoiceSettingsError, channel_settings

    try:
        return channel_settings(project, "local_audio") or LocalAudioSettings()
    except VoiceSettingsError as error:
        err.print(f"credentials.yml: {error}", style="red", markup=False)
        raise typer.Exit(1) from None


async def _talk(
    assistant: Assistant, settings: Any, input_device: str | None, output_device: str | None, half_duplex: bool
) -> None:
    from voicecalm.channels.microphone import run_microphone
    from voicecalm.voice.runtime import VoiceRuntime

    runtime = VoiceRuntime(assistant)
    try:
        with out.status("loading the speech models…"):
            await runtime.warm_up(settings)
        await run_microphone(runtime, settings, input_device, output_device, half_duplex, console=out)
    finally:
        await runtime.close()
        await assistant.close()


async def _play_recording(assistant: Assistant, settings: Any, input_wav: Path, output_wav: Path, timeline: Path) -> Any:
    from voicecalm.voice.runtime import VoiceRuntime
    from voicecalm.voice.wav_call import run_wav_call

    runtime = VoiceRuntime(assistant)
    try:
        with out.status("loading the speech models…"):
            await runtime.warm_up(settings)
        return await run_wav_call(runtime, settings, input_wav, output_wav, timeline)
    finally:
        await runtime.close()
        await assistant.close()


@app.command()
def train(project: ProjectArgument = Path(".")) -> None:
    """Build the document index of the project's docs/ (cached in .voicecalm/knowledge/)."""
    import asyncio

    from rich.progress import Progress as ProgressBar

    from voicecalm.knowledge import KnowledgeIndex
    from voicecalm.models.embedder import EmbeddingModelError

    if not (project / "docs").is_dir():
        out.print(f"{project}: no docs/ folder, nothing to index")
        return
    with ProgressBar(console=err, transient=True) as bar:
        task = bar.add_task("embedding documents", total=None)
        try:
            index = asyncio.run(
                KnowledgeIndex.load_or_build(project, progress=lambda done, total: bar.update(task, completed=done, total=total))
            )
        except EmbeddingModelError as error:
            err.print(f"cannot index {project / 'docs'}: {error}", style="red", markup=False)
            raise typer.Exit(1) from None
    state = "built" if index.rebuilt else "up to date"
    out.print(f"{project}: document index {state} ({len(index)} chunks from {len(index.sources)} documents)")


@app.command()
def version() -> None:
    """Print the voicecalm version."""
    out.print(__version__)
