"""Tells the demo page what happens in its call: transcripts, bot text, flow and slots."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from voicecalm.channels.webrtc.messages import BotTextMessage, ServerMessage, TranscriptMessage, state_message
from voicecalm.tracker.conversation import Conversation
from voicecalm.voice import pipecat_api as pc

SendMessage = Callable[[dict[str, Any]], None]  # `SmallWebRTCConnection.send_app_message`
LoadConversation = Callable[[], Awaitable[Conversation]]


class BrowserStatePublisher(pc.BaseObserver):
    """Sends the page a data-channel message for each caller transcript (`TranscriptionFrame`),
    each bot message the engine produces (`AggregatedTextFrame`) and, whenever the bot stops
    speaking (`BotStoppedSpeakingFrame`), the conversation's flow and slots: a turn has committed
    by the time its reply has been spoken, so that is when the page's state panel catches up.

    Placement: it is an observer, not a processor: give it to the call's worker
    (`VoiceRuntime.run_call(..., observers=[publisher])`). It sees each frame once, where the frame is
    first pushed, so it needs no place in the pipeline and cannot delay a frame. Observers run
    on queues of their own: loading the conversation does not hold up the call.
    """

    def __init__(self, send: SendMessage, load_conversation: LoadConversation) -> None:
        super().__init__(observe_every_push=False)
        self._send_message = send
        self._load_conversation = load_conversation

    async def on_push_frame(self, data: pc.FramePushed) -> None:
        frame = data.frame
        if isinstance(frame, pc.TranscriptionFrame):
            self.send(TranscriptMessage(text=frame.text))
        elif isinstance(frame, pc.TTSTextFrame):
            return  # the spoken form of a message already sent as its AggregatedTextFrame
        elif isinstance(frame, pc.AggregatedTextFrame):
            self.send(BotTextMessage(text=frame.text, message_id=frame.metadata.get("message_id")))
        elif isinstance(frame, pc.BotStoppedSpeakingFrame) and data.direction == pc.FrameDirection.DOWNSTREAM:
            self.publish_state(await self._load_conversation())

    def publish_state(self, conversation: Conversation) -> None:
        self.send(state_message(conversation))

    def send(self, message: ServerMessage) -> None:
        self._send_message(message.model_dump(mode="json"))
