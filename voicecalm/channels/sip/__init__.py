"""SIP trunk channel: an embedded baresip user agent (telephony.md §2). `SipServer` answers the
trunk's calls and runs each through the voice pipeline over a `SipTransport`; `SipCallControl`
hangs up with BYE and hands over to a human with a blind REFER."""

from voicecalm.channels.sip.server import SipServer
from voicecalm.channels.sip.transport import CHANNEL_NAME, SipCallControl, SipTransport

__all__ = ["CHANNEL_NAME", "SipCallControl", "SipServer", "SipTransport"]
