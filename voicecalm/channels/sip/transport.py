"""One answered SIP call as a pipecat transport, and the hang-up/transfer it offers the dialogue.

baresip decodes the caller's RTP (PCMU/PCMA, 8 kHz) into PCM that we read every 20 ms, resample
to the pipeline's 16 kHz and push as `InputAudioRawFrame`s; the bot's 8 kHz PCM is written back
in real time, a few frames ahead of the wire, so a barge-in flushes almost nothing that was not
heard. RFC 4733 and SIP INFO keys arrive as `InputDTMFFrame`s. A BYE from the caller fires
`on_client_disconnected`; a hang-up or transfer of our own does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from voicecalm.channels.sip import baresip_api as bs
from voicecalm.voice import pipecat_api as pc
from voicecalm.voice.call import CallInfo

logger = logging.getLogger(__name__)

CHANNEL_NAME = "sip"
FRAME_SECONDS = 0.02  # the RTP packet time baresip uses for PCMU/PCMA
# How much bot audio waits in baresip's transmit buffer: enough to ride out event-loop jitter
# without gaps on the wire, little enough that what a barge-in flushes was never heard.
PLAYOUT_LEAD_SECONDS = 0.06
# Caller audio taken per read: far more than one tick brings, so a late tick catches up.
READ_LIMIT_BYTES = 16000
# A reply can be ready before the answered call's media is (and baresip renegotiates it right
# after answering): bot audio waits this long for media before it is dropped.
MEDIA_WAIT_SECONDS = 5.0
TRANSFER_TIMEOUT_SECONDS = 60.0
HANG_UP_TIMEOUT_SECONDS = 5.0  # baresip reports the close as it sends the BYE; this bounds a lost report


class SipTransport(pc.BaseTransport):
    """The pipeline's view of one answered baresip call. Events: `on_client_connected` when the
    pipeline starts, `on_client_disconnected` when the caller (or the network) ended the call;
    both get the call's `CallInfo`."""

    def __init__(self, call: bs.Call, info: CallInfo) -> None:
        super().__init__()
        self._call = call
        self.info = info
        self.ended = asyncio.Event()
        self._hung_up_by_us = False
        self._transferred = False
        self._no_transfer_running = asyncio.Event()
        self._no_transfer_running.set()
        params = pc.TransportParams(
            audio_in_enabled=True,
            audio_out_enabled=True,
            audio_out_10ms_chunks=int(FRAME_SECONDS * 100),
            # baresip transmits silence by itself whenever nothing is queued.
            audio_out_end_silence_secs=0,
        )
        self._input = SipInputTransport(self, params)
        self._output = SipOutputTransport(self, params)
        call.on(self._on_call_event)
        call.on_dtmf(self._on_digit)
        self._register_event_handler("on_client_connected")
        self._register_event_handler("on_client_disconnected")

    def input(self) -> SipInputTransport:
        return self._input

    def output(self) -> SipOutputTransport:
        return self._output

    @property
    def audio(self) -> bs.CallAudio:
        return self._call.audio

    async def ended_by_caller(self) -> bool:
        """Waits for the call's end; True if the caller (or the network) ended it, False for our
        BYE or a transfer (which closes the call only once it succeeded)."""
        await self.ended.wait()
        await self._no_transfer_running.wait()
        return not (self._hung_up_by_us or self._transferred)

    async def hang_up(self) -> None:
        """BYE (or a decline, if not yet answered). Safe to call on a call that already ended."""
        if self.ended.is_set():
            return
        self._hung_up_by_us = True
        try:
            await self._call.hangup()
        except bs.StaleHandleError:
            self.ended.set()  # the caller hung up at the same moment
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ended.wait(), HANG_UP_TIMEOUT_SECONDS)

    async def transfer(self, uri: str, *, timeout: float = TRANSFER_TIMEOUT_SECONDS) -> None:
        """Blind transfer (REFER). Returns once the trunk reported the transfer done and baresip
        left the call (BYE); raises `TransferFailed` otherwise, the call still up unless the
        caller left meanwhile."""
        self._no_transfer_running.clear()
        try:
            await self._call.transfer(uri, timeout=timeout)
            self._transferred = True
        finally:
            self._no_transfer_running.set()

    def _on_call_event(self, event: bs.StackEvent) -> None:
        if event.event is bs.Event.CALL_CLOSED:
            # baresip's reason: "Connection reset by peer [104]" after the caller's BYE, "Call
            # transfered" after a transfer, "rtp stream error" when the trunk's RTP stopped.
            logger.info("SIP call %s ended: %s", self.info.call_id, event.text)
            self.ended.set()

    def _on_digit(self, digit: bs.DigitEvent) -> None:
        self._input.receive_digit(digit.digit)

    async def notify_connected(self) -> None:
        await self._call_event_handler("on_client_connected", self.info)

    async def notify_caller_hung_up(self) -> None:
        await self._call_event_handler("on_client_disconnected", self.info)


