"""Bot messages and the domain response renderer (formats.md §4.2)."""

from voicecalm.nlg.message import BotMessage
from voicecalm.nlg.responses import ResponseRenderer

__all__ = ["BotMessage", "ResponseRenderer"]
