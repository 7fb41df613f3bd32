"""voicecalm: a CALM-style runtime for voice and text assistants that runs fully offline."""

__version__ = "0.1.0"