class SipInputTransport(pc.BaseInputTransport):
    """Caller audio at the pipeline's rate every 20 ms, keys as `InputDTMFFrame`s."""

    def __init__(self, transport: SipTransport, params: pc.TransportParams, **kwargs) -> None:
        super().__init__(params, **kwargs)
        self._transport = transport
        self._digits: asyncio.Queue[str] = asyncio.Queue()
        self._tasks: list[asyncio.Task] = []

    def receive_digit(self, digit: str) -> None:
        self._digits.put_nowait(digit)

    async def start(self, frame: pc.StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)
        if not self._tasks:
            self._tasks = [
                self.create_task(self._pump_audio()),
                self.create_task(self._push_digits()),
                self.create_task(self._watch_hang_up()),
            ]
        await self._transport.notify_connected()

    async def stop(self, frame: pc.EndFrame) -> None:
        await super().stop(frame)
        await self._cancel_tasks()

    async def cancel(self, frame: pc.CancelFrame) -> None:
        await super().cancel(frame)
        await self._cancel_tasks()

    async def cleanup(self) -> None:
        await super().cleanup()
        await self._cancel_tasks()

    async def _cancel_tasks(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            await self.cancel_task(task)

    async def _pump_audio(self) -> None:
        audio = self._transport.audio
        resampler = pc.create_stream_resampler()
        frame_bytes = int(self.sample_rate * FRAME_SECONDS) * 2
        pending = bytearray()  # resampled caller audio not yet pushed: frames are exactly 20 ms
        rate: int | None = None
        next_tick = time.monotonic()
        while not self._transport.ended.is_set():
            try:
                pcm = audio.read(READ_LIMIT_BYTES)
                if pcm and rate is None:
                    rate = audio.info().rx_sample_rate
            except (bs.AudioNotActive, bs.AudioRestarted):
                # No media yet, or the streams were just renegotiated: the next read rebinds.
                pcm, rate = b"", None
            if pcm and rate:
                pending += await resampler.resample(pcm, rate, self.sample_rate)
            while len(pending) >= frame_bytes:
                chunk, pending = bytes(pending[:frame_bytes]), pending[frame_bytes:]
                await self.push_audio_frame(pc.InputAudioRawFrame(audio=chunk, sample_rate=self.sample_rate, num_channels=1))
            next_tick = max(next_tick + FRAME_SECONDS, time.monotonic())
            await asyncio.sleep(next_tick - time.monotonic())

    async def _push_digits(self) -> None:
        while True:
            digit = await self._digits.get()
            try:
                button = pc.KeypadEntry(digit)
            except ValueError:
                logger.info("SIP call %s: key %r has no pipecat keypad entry; ignored", self._transport.info.call_id, digit)
                continue
            await self.push_frame(pc.InputDTMFFrame(button=button))

    async def _watch_hang_up(self) -> None:
        if await self._transport.ended_by_caller():
            await self._transport.notify_caller_hung_up()


class SipOutputTransport(pc.BaseOutputTransport):
    """Bot audio written to baresip in real time; an interruption drops what is still queued."""

    def __init__(self, transport: SipTransport, params: pc.TransportParams, **kwargs) -> None:
        super().__init__(params, **kwargs)
        self._transport = transport
        self._media_up = False
        self._playout_end = 0.0  # monotonic time at which the audio written so far has played
        self._playing_interruptible = True

    async def start(self, frame: pc.StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)

    async def process_frame(self, frame: pc.Frame, direction: pc.FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, pc.InterruptionFrame) and self._playing_interruptible:
            self._flush_playout()

    async def write_audio_frame(self, frame: pc.OutputAudioRawFrame) -> bool:
        # The account offers PCMU and PCMA only, so the call's rate is the pipeline's 8 kHz.
        pcm = frame.audio
        for _ in range(3):
            if not await self._wait_for_media():
                return False
            try:
                accepted = self._transport.audio.write(pcm)
                break
            except (bs.AudioNotActive, bs.AudioRestarted):
                self._media_up = False  # renegotiated under us: rebind and write again
        else:
            return False
        if accepted < len(pcm):
            logger.warning("SIP call %s: transmit buffer full, %d bytes dropped", self._transport.info.call_id, len(pcm) - accepted)
        self._playing_interruptible = frame.interruptible
        await self._pace(len(pcm) / (2 * self.sample_rate))
        return True

    async def _wait_for_media(self) -> bool:
        """True once the call's media is up; False if the call ended (or media never came up)."""
        deadline = time.monotonic() + MEDIA_WAIT_SECONDS
        while not self._media_up:
            if self._transport.ended.is_set() or time.monotonic() > deadline:
                return False
            try:
                self._media_up = self._transport.audio.info().tx_ready
            except bs.AudioNotActive:
                pass
            if not self._media_up:
                await asyncio.sleep(FRAME_SECONDS)
        return not self._transport.ended.is_set()

    async def _pace(self, seconds: float) -> None:
        now = time.monotonic()
        self._playout_end = max(self._playout_end, now) + seconds
        await asyncio.sleep(max(0.0, self._playout_end - now - PLAYOUT_LEAD_SECONDS))

    def _flush_playout(self) -> None:
        self._playout_end = 0.0
        try:
            self._transport.audio.flush_tx()
        except (bs.AudioNotActive, bs.AudioRestarted):
            pass  # nothing queued on a call without media


class SipCallControl:
    """Hang-up is a BYE; a transfer is a blind REFER to the configured `handoff.uri` (never a target
    from the caller). A trunk that refuses (or never reports) the transfer leaves the call up and
    `transfer()` returns False: the dialogue says `utter_human_handoff_failed`."""

    def __init__(self, transport: SipTransport, handoff_uri: str | None, *, transfer_timeout: float = TRANSFER_TIMEOUT_SECONDS) -> None:
        self._transport = transport
        self._handoff_uri = handoff_uri or None
        self._transfer_timeout = transfer_timeout

    @property
    def transfer_available(self) -> bool:
        return self._handoff_uri is not None

    async def hang_up(self) -> None:
        await self._transport.hang_up()

    async def transfer(self) -> bool:
        if self._handoff_uri is None:
            return False
        call_id = self._transport.info.call_id
        try:
            await self._transport.transfer(self._handoff_uri, timeout=self._transfer_timeout)
        except bs.TransferFailed as exc:
            logger.warning("SIP call %s: transfer to %s failed: %s", call_id, self._handoff_uri, exc)
            return False
        except bs.BaresipError as exc:  # the call ended or was not established
            logger.warning("SIP call %s: transfer not possible: %s", call_id, exc)
            return False
        logger.info("SIP call %s transferred to %s", call_id, self._handoff_uri)
        return True
