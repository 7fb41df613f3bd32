"""The streaming voice pipeline (pipecat): audio in → VAD/turns → ASR → the engine → TTS → audio out.

Every pipecat import lives in `pipecat_api.py`; channels (Twilio, SIP, WebRTC, microphone, files)
hand a pipecat transport and a `CallInfo` to `VoiceRuntime.run_call`.
"""
