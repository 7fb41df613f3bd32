"""The embedded SIP user agent: takes the trunk's calls and hands each to the voice pipeline.

One baresip runtime per process (libre's state is process-global). The account is the trunk's
identity: its `user` must be the user part the trunk puts in the Request-URI (baresip answers
404 to any other), `reg_interval: 0` for a trunk that sends calls to our address, above 0 to
register with the trunk's registrar. Calls beyond `max_calls` are refused with 486 Busy Here by
baresip itself, before any call object exists; so are calls arriving while the server stops.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging

from voicecalm.channels.sip import baresip_api as bs
from voicecalm.channels.sip.transport import CHANNEL_NAME, SipCallControl, SipTransport
from voicecalm.voice.call import CallInfo
from voicecalm.voice.runtime import VoiceRuntime
from voicecalm.voice.settings import SipSettings

logger = logging.getLogger(__name__)

AUDIO_OUT_SAMPLE_RATE = 8000  # PCMU/PCMA
# A trunk's RTP flows even through silence: none for this long means the peer vanished without
# a BYE (crash, network partition), and baresip closes the call.
RTP_TIMEOUT_SECONDS = 30
TO_HEADER = "To"


class SipServer:
    """Started and stopped with the `voicecalm run` server's lifespan."""

    def __init__(self, settings: SipSettings, runtime: VoiceRuntime) -> None:
        self._settings = settings
        self._runtime = runtime
        self._stack: bs.Runtime | None = None
        self._agent: bs.UserAgent | None = None
        self._calls: set[asyncio.Task] = set()
        self._refusals: set[asyncio.Task] = set()  # held so the loop does not drop them half-done
        self._stopping = False

    @property
    def active_calls(self) -> int:
        return len(self._calls)

    @property
    def accepting_calls(self) -> bool:
        return self._stack is not None and not self._stopping

    async def start(self) -> None:
        settings = self._settings
        stack = bs.Runtime()
        await stack.start(
            bs.Config(
                net_interface=_interface_of(settings.listen_address[0]),
                max_concurrent_calls=settings.max_calls,
                rtp_timeout=RTP_TIMEOUT_SECONDS,
                expose_headers=(TO_HEADER,),
                extra_config_text=f"sip_listen {settings.listen}",
            )
        )
        self._stack = stack
        try:
            account = bs.Account(
                user=settings.user,
                domain=settings.domain,
                password=settings.password.get_secret_value(),
                registrar=settings.registrar,
                reg_interval=settings.reg_interval,
                auth_user=settings.auth_user,
                audio_codecs=("pcmu", "pcma"),
                dtmf_mode="rtpevent",
            )
            # A peer's REFER is reported, never obeyed: it could make the bot dial anywhere.
            self._agent = await bs.UserAgent.create(stack, account, transfer_policy="manual")
            self._agent.on_incoming(self._on_incoming)
            if settings.reg_interval > 0:
                await self._agent.register()
        except BaseException:
            await stack.close()
            self._stack = None
            raise
        logger.info("SIP trunk listening on %s as %s@%s (max %d calls)", settings.listen, settings.user, settings.domain, settings.max_calls)

    async def stop(self, *, drain_timeout: float = 0.0) -> None:
        """Refuse new calls, let live ones finish for up to `drain_timeout` seconds, then end the
        rest (BYE) and close the stack."""
        stack = self._stack
        if stack is None:
            return
        self._stopping = True
        if self._calls and drain_timeout > 0:
            await asyncio.wait(set(self._calls), timeout=drain_timeout)
        for task in set(self._calls):
            task.cancel()
        if self._calls:
            await asyncio.wait(set(self._calls))
        if self._agent is not None and self._settings.reg_interval > 0:
            try:
                await self._agent.unregister()
            except bs.BaresipError as exc:
                logger.warning("SIP unregister failed: %s", exc)
        await stack.close()
        self._stack = None
        self._agent = None

    def _on_incoming(self, call: bs.Call) -> None:
        if self._stopping:
            refusal = asyncio.get_running_loop().create_task(_refuse(call))
            self._refusals.add(refusal)
            refusal.add_done_callback(self._refusals.discard)
            return
        task = asyncio.get_running_loop().create_task(self._serve(call))
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)

    async def _serve(self, call: bs.Call) -> None:
        info = CallInfo(
            call_id=call.call_id or f"sip-{call.handle}",
            channel=CHANNEL_NAME,
            user_phone=_user_part(call.peer),
            bot_phone=_user_part(call.headers.get(TO_HEADER)) or self._settings.user,
        )
        logger.info("SIP call %s from %s to %s", info.call_id, info.user_phone, info.bot_phone)
        transport = SipTransport(call, info)
        handoff_uri = self._settings.handoff.uri if self._settings.handoff else None
        try:
            await call.answer()
            await self._runtime.run_call(
                transport,
                info,
                self._settings,
                control=SipCallControl(transport, handoff_uri),
                audio_out_sample_rate=AUDIO_OUT_SAMPLE_RATE,
            )
        except bs.BaresipError as exc:
            logger.warning("SIP call %s failed: %s", info.call_id, exc)
        except Exception:
            logger.exception("SIP call %s: the voice pipeline failed", info.call_id)
        finally:
            # The pipeline is over (or was cancelled by stop()): the caller must not stay on a
            # line nobody serves.
            await asyncio.shield(transport.hang_up())


async def _refuse(call: bs.Call) -> None:
    try:
        await call.reject()  # 486 Busy Here: the one refusal baresip-python 0.5 can send
    except bs.BaresipError:
        pass  # the caller gave up first


def _interface_of(host: str) -> str | None:
    """The address baresip binds and routes from; None (interface discovery) for a wildcard
    listen. Discovery skips loopback, so a loopback listen must be pinned."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host  # an interface name
    return None if address.is_unspecified else str(address)


def _user_part(uri: str | None) -> str | None:
    """`+15550001111` from `"Caller" <sip:+15550001111@host:5062;user=phone>`."""
    if not uri:
        return None
    value = uri.split("<", 1)[1].split(">", 1)[0] if "<" in uri else uri
    value = value.split(":", 1)[1] if value.startswith(("sip:", "sips:", "tel:")) else value
    return value.split("@", 1)[0].split(";", 1)[0] or None
