"""The browser channel: the demo page, WebRTC signalling, and what the page is told about its call."""

from voicecalm.channels.webrtc.publisher import BrowserStatePublisher
from voicecalm.channels.webrtc.router import webrtc_router

__all__ = ["BrowserStatePublisher", "webrtc_router"]
