"""What a channel tells the pipeline about one call, and what the pipeline asks of the channel."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class CallInfo:
    """One call. `call_id` is the conversation's sender id (Twilio CallSid, SIP Call-ID, WebRTC
    pc_id, a generated id for the microphone and files)."""

    call_id: str
    channel: str  # twilio_media_streams | sip | browser_audio | local_audio
    user_phone: str | None = None
    bot_phone: str | None = None
    direction: str = "inbound"
    parameters: Mapping[str, str] = field(default_factory=dict)  # channel extras (handoff_status, ...)

    def metadata(self) -> dict[str, str]:
        """The call parameters carried by `/session_start` and every user message of the call."""
        data = {"call_id": self.call_id, "channel": self.channel, "direction": self.direction}
        if self.user_phone:
            data["user_phone"] = self.user_phone
        if self.bot_phone:
            data["bot_phone"] = self.bot_phone
        data.update(self.parameters)
        return data


class CallControl(Protocol):
    """Channel operations the dialogue can trigger. The pipeline calls them only after the bot's
    queued audio has been played."""

    @property
    def transfer_available(self) -> bool: ...

    async def hang_up(self) -> None:
        """End the call from the bot's side (Twilio REST or socket close, SIP BYE, ...)."""

    async def transfer(self) -> bool:
        """Hand the caller to a human (the target comes from configuration only). False when the
        channel or the trunk refused: the dialogue then says `utter_human_handoff_failed`."""


class NoCallControl:
    """Channels without hang-up or transfer of their own (browser, microphone, files): hanging up
    ends the pipeline; a transfer is never available."""

    transfer_available = False

    async def hang_up(self) -> None:
        return None

    async def transfer(self) -> bool:
        return False
