"""Every baresip-python name voicecalm uses, in one place: the library is alpha and pinned exactly
(telephony.md §2.1), so an upgrade is checked here and by the SIPp suite in tests/channels/sip."""

# ruff: noqa: F401

from baresip import (
    Account,
    AudioNotActive,
    AudioRestarted,
    BaresipError,
    Call,
    CallAudio,
    Config,
    DigitEvent,
    Event,
    Runtime,
    StackEvent,
    StaleHandleError,
    TransferFailed,
    UserAgent,
)
