"""Twilio Media Streams (telephony.md §1): a phone number answered by the voice pipeline.

`twilio_router` gives the routes `voicecalm run` mounts; a call's media runs through
`TwilioMediaTransport` (pipecat's websocket transport and Twilio serializer, plus marks and
real-time pacing) into `VoiceRuntime.run_call`, with `TwilioCallControl` for hang-up and transfer.

The package itself imports nothing: `voicecalm twilio setup` needs only `numbers` and `paths`, not
the voice pipeline behind `routes` and `media`.
"""
