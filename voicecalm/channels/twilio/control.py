"""Hang-up and transfer on a Twilio call (telephony.md §1.6): through Twilio's REST API when the
account is configured, else by closing the stream and answering `after_stream` with the TwiML."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import aiohttp
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from voicecalm.channels.twilio import twiml
from voicecalm.channels.twilio.media import MarkLedger
from voicecalm.channels.twilio.twiml import HandoffTarget

logger = logging.getLogger(__name__)

CALL_NOT_FOUND = 20404  # Twilio's code for a call that is already over
REST_TIMEOUT_SECS = 10.0
LAST_MARK_TIMEOUT_SECS = 5.0  # audio still at Twilio is at most the playout lead plus the network


class TwilioRest:
    """The two REST calls voicecalm makes: end a call, give it new TwiML. `api_base_url` replaces
    https://api.twilio.com (a fake Twilio in tests and benchmarks)."""

    def __init__(self, account_sid: str, auth_token: str, *, api_base_url: str | None = None) -> None:
        # pool_connections=False: a session per request, opened and closed inside the event loop.
        http_client = AsyncTwilioHttpClient(pool_connections=False, timeout=REST_TIMEOUT_SECS)
        self._client = Client(account_sid, auth_token, http_client=http_client)
        if api_base_url:
            self._client.api.base_url = api_base_url.rstrip("/")

    async def end_call(self, call_sid: str) -> bool:
        """`Status=completed`; a call that is already over counts as ended."""
        try:
            await self._client.calls(call_sid).update_async(status="completed")
        except TwilioRestException as error:
            if error.status == 404 and error.code == CALL_NOT_FOUND:
                return True
            logger.error("Twilio refused to end call %s: HTTP %s, code %s", call_sid, error.status, error.code)
            return False
        except (aiohttp.ClientError, TimeoutError) as error:
            logger.error("could not reach Twilio to end call %s: %s", call_sid, type(error).__name__)
            return False
        return True

    async def redirect(self, call_sid: str, document: str) -> bool:
        """Replace the call's TwiML (Twilio leaves the media stream for it)."""
        try:
            await self._client.calls(call_sid).update_async(twiml=document)
        except TwilioRestException as error:
            logger.error("Twilio refused to redirect call %s: HTTP %s, code %s", call_sid, error.status, error.code)
            return False
        except (aiohttp.ClientError, TimeoutError) as error:
            logger.error("could not reach Twilio to redirect call %s: %s", call_sid, type(error).__name__)
            return False
        return True


class PendingHandoffs:
    """`<Dial>` documents waiting for `after_stream`, for transfers made without REST credentials.
    Kept in this process: without REST credentials, run one worker."""

    def __init__(self) -> None:
        self._documents: dict[str, str] = {}

    def remember(self, call_sid: str, document: str) -> None:
        self._documents[call_sid] = document

    def take(self, call_sid: str) -> str | None:
        return self._documents.pop(call_sid, None)


class TwilioCallControl:
    """The `CallControl` of one Twilio call. The pipeline calls it once the bot's messages have
    played; it still waits for the last mark, so nothing audible is cut."""

    def __init__(
        self,
        call_sid: str,
        *,
        marks: MarkLedger,
        close_stream: Callable[[], Awaitable[None]],
        handoff: HandoffTarget | None,
        handoff_result_url: str,
        rest: TwilioRest | None,
        pending: PendingHandoffs,
    ) -> None:
        self._call_sid = call_sid
        self._marks = marks
        self._close_stream = close_stream
        self._handoff = handoff
        self._handoff_result_url = handoff_result_url
        self._rest = rest
        self._pending = pending

    @property
    def transfer_available(self) -> bool:
        return twiml.target_configured(self._handoff)

    async def hang_up(self) -> None:
        await self._last_mark()
        if self._rest is not None and await self._rest.end_call(self._call_sid):
            return
        # Without REST (or when it failed), closing the stream makes Twilio ask `after_stream`,
        # which answers <Hangup/>.
        await self._close_stream()

    async def transfer(self) -> bool:
        if self._handoff is None or not self.transfer_available:
            return False
        document = twiml.dial(self._handoff, action_url=self._handoff_result_url)
        await self._last_mark()
        if self._rest is not None:
            return await self._rest.redirect(self._call_sid, document)
        self._pending.remember(self._call_sid, document)
        await self._close_stream()
        return True

    async def _last_mark(self) -> None:
        if not await self._marks.wait_all_echoed(LAST_MARK_TIMEOUT_SECS):
            logger.warning("call %s: %d mark(s) not echoed; going on", self._call_sid, len(self._marks.pending))
