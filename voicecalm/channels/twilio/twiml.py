"""The TwiML documents voicecalm answers Twilio with, built with the twilio package."""

from __future__ import annotations

from typing import Protocol

from twilio.twiml.voice_response import Connect, Dial, VoiceResponse

from voicecalm.channels.twilio.security import StreamGrant

CONTENT_TYPE = "text/xml"


class HandoffTarget(Protocol):
    """`handoff:` of the channel's credentials: a phone number or a SIP URI, never from the caller."""

    number: str | None
    sip: str | None
    caller_id: str | None
    timeout: int | None


def connect_stream(*, stream_url: str, after_stream_url: str, token: str, grant: StreamGrant) -> str:
    """`<Connect action><Stream>`: bidirectional, and it holds the call until our side closes the
    socket; Twilio then asks `after_stream_url` what to do next. No query string in the stream URL
    (Twilio drops it): the call's data rides in `<Parameter>`s."""
    response = VoiceResponse()
    connect = Connect(action=after_stream_url)
    stream = connect.stream(url=stream_url)
    stream.parameter(name="token", value=token)
    for name, value in grant.parameters().items():
        stream.parameter(name=name, value=value)
    response.append(connect)
    return response.to_xml()


def dial(target: HandoffTarget, *, action_url: str) -> str:
    """`<Dial>` to the configured human; Twilio posts the outcome to `action_url`."""
    response = VoiceResponse()
    attributes: dict[str, object] = {"action": action_url}
    if target.caller_id:
        attributes["caller_id"] = target.caller_id
    if target.timeout:
        attributes["timeout"] = target.timeout
    dial = Dial(**attributes)
    if target.number:
        dial.number(target.number)
    elif target.sip:
        dial.sip(target.sip)
    else:
        raise ValueError("handoff needs a number or a sip URI")
    response.append(dial)
    # Without the XML declaration: the REST API takes this as a form field.
    return response.to_xml(xml_declaration=False)


def hangup() -> str:
    response = VoiceResponse()
    response.hangup()
    return response.to_xml()


def target_configured(target: HandoffTarget | None) -> bool:
    return target is not None and bool(target.number or target.sip)
